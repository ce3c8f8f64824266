"""Model configuration: dataclasses with named presets (`ModelConfig.from_name("tiny")`).

Every size the model needs lives here, so a checkpoint's `config.json` is enough to rebuild
the network and a state's shapes. Presets follow ARCHITECTURE.md ("Presets"): `tiny` (2 CPU cores),
`base` (one GPU) and `paper` (the Mirasol3B budget, built on the meta device only).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from model.media import MEDIA_PRESETS, MediaSpec


@dataclass
class EncoderConfig:
    """Snippet encoder: TubeViT-style video tokens + log-mel audio patches through one ViT.

    Video tokens are sparse 3D tubes spanning the whole snippet plus 2D patches of the
    snippet's last frame (the picture now). With `motion`, the patches also see how the
    picture changed over the snippet (first→middle and middle→last frame differences): a
    moving edge then shows up in one token as a signed pair, not spread over a 3D filter.
    `positions="sincos"` adds fixed 2D sine-cosine positions (image rows/columns, spectrogram
    time/mel) under the learned ones, so where a token sits is known from the first step;
    "learned" alone starts at zero and must be discovered through the gradients.
    """

    dim: int = 128
    layers: int = 2
    heads: int = 2
    mlp_ratio: float = 4.0
    tube_size: int = 16  # spatial side of a tube; a tube spans all frames of the snippet
    patch_size: int = 16  # spatial side of a 2D patch on the last frame
    n_fft: int = 400  # 25 ms window at 16 kHz
    hop: int = 160  # 10 ms hop: the snippet length must be a multiple of it
    n_mels: int = 64
    audio_patch_frames: int = 16
    audio_patch_mels: int = 16
    motion: bool = True
    positions: str = "sincos"  # "sincos" (fixed + learned) or "learned"


# Fields added after checkpoints were first shipped, with the values that reproduce the model
# those older checkpoints were trained as. `from_dict` fills them in when a file lacks them;
# any other missing field is an error, since a silent default would build another model.
LEGACY_DEFAULTS: dict[str, dict[str, Any]] = {
    "encoder": {"motion": False, "positions": "learned"},
    "combiner": {"memory_update": "pool"},
    "decoder": {"age_code": 0.0, "age_slopes": False, "length_scale": False, "first_sight_classes": 0,
                "first_sight_tokens": False, "first_sight_age_slopes": False, "first_sight_age_code": 0.0,
                "first_sight_query_slopes": False, "first_sight_pointer": False,
                "first_sight_company": False, "first_sight_sounds": 0, "first_sight_onsets": False,
                "first_sight_lookup": False},
    "loss": {"align": 0.0, "first_sight": 0.0, "first_sight_read": 0.0, "first_sight_pointer": 0.0},
    "align": {"dim": 0, "text_layers": 1, "max_text_tokens": 64, "temperature": 0.07, "watch_threshold": 0.5},
}

# Whole sections added after checkpoints were first shipped: a file without one gets the
# section's LEGACY_DEFAULTS (for `align`: no alignment head).
LEGACY_SECTIONS: frozenset[str] = frozenset({"align"})

# Fields renamed after checkpoints were first shipped: section -> {old name: new name}.
# `from_dict` reads the old name too. The fingerprint keeps hashing the old name
# (`fingerprint_dict`), so a rename never changes which checkpoint a saved state names.
LEGACY_NAMES: dict[str, dict[str, str]] = {
    "media": {"frames_per_chunk": "frames_per_snippet"},
}


@dataclass
class CombinerConfig:
    """Combiner: `ttm` (Token Turing Machine, streaming default) or `transformer`."""

    kind: str = "ttm"
    dim: int = 128
    heads: int = 2
    mlp_ratio: float = 4.0
    out_tokens: int = 8  # m: latent tokens per snippet
    # TTM
    memory_tokens: int = 16  # r
    read_tokens: int = 16  # k: tokens the processor works on
    process_layers: int = 1
    token_learner_hidden: int = 64
    # "pool": the TTM paper's write, new memory = TokenLearner([memory; processed; inputs]);
    # "gated": each slot keeps its old value unless a learned gate lets the pooled write in
    memory_update: str = "pool"
    # causal transformer combiner
    layers: int = 2
    window: int | None = 4  # chunks of attention context; must be set to stream


@dataclass
class LatentConfig:
    """Latent causal model over the m tokens per snippet, chunk-causal over W chunks."""

    dim: int = 128
    layers: int = 1
    heads: int = 2
    mlp_ratio: float = 4.0
    window: int = 8  # W
    recon_layers: int = 1  # transformer layers of the video-reconstruction head
    recon_frames: int = 2  # downsampled next snippet: frames x size x size x 3
    recon_size: int = 8


@dataclass
class DecoderConfig:
    """Text decoder: causal self-attention, cross-attention to [memory ; h window], MLP."""

    dim: int = 128
    layers: int = 3
    heads: int = 2
    mlp_ratio: float = 4.0
    max_question_tokens: int = 96  # <q> + question bytes; longer questions are refused
    max_answer_tokens: int = 80  # answer bytes + </a>: the longest world answer is 66
    # Amplitude of a fixed sinusoidal code of each h token's age, added beside the learned age
    # embedding (0 = learned ages only). Learned ages of old snippets trained to near-equal
    # values, which left the decoder no clock past 8 snippets (experiments/order_age.py).
    age_code: float = 0.0
    # A learned slope per layer and head, times each context token's age in snippets, added to
    # the cross-attention scores (ALiBi's bias, learned): a head can prefer the oldest match of
    # what it looks for, which "which came first" needs. Starts at zero (no change).
    age_slopes: bool = False
    # Scale each cross-attention head's queries by a learned gain times log(context tokens), as in
    # Scalable-Softmax (Nakanishi 2025): without it the softmax over a 64-snippet context spreads
    # thinner than over a 16-snippet one, and a few matching tokens (a sound, a first sight) fade
    # among the many that do not. The gains start at 1, where a 145-token context (16 snippets of
    # `tiny`) is scored as without the scale.
    length_scale: bool = False
    # Classes of a first-sight head (0 = none): from each snippet's latent tokens it predicts
    # which things (for the world: named shapes and sounds) are present; one present in a
    # snippet and in none before it in the window is marked as first seen there, through a
    # learned vector per class added to the snippet's context tokens. "Which came first" then
    # compares two marked snippets instead of asking the decoder to find the oldest of many
    # matching ones. The vectors start at zero (no change).
    first_sight_classes: int = 0
    # One context token per first-sight class that says whether and how long ago the thing was
    # first seen in the window: a learned class embedding plus a projection of (how surely seen,
    # mark-weighted age of the first sight / window). The age enters every head's keys linearly,
    # so a query that matches two classes' tokens can weight the older one up in a single hop:
    # stage 14's marks sat on snippet tokens, among hundreds of others, and "which came first"
    # did not use them (experiments/first_sight.py). Stage 16 did not learn to read the tokens'
    # ages for it either (the same experiment, ages zeroed). Needs `first_sight_classes`.
    first_sight_tokens: bool = False
    # Every cross-attention head adds a learned multiple of each first-sight token's age (how many
    # snippets ago its thing was first seen) to that token's score, so that of two matched tokens
    # it can prefer the older by a bias, not through a normalised key: a first try's read head,
    # pointed at the answer's token, found the two named things but chose the older on long clips
    # only 73% of the time while the tokens' ages alone are right 96%. Starts at zero (no change).
    # A second try's 450 steps moved the read head's slope to only 0.05 a snippet and did not raise
    # long `order` (README, "Old events had no clock"); the bundled model has them since stage 17,
    # where first-sight drills train them. Needs `first_sight_tokens`.
    first_sight_age_slopes: bool = False
    # Amplitude of the sinusoidal age code (as `age_code`, of the age in snippets) added to each
    # first-sight token (0 = none), beside the age as a share of the window. Measured, not used:
    # over exact first sights the decoder learned to rank tokens by age more slowly with the code
    # than without (experiments/token_compare.py). Needs `first_sight_tokens`.
    first_sight_age_code: float = 0.0
    # Every cross-attention query adds its own multiple of each first-sight token's age, a learned
    # projection of the query (per layer and head) on top of `first_sight_age_slopes`: one slope per
    # head serves every question, and stage 23's ended mostly negative (newer preferred; the last
    # layer's first head −0.61 a snippet): a compromise between "which came first" and the kinds
    # that want the newest. The projection starts at zero (no change). Needs `first_sight_age_slopes`.
    first_sight_query_slopes: bool = False
    # Each cross-attention query also gives a logit per first-sight class that its question names
    # the class, and every head adds a learned gain (starting at 1) times log σ(logit) to that
    # class's token, less its value at the logits' starting bias (so no change at first). A class whose name the question does not
    # hold drops out even where it shares a colour or a shape with one named: scores add over a
    # key's parts, so such a lure matched half and misled "which came first" on long clips
    # (experiments/order_lures.py). Trained by `loss.first_sight_pointer`. Needs `first_sight_tokens`.
    first_sight_pointer: bool = False
    # Each first-sight token also carries what else the head found present where its thing was
    # first seen and one snippet later (mark-weighted; a shape's first sound starts within 0.3 s
    # of its appearance), through a projection that starts at zero (no change). "What sound did
    # the red circle make?" then reads one token, however old the first sight: the decoder
    # otherwise had to find the snippet where an old shape appeared and what played there, and
    # half its wrong answers on long streams named another sound of the clip
    # (experiments/binding_errors.py). Needs `first_sight_tokens`.
    first_sight_company: bool = False
    # The last `first_sight_sounds` of the first-sight classes are sounds, and their presence in a
    # snippet comes from a hearing head on that snippet's log-mel alone (model/hearing.py), not from
    # the latent tokens (0 = every class from the latent). On held-out shape-sound pairs
    # (world:compositional) the latent's head heard nothing at the first sight of about a third of
    # the shapes that sounded (2% on world:test): it had learned from the training pairs which
    # shapes make which sounds (experiments/company_readout.py). Audio alone cannot learn that.
    first_sight_sounds: int = 0
    # The hearing head also counts the plays of each sound that start in a snippet, and each
    # sound's first-sight token carries their sum over the window (a soft one-hot of the count,
    # through a projection that starts at zero: no change). "How many times did you hear the drum?"
    # then reads one token: the decoder otherwise counted the drum's plays among the window's
    # snippets, right 72% of the time within 16 snippets of the start and 42% after 32
    # (experiments/count_errors.py). Needs `first_sight_sounds` and `first_sight_tokens`.
    first_sight_onsets: bool = False
    # Every decoder layer also adds what the first-sight tokens of the classes its question names
    # hold (their cross-attention values, weighted by the first-sight pointer's σ per class, through
    # a projection that starts at zero: no change), a read that no other context token competes
    # for. The shape's token carried the answer to "what sound did the red circle make?" (its
    # company) for 85% of the questions on world:long, the decoder reading it by attention among
    # 500 snippet tokens 57% (experiments/company_readout.py). Needs `first_sight_pointer`.
    first_sight_lookup: bool = False


@dataclass
class AlignConfig:
    """Alignment head: snippets and short phrases ("red square moving left", "drum") in one
    embedding space, trained contrastively; standing queries and moment search score in it.

    The text side reuses the decoder's byte embeddings through `text_layers` bidirectional
    blocks and a mean pool: the decoder already knows the world's words, and a byte-level
    encoder needs no download and no second tokenizer. `dim = 0` means no head (checkpoints
    from before it). `watch_threshold` is the cosine similarity above which a standing query
    fires, calibrated on the world's validation split (`streamer export --calibrate-watch N`).
    """

    dim: int = 64
    text_layers: int = 1
    max_text_tokens: int = 64  # bytes of a watch or search phrase; longer ones are refused
    temperature: float = 0.07  # initial softmax temperature of the contrastive loss (learned)
    watch_threshold: float = 0.5


@dataclass
class LossWeights:
    """Weights of the paper's three losses (and the alignment and first-sight losses) in the
    training objective."""

    text: float = 1.0
    latent: float = 0.1
    video: float = 0.1
    align: float = 0.1
    first_sight: float = 0.0  # the first-sight head's presence loss (needs decoder.first_sight_classes)
    # Points one decoder head at the first-sight token of the thing a question's answer names
    # (for the world, `order`'s "which came first"), while the answer is written: the tokens alone
    # answer `order` on long clips 95% right and the decoder, left to find them, 65%
    # (experiments/first_sight_readout.py). Stages 17 and 18 trained with it: the head's pick
    # rose from chance to about 3 in 4, the answers did not follow, and neither stage shipped.
    # Needs decoder.first_sight_tokens.
    first_sight_read: float = 0.0
    # Binary cross-entropy of every decoder layer's first-sight pointer logits, at the answer
    # positions, against the classes the question names word for word (training.samples).
    # Needs decoder.first_sight_pointer.
    first_sight_pointer: float = 0.0


PRESET_NAMES = ("tiny", "base", "paper")


@dataclass
class ModelConfig:
    """The whole model. JSON round-trip with `to_dict`/`from_dict`."""

    name: str = "tiny"
    media: MediaSpec = field(default_factory=lambda: MEDIA_PRESETS["tiny"])
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    combiner: CombinerConfig = field(default_factory=CombinerConfig)
    latent: LatentConfig = field(default_factory=LatentConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    loss: LossWeights = field(default_factory=LossWeights)
    align: AlignConfig = field(default_factory=AlignConfig)
    init_std: float = 0.02

    def __post_init__(self) -> None:
        self.validate()

    @staticmethod
    def from_name(name: str, **overrides: Any) -> "ModelConfig":
        """A preset by name; `overrides` replace top-level fields (e.g. `combiner=...`)."""
        if name not in PRESET_NAMES:
            raise ValueError(f"unknown model preset {name!r}; choose one of {', '.join(PRESET_NAMES)}")
        cfg = _PRESET_BUILDERS[name]()
        return dataclasses.replace(cfg, **overrides) if overrides else cfg

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def fingerprint_dict(self) -> dict[str, Any]:
        """`to_dict()` as the fingerprint was first defined: under the old field names
        (LEGACY_NAMES) and without the fields added since while they hold the value that
        reproduces the older model (LEGACY_DEFAULTS), so neither a rename nor a new option
        changes which checkpoint an existing card or saved state names."""
        data = self.to_dict()
        for section in LEGACY_SECTIONS:
            if data[section] == LEGACY_DEFAULTS[section]:
                del data[section]
        for section, legacy in LEGACY_DEFAULTS.items():
            if section not in data:
                continue
            for key, value in legacy.items():
                if data[section].get(key) == value:
                    del data[section][key]
        for section, renames in LEGACY_NAMES.items():
            old_name = {new: old for old, new in renames.items()}
            data[section] = {old_name.get(key, key): value for key, value in data[section].items()}
        return data

    @staticmethod
    def from_dict(data: dict[str, Any]) -> "ModelConfig":
        """Rebuild from `to_dict` output; unknown or missing keys are reported by name."""
        if not isinstance(data, dict):
            raise ValueError(f"a model config must be a JSON object, got {type(data).__name__}")
        _check_keys("model config", data, ModelConfig)
        data = {**{name: {} for name in LEGACY_SECTIONS}, **data}
        _check_present("", data, ModelConfig, {})
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key in SECTIONS:
                if not isinstance(value, dict):
                    raise ValueError(f"model config section {key!r} must be a JSON object, got {value!r}")
                value = _renamed(f"model config section {key!r}", value, LEGACY_NAMES.get(key, {}))
                _check_keys(f"model config section {key!r}", value, SECTIONS[key])
                _check_present(f"{key}.", value, SECTIONS[key], LEGACY_DEFAULTS.get(key, {}))
                kwargs[key] = SECTIONS[key](**{**LEGACY_DEFAULTS.get(key, {}), **value})
            else:
                kwargs[key] = value
        return ModelConfig(**kwargs)

    def validate(self) -> None:
        """Fail early, with the field to change, on values of the wrong type or range and on
        sizes that cannot work together."""
        _check_values("", self, ModelConfig)
        for name, cls in SECTIONS.items():
            section = getattr(self, name)
            if not isinstance(section, cls):
                raise ValueError(f"{name} must be a {cls.__name__}, got {type(section).__name__}")
            _check_values(f"{name}.", section, cls)
        m, e, c = self.media, self.encoder, self.combiner
        if e.positions not in ("sincos", "learned"):
            raise ValueError(f"encoder.positions must be 'sincos' or 'learned', got {e.positions!r}")
        if c.kind not in ("ttm", "transformer"):
            raise ValueError(f"combiner.kind must be 'ttm' or 'transformer', got {c.kind!r}")
        if c.memory_update not in ("pool", "gated"):
            raise ValueError(f"combiner.memory_update must be 'pool' or 'gated', got {c.memory_update!r}")
        for what, side, size in (("tube_size", m.height, e.tube_size), ("tube_size", m.width, e.tube_size),
                                 ("patch_size", m.height, e.patch_size), ("patch_size", m.width, e.patch_size)):
            if side % size:
                raise ValueError(f"encoder.{what}={size} must divide the frame size {m.height}x{m.width}")
        if e.n_fft < e.hop:
            raise ValueError(f"encoder.n_fft={e.n_fft} must be at least encoder.hop={e.hop}: each window "
                             "carries the audio before it")
        if self.decoder.max_question_tokens < 2:
            raise ValueError(f"decoder.max_question_tokens={self.decoder.max_question_tokens} leaves no room for "
                             "a question: it counts <q> and the question's bytes")
        if self.audio_frames % e.audio_patch_frames or e.n_mels % e.audio_patch_mels:
            raise ValueError(
                f"audio patches ({e.audio_patch_frames} frames x {e.audio_patch_mels} mels) must tile the "
                f"{self.audio_frames} x {e.n_mels} spectrogram of a snippet"
            )
        for name, dim, heads in (("encoder", e.dim, e.heads), ("combiner", c.dim, c.heads),
                                 ("latent", self.latent.dim, self.latent.heads),
                                 ("decoder", self.decoder.dim, self.decoder.heads)):
            if dim % heads or (dim // heads) % 2:
                raise ValueError(f"{name}.dim={dim} must split into {heads} heads of even size")
        if self.align.watch_threshold > 1.0:
            raise ValueError(f"align.watch_threshold={self.align.watch_threshold} is a cosine similarity "
                             "threshold: between 0 and 1")
        if self.decoder.first_sight_tokens and not self.decoder.first_sight_classes:
            raise ValueError("decoder.first_sight_tokens summarise a first-sight head the model lacks: set "
                             "decoder.first_sight_classes too")
        if self.loss.first_sight and not self.decoder.first_sight_classes:
            raise ValueError(f"loss.first_sight={self.loss.first_sight} weighs a first-sight head the model "
                             "lacks: set decoder.first_sight_classes too")
        if self.decoder.first_sight_age_slopes and not self.decoder.first_sight_tokens:
            raise ValueError("decoder.first_sight_age_slopes rank first-sight tokens the model lacks: set "
                             "decoder.first_sight_tokens too")
        if self.decoder.first_sight_query_slopes and not self.decoder.first_sight_age_slopes:
            raise ValueError("decoder.first_sight_query_slopes add to first-sight age slopes the model lacks: set "
                             "decoder.first_sight_age_slopes too")
        if self.decoder.first_sight_age_code and not self.decoder.first_sight_tokens:
            raise ValueError("decoder.first_sight_age_code codes the ages of first-sight tokens the model lacks: "
                             "set decoder.first_sight_tokens too")
        if self.decoder.first_sight_pointer and not self.decoder.first_sight_tokens:
            raise ValueError("decoder.first_sight_pointer weighs first-sight tokens the model lacks: set "
                             "decoder.first_sight_tokens too")
        if self.decoder.first_sight_company and not self.decoder.first_sight_tokens:
            raise ValueError("decoder.first_sight_company adds to first-sight tokens the model lacks: set "
                             "decoder.first_sight_tokens too")
        if self.decoder.first_sight_sounds and not 0 < self.decoder.first_sight_sounds < self.decoder.first_sight_classes:
            raise ValueError(f"decoder.first_sight_sounds={self.decoder.first_sight_sounds} names the last of the "
                             f"{self.decoder.first_sight_classes} first-sight classes as sounds: it must be fewer "
                             "than the classes (and the model needs decoder.first_sight_classes)")
        if self.decoder.first_sight_onsets and not (self.decoder.first_sight_sounds and self.decoder.first_sight_tokens):
            raise ValueError("decoder.first_sight_onsets counts the plays the hearing head hears into the sounds' "
                             "first-sight tokens: set decoder.first_sight_sounds and decoder.first_sight_tokens too")
        if self.decoder.first_sight_lookup and not self.decoder.first_sight_pointer:
            raise ValueError("decoder.first_sight_lookup reads the tokens of the classes the first-sight pointer finds "
                             "named: set decoder.first_sight_pointer too")
        if self.loss.first_sight_pointer and not self.decoder.first_sight_pointer:
            raise ValueError(f"loss.first_sight_pointer={self.loss.first_sight_pointer} trains a first-sight "
                             "pointer the model lacks: set decoder.first_sight_pointer too")
        if self.loss.first_sight_read and not self.decoder.first_sight_tokens:
            raise ValueError(f"loss.first_sight_read={self.loss.first_sight_read} points a decoder head at "
                             "first-sight tokens the model lacks: set decoder.first_sight_tokens too")
        if m.frames_per_snippet % self.latent.recon_frames:
            raise ValueError("latent.recon_frames must divide media.frames_per_snippet")

    @property
    def audio_frames(self) -> int:
        """Log-mel frames per snippet (the hop must divide the snippet's samples)."""
        samples = self.media.samples_per_snippet
        if samples % self.encoder.hop:
            raise ValueError(f"encoder.hop={self.encoder.hop} must divide the {samples} samples of a snippet")
        return samples // self.encoder.hop

    @property
    def video_tokens(self) -> int:
        m, e = self.media, self.encoder
        return (m.height // e.tube_size) * (m.width // e.tube_size) + (m.height // e.patch_size) * (
            m.width // e.patch_size
        )

    @property
    def audio_tokens(self) -> int:
        e = self.encoder
        return (self.audio_frames // e.audio_patch_frames) * (e.n_mels // e.audio_patch_mels)

    @property
    def snippet_tokens(self) -> int:
        """n: encoder tokens per snippet (video + audio)."""
        return self.video_tokens + self.audio_tokens


SECTIONS: dict[str, type] = {
    "media": MediaSpec,
    "encoder": EncoderConfig,
    "combiner": CombinerConfig,
    "latent": LatentConfig,
    "decoder": DecoderConfig,
    "loss": LossWeights,
    "align": AlignConfig,
}

# Numeric fields that may be zero (a loss left out, no reconstruction layers, weights
# initialised to zero); every other count, size, rate and ratio must be positive.
MAY_BE_ZERO = {"loss.text", "loss.latent", "loss.video", "loss.align", "latent.recon_layers", "init_std",
               "align.dim", "align.watch_threshold", "decoder.age_code",
               "decoder.first_sight_classes", "decoder.first_sight_age_code", "decoder.first_sight_sounds",
               "loss.first_sight", "loss.first_sight_read", "loss.first_sight_pointer"}


def _check_values(prefix: str, section: Any, cls: type) -> None:
    """Each field of `section` has its annotated type (an int is no float, a bool no int)
    and, when numeric, a finite value in range; the error names the field."""
    for name, kind in typing.get_type_hints(cls).items():
        if name in SECTIONS:
            continue
        where, value = f"{prefix}{name}", getattr(section, name)
        options = typing.get_args(kind) if typing.get_origin(kind) in (typing.Union, types.UnionType) else (kind,)
        if value is None and type(None) in options:
            continue
        kind = next(k for k in options if k is not type(None))
        if kind is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            wanted = "a finite number"
        elif kind is int:
            ok, wanted = isinstance(value, int) and not isinstance(value, bool), "a whole number"
        else:
            ok, wanted = isinstance(value, kind), {bool: "true or false", str: "a string"}[kind]
        if ok and kind in (int, float) and not (value > 0 or (value == 0 and where in MAY_BE_ZERO)):
            ok, wanted = False, "zero or more" if where in MAY_BE_ZERO else "more than zero"
        if not ok:
            if type(None) in options:
                wanted += " or null"
            raise ValueError(f"{where} must be {wanted}, got {value!r}")


def _check_present(prefix: str, data: dict[str, Any], cls: type, legacy: dict[str, Any]) -> None:
    """Every field is in `data` unless older files legitimately lack it (LEGACY_DEFAULTS)."""
    missing = [f"{prefix}{f.name}" for f in dataclasses.fields(cls) if f.name not in data and f.name not in legacy]
    if missing:
        raise ValueError(f"the model config lacks {', '.join(missing)}; the file is incomplete — restore "
                         "it from where the checkpoint came from (a default would build a different model)")


def _renamed(what: str, data: dict[str, Any], renames: dict[str, str]) -> dict[str, Any]:
    """`data` with old field names replaced by their new ones."""
    for old, new in renames.items():
        if old in data and new in data:
            raise ValueError(f"{what} has both {old!r} and its new name {new!r}; keep only {new!r}")
    return {renames.get(key, key): value for key, value in data.items()}


def _check_keys(what: str, data: dict[str, Any], cls: type) -> None:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{what} has unknown keys {unknown}; it was written by another version of the model")


def _tiny() -> ModelConfig:
    return ModelConfig()


def _base() -> ModelConfig:
    return ModelConfig(
        name="base",
        media=MEDIA_PRESETS["base"],
        encoder=EncoderConfig(dim=768, layers=12, heads=12, tube_size=32, patch_size=32),
        combiner=CombinerConfig(dim=768, heads=12, out_tokens=16, memory_tokens=64, read_tokens=32,
                                process_layers=2, token_learner_hidden=256, layers=4, window=8),
        latent=LatentConfig(dim=768, layers=6, heads=12, window=8, recon_layers=2, recon_frames=4, recon_size=16),
        decoder=DecoderConfig(dim=512, layers=6, heads=8),
    )


def _paper() -> ModelConfig:
    # ViT-H video processor; 8-layer 1024-d combiner / latent / reconstruction transformers;
    # 18-layer 1536-d text model with cross-attention (Mirasol3B, "Partition and Conquer").
    return ModelConfig(
        name="paper",
        media=MEDIA_PRESETS["paper"],
        encoder=EncoderConfig(dim=1280, layers=32, heads=16, tube_size=32, patch_size=32),
        combiner=CombinerConfig(dim=1024, heads=16, out_tokens=32, memory_tokens=256, read_tokens=512,
                                process_layers=8, token_learner_hidden=1024, layers=8, window=16),
        latent=LatentConfig(dim=1024, layers=8, heads=16, window=16, recon_layers=8, recon_frames=4, recon_size=32),
        decoder=DecoderConfig(dim=1536, layers=18, heads=24, mlp_ratio=8.0),
    )


_PRESET_BUILDERS = {"tiny": _tiny, "base": _base, "paper": _paper}
