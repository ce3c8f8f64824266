"""`TrainConfig`: everything that defines a training run, and its command-line flags.

Each field declares its flag where it is declared (`option(...)`), and `add_config_arguments`
builds the parser from the fields, so adding an option is one edit here. A flag is
`--field-name` unless `flag=` says otherwise; a bool field is a switch (`--strict`, or
`--no-progress` for one that defaults to True); `group=` makes flags mutually exclusive.
"""

from __future__ import annotations

import argparse
import math
import types
import typing
from dataclasses import dataclass, field, fields, replace
from typing import Any

from training.world.vocab import QUESTION_KINDS


class TrainingError(ValueError):
    """A run cannot start or continue; the message says why and what to do."""


def snippet_range(text: str) -> tuple[int, int]:
    """`A-B` or `A` on the command line (a clip length range in snippets) as (A, B)."""
    low, _, high = text.partition("-")
    try:
        return int(low), int(high or low)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--snippets takes A-B or A (whole numbers of snippets, e.g. 4-16), not {text!r}"
        ) from None


def _named_numbers(text: str, flag: str, example: str) -> tuple[tuple[str, float], ...]:
    """`NAME=NUMBER,NAME=NUMBER` on the command line as ((NAME, NUMBER), ...)."""
    pairs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, number = item.partition("=")
        try:
            pairs.append((name.strip(), float(number)))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{flag} takes NAME=NUMBER pairs separated by commas (e.g. {example}), not {text!r}") from None
    return tuple(pairs)


def kind_weights(text: str) -> tuple[tuple[str, float], ...]:
    """`direction=3,who_made=2` on the command line: question kinds drawn more (or less) often."""
    return _named_numbers(text, "--kind-weights", "direction=3,who_made=2")


def lr_scales(text: str) -> tuple[tuple[str, float], ...]:
    """`decoder.blocks.3.=10` on the command line: parameters, by name prefix, at another rate."""
    return _named_numbers(text, "--lr-scales", "decoder.blocks.3.=10")


# Question kinds the first-sight read loss can point at a first-sight token while the answer is
# written, and which token: `order` at the class its answer names ("which came first, the A or the
# B?" answers A or B), the others at the one class their question names: "what sound did the red
# circle make?" at the circle's token, whose company holds the sound; "how many times did you hear
# the drum?" at the drum's, which carries its count; "which shape made the drum sound?" at the
# drum's, whose company holds the shapes present when it first played (training.samples.read_targets).
READ_KINDS = ("order", "sound_of", "count_sound", "who_made")
DEFAULT_READ_KINDS = ("order",)


def read_kinds(text: str) -> tuple[str, ...]:
    """`order,sound_of` on the command line: the kinds the first-sight read loss reads."""
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    if not kinds:
        raise argparse.ArgumentTypeError(f"--read-kinds takes question kinds separated by commas "
                                         f"(e.g. order,sound_of), not {text!r}")
    return kinds


def option(default: Any, help: str, *, flag: str | None = None, **add_argument: Any) -> Any:
    """A TrainConfig field and its flag: `help` (required: every flag says what it does), a `flag`
    other than --field-name, and any other `add_argument` keyword (type, choices, required),
    plus `group` for mutually exclusive flags."""
    return field(default=default, metadata={"help": help, "flag": flag, "add_argument": add_argument})


@dataclass
class TrainConfig:
    """Everything that defines a run. Saved with each checkpoint and checked on resume."""

    preset: str = option("tiny", "model preset: tiny, base (default %(default)s)")
    data: str = option("world", "'world' (generated on the fly) or a dataset folder")
    out: str = option("runs/tiny", "run folder: checkpoints, metrics.jsonl, card", required=True)
    steps: int | None = option(None, "optimizer steps to train", group="length")  # or derived from `epochs`
    epochs: float | None = option(None, "passes over a dataset folder", group="length")
    batch: int = option(8, "clips per step over all processes (default %(default)s)")  # over all ranks
    micro_batch: int | None = option(None, "clips per forward pass (gradient accumulation)")  # on one rank
    # 1e-3 and up keep the model on answer priors (no grounding in 400 steps); see README
    lr: float = option(3e-4, "peak learning rate (default %(default)s)")
    lr_scales: tuple[tuple[str, float], ...] = option(  # beside training.trainer.FAST_PARTS' own scale
        (), "parameters that learn at another multiple of --lr, by name prefix, e.g. decoder.blocks.3.=10 "
            "for a block that --decoder-layers added (the first prefix that fits a name wins)", type=lr_scales)
    min_lr_ratio: float = option(0.05, "cosine floor as a fraction of --lr")  # cosine decays to lr · min_lr_ratio
    warmup: int = option(100, "linear warm-up steps (default %(default)s)")
    weight_decay: float = option(0.05, "AdamW weight decay of the weight matrices (not of norms or biases) "
                                       "(default %(default)s)")
    grad_clip: float = option(1.0, "max gradient norm, 0 = off")
    text_weight: float | None = option(None, "text loss weight (default: model config)")  # None: the model's
    latent_weight: float | None = option(None, "latent reconstruction loss weight")
    video_weight: float | None = option(None, "video reconstruction loss weight")
    align_weight: float | None = option(None, "alignment (contrastive phrase/snippet) loss weight")
    init: str | None = option(None, "start from this checkpoint's weights (fine-tuning)")  # instead of random
    latent_window: int | None = option(  # None: the preset's; a larger one grows an --init checkpoint's
        None, "snippets of latent state the decoder reads directly (default: the preset's); with --init, a "
              "larger window than the checkpoint's is grown, its new ages starting as the oldest one")
    decoder_layers: int | None = option(  # None: the preset's; more than an --init checkpoint's adds blocks
        None, "layers of the text decoder (default: the preset's); with --init, layers beyond the checkpoint's "
              "are added after its last one with their output projections at zero, so the model answers as "
              "before until they learn")
    memory_update: str | None = option(  # None: the preset's; "gated" over a pooled --init adds fresh gates
        None, "how the TTM memory is written: pool (the paper's) or gated (slots keep their value until a "
              "learned gate opens; default: the preset's); with --init, a pooled checkpoint gets new gates",
        choices=("pool", "gated"))
    age_code: float | None = option(  # None: the preset's; another value over an --init checkpoint re-codes its ages
        None, "amplitude of a fixed sinusoidal code of each latent snippet's age in the decoder's context, "
              "beside the learned age embedding (0 = off; default: the preset's); with --init, the checkpoint's "
              "weights are kept under the new code")
    age_slopes: bool = option(  # False: the preset's; over an --init checkpoint without them, new zero slopes
        False, "give every decoder cross-attention head a learned bias per snippet of a context token's "
               "age, so that it can prefer the oldest or newest match (with --init, the slopes start at "
               "zero over the checkpoint's weights)")
    length_scale: bool = option(  # False: the preset's; over an --init checkpoint without them, new gains of 1
        False, "scale every decoder cross-attention head's scores by a learned gain times the log of the "
               "number of context tokens (Scalable-Softmax), so that matches stay sharp in long streams "
               "(with --init, the gains start at 1 over the checkpoint's weights)")
    first_sight: float | None = option(  # None: the model's weight; > 0 adds the head (fresh over an --init checkpoint)
        None, "weight of the first-sight loss: a head learns which of the world's named shapes and sounds "
              "each snippet holds, and the decoder's context marks where each is first present (--data "
              "world only); a positive weight adds the head, over an --init checkpoint's weights")
    first_sight_tokens: bool = option(  # False: the preset's; over an --init checkpoint without them, fresh tokens
        False, "add one decoder context token per first-sight class carrying how surely and how long ago "
               "the thing was first seen in the window, so that \"which came first\" compares two tokens "
               "(needs --first-sight; with --init, the tokens start fresh over the checkpoint's weights)")
    first_sight_age_slopes: bool = option(  # False: the preset's; over an --init checkpoint without them, zero
        False, "give every decoder cross-attention head a learned bias per snippet of a first-sight token's "
               "age, so that of two things it matches it can prefer the one first seen longer ago (needs "
               "--first-sight-tokens; with --init, the slopes start at zero over the checkpoint's weights)")
    first_sight_query_slopes: bool = option(  # False: the preset's; over an --init checkpoint without them, zero
        False, "let every decoder cross-attention query add its own learned multiple of each first-sight "
               "token's age, on top of the heads' --first-sight-age-slopes, so that \"which came first\" can "
               "prefer the older while other questions do not (needs --first-sight-age-slopes; with --init, "
               "the projections start at zero over the checkpoint's weights)")
    first_sight_pointer: float | None = option(  # None: the preset's; > 0 adds the pointer (fresh over an --init checkpoint)
        None, "weight of the first-sight pointer's loss: every decoder query learns which first-sight classes its "
              "question names word for word, and its heads weight down the tokens of classes it does not name, "
              "so that an older shape of the same colour or shape cannot pass for one named (needs "
              "--first-sight-tokens; a positive weight adds the pointer, with --init fresh over the checkpoint's "
              "weights: logits 0 and gains 1, which change nothing until it learns)")
    first_sight_company: bool = option(  # False: the preset's; over an --init checkpoint without it, a zero projection
        False, "let every first-sight token also carry what else the first-sight head found present where its "
               "thing was first seen and one snippet later, so that \"what sound did the red circle make?\" reads "
               "one token (needs --first-sight-tokens; with --init, the projection starts at zero over the "
               "checkpoint's weights)")
    first_sight_hearing: bool = option(  # False: the preset's; over an --init checkpoint without it, a fresh head
        False, "take the sounds' presence in each snippet from a hearing head on its log-mel alone, not from the "
               "latent tokens, where sight and sound are fused and the first-sight head learned which shapes "
               "usually make which sounds (needs --first-sight W; with --init, the head starts fresh and learns "
               "from the first-sight loss at ten times the rate)")
    first_sight_onsets: bool = option(  # False: the preset's; over an --init checkpoint without it, fresh (no change)
        False, "let the hearing head also count the plays of each sound that start in a snippet, and each "
               "sound's first-sight token carry their sum over the window, so that \"how many times did you "
               "hear the drum?\" reads one token (needs --first-sight-hearing and --first-sight-tokens; with "
               "--init, the counter starts fresh and the tokens' projection of the counts at zero)")
    first_sight_lookup: bool = option(  # False: the preset's; over an --init checkpoint without it, zero (no change)
        False, "let every decoder layer also add what the first-sight tokens of the classes its question names "
               "hold, picked by the first-sight pointer, so that \"what sound did the red circle make?\" reads the "
               "circle's token without its attention competing with the snippets' tokens (needs "
               "--first-sight-pointer W; with --init, the projection starts at zero over the checkpoint's weights)")
    first_sight_age_code: float | None = option(  # None: the preset's; over an --init checkpoint, the same weights
        None, "amplitude of a fixed sinusoidal code of each first-sight token's age in snippets, added to the "
              "token (0 = off; needs --first-sight-tokens; with --init, the checkpoint's weights are kept under the "
              "new code; experiments/token_compare.py found the decoder ranking the tokens by age more slowly "
              "with it)")
    first_sight_read: float | None = option(  # None: the model's weight; reads --read-kinds' questions
        None, "weight of the first-sight read loss: while the decoder writes an answer that names one of "
              "the first-sight classes (\"which came first, the A or the B?\"), one head of its last layer "
              "is pointed at that class's first-sight token (needs --first-sight-tokens)")
    read_kinds: tuple[str, ...] = option(  # of READ_KINDS
        DEFAULT_READ_KINDS, "question kinds the first-sight read loss points at a token, comma-separated: order (at "
                    "the class its answer names); sound_of, count_sound, who_made (at the one class their "
                    "question names: the shape whose company holds its sound, the sound whose token carries "
                    "its count or whose company holds the shapes) (default order)", type=read_kinds)
    read_sounds_apart: bool = option(  # SOUND_READ_HEAD reads the sounds' tokens, READ_HEAD the shapes'
        False, "the first-sight read loss points another head of the decoder's last layer at a sound's token "
               "than at a shape's: one head otherwise learns both where --read-kinds reads sounds (count_sound, "
               "who_made) and shapes (sound_of) (needs --first-sight-read)")
    first_sight_only: float = option(  # share of `order` questions answered from tokens (training.samples)
        0.0, "share of the questions that name a first-sight class (\"which came first, the A or the B?\") whose "
             "decoder reads the first-sight tokens alone, not the memory or the snippets' latent tokens, so that "
             "the answer must come from the tokens (needs --first-sight-tokens; default %(default)s)")
    company_only: float = option(  # share of COMPANY_KINDS questions answered from tokens (training.samples)
        0.0, "share of the `sound_of` questions about a first-sight class (\"what sound did the red circle "
             "make?\") whose decoder reads the first-sight tokens alone, so that the answer must come from the "
             "company of the shape's first sight (needs --first-sight-company; default %(default)s)")
    first_sight_drills: int = option(  # drills per step over all processes (training.drills)
        0, "first-sight drills per step: \"which came first\" questions answered from exact first-sight marks "
           "alone, so that the decoder learns to rank the tokens by age far more often than clips ask it, at "
           "the decoder's cost only (needs --first-sight-tokens; default %(default)s)")
    clip_drills: int = option(  # drills per clip over the head's own marks (training.drills.draw_clip_drills)
        0, "clip drills per training clip: \"which came first\" questions about two things first seen in the clip, "
           "answered from the first-sight tokens the head makes of it, so that the decoder practises on the soft "
           "marks it meets in a question, at the decoder's cost only (needs --first-sight-tokens; default "
           "%(default)s)")
    lure_drills: float = option(  # training.drills.lured
        0.0, "share of clip drills that ask about two shapes where one like the newer (same colour or shape) was "
             "first seen before both, when the window has such a pair (default %(default)s)")
    window_dropout: float = option(  # share of questions whose latent window is cut (training.samples.cut_windows)
        0.0, "share of training questions whose decoder reads only a random number (0 to W-1) of the most "
             "recent snippets of latent state, so that answers about older events must come from the TTM "
             "memory (default %(default)s)")
    snippets: tuple[int, int] = option(  # clip length range for the on-the-fly world
        (4, 16), "clip length range in snippets for --data world (default 4-16)", type=snippet_range)
    curriculum: int = option(0, "steps over which the longest clip grows from the shortest to the max (0 = off)")
    one_length_a_step: bool = option(  # training.schedule.clip_lengths_at
        False, "draw one clip length a step (uniform over the range the curriculum allows) for every clip of "
               "the step on every rank, so that no clip is padded to a longer one and no rank waits on "
               "another's longer clip")
    questions_per_clip: int = option(8, "questions per world clip", flag="--questions")
    kind_weights: tuple[tuple[str, float], ...] = option(
        (), "question kinds drawn more often for --data world, e.g. direction=3,who_made=2 (others weigh 1)",
        type=kind_weights)
    wild: float = option(  # share of world clips whose media go through training.world.wild (codecs, rates)
        0.0, "share of world clips re-made as media from the wild: other frame and sample rates, stereo, "
             "H.264/VP8 + AAC/Opus round trips, camera response (default %(default)s)")
    off_palette: float = option(  # share of world clips re-coloured by training.world.off_palette
        0.0, "share of world clips whose shapes wear colours outside the palette, asked only colour-free "
             "questions, so shape is read from geometry (default %(default)s)")
    # a bad sample in a folder dataset stops the run instead of being skipped
    strict: bool = option(False, "stop at the first bad sample of a dataset folder")
    seed: int = option(0, "seed of the initial weights, the data order and the generated world clips "
                          "(default %(default)s)")
    amp: str = option("auto", "mixed precision (auto: bf16 on CUDA)", choices=("auto", "bf16", "off"))
    device: str = option("auto", "auto, cpu or cuda")
    threads: int | None = option(None, "torch CPU threads per process")
    checkpoint_every: int = option(200, "steps between checkpoints")
    keep_last: int = option(2, "checkpoints kept on disk")
    eval_every: int = option(0, "steps between world:test evaluations (0 = off)")
    eval_clips: int = option(32, "world:test clips per --eval-every evaluation (default %(default)s)")
    progress: bool = option(True, "no progress bar")  # the flag is --no-progress

    def validate(self) -> None:
        if self.batch < 1:
            raise TrainingError(f"--batch must be at least 1, got {self.batch}")
        if self.steps is not None and self.steps < 1:
            raise TrainingError(f"--steps must be at least 1, got {self.steps}")
        if self.epochs is not None and self.epochs <= 0:
            raise TrainingError(f"--epochs must be positive, got {self.epochs}")
        if self.lr <= 0 or not math.isfinite(self.lr):
            raise TrainingError(f"--lr must be a positive number, got {self.lr}")
        if self.amp not in ("auto", "bf16", "off"):
            raise TrainingError(f"--amp must be auto, bf16 or off, got {self.amp!r}")
        if self.decoder_layers is not None and self.decoder_layers < 1:
            raise TrainingError(f"--decoder-layers must be at least 1, got {self.decoder_layers}")
        if self.latent_window is not None and self.latent_window < 1:
            raise TrainingError(f"--latent-window must be at least 1 snippet, got {self.latent_window}")
        if self.first_sight is not None and not 0.0 <= self.first_sight < math.inf:
            raise TrainingError(f"--first-sight must be 0 or a positive loss weight such as 0.3, got {self.first_sight}")
        if self.first_sight_tokens and not self.first_sight:
            raise TrainingError("--first-sight-tokens summarise the first-sight head's marks: pass --first-sight W "
                                "(a positive loss weight such as 0.5) too")
        if self.first_sight_read is not None and not 0.0 <= self.first_sight_read < math.inf:
            raise TrainingError(f"--first-sight-read must be 0 or a positive loss weight such as 0.1, got "
                                f"{self.first_sight_read}")
        if self.first_sight_age_slopes and not self.first_sight_tokens:
            raise TrainingError("--first-sight-age-slopes rank the first-sight tokens: pass --first-sight-tokens "
                                "(and --first-sight W) too")
        if self.first_sight_query_slopes and not self.first_sight_age_slopes:
            raise TrainingError("--first-sight-query-slopes add to the first-sight age slopes: pass "
                                "--first-sight-age-slopes (and --first-sight-tokens, --first-sight W) too")
        if self.first_sight_pointer is not None and not 0.0 <= self.first_sight_pointer < math.inf:
            raise TrainingError(f"--first-sight-pointer must be 0 or a positive loss weight such as 0.3, got "
                                f"{self.first_sight_pointer}")
        if self.first_sight_pointer and not self.first_sight_tokens:
            raise TrainingError("--first-sight-pointer weighs the first-sight tokens: pass --first-sight-tokens "
                                "(and --first-sight W) too")
        if self.first_sight_company and not self.first_sight_tokens:
            raise TrainingError("--first-sight-company adds to the first-sight tokens: pass --first-sight-tokens "
                                "(and --first-sight W) too")
        if self.first_sight_hearing and not self.first_sight:
            raise TrainingError("--first-sight-hearing finds the first-sight head's sounds apart: pass --first-sight W "
                                "(its loss weight, such as 0.5) too")
        if self.first_sight_onsets and not (self.first_sight_hearing and self.first_sight_tokens):
            raise TrainingError("--first-sight-onsets counts what the hearing head hears into the first-sight "
                                "tokens: pass --first-sight-hearing and --first-sight-tokens (and --first-sight W) too")
        if self.first_sight_lookup and not self.first_sight_pointer:
            raise TrainingError("--first-sight-lookup reads the tokens the first-sight pointer finds named: pass "
                                "--first-sight-pointer W (and --first-sight-tokens, --first-sight W) too")
        if self.first_sight_read and not self.first_sight_tokens:
            raise TrainingError("--first-sight-read points the decoder at the first-sight tokens: pass "
                                "--first-sight-tokens (and --first-sight W) too")
        if self.read_sounds_apart and not self.first_sight_read:
            raise TrainingError("--read-sounds-apart splits the heads the first-sight read loss points: pass "
                                "--first-sight-read W (and --first-sight-tokens) too")
        if any(k not in READ_KINDS for k in self.read_kinds):
            raise TrainingError(f"--read-kinds names the kinds the first-sight read loss reads "
                                f"({', '.join(READ_KINDS)}), got {','.join(self.read_kinds)}")
        if not 0.0 <= self.first_sight_only <= 1.0:
            raise TrainingError(f"--first-sight-only is the share of questions answered from the first-sight "
                                f"tokens, between 0 and 1, got {self.first_sight_only}")
        if self.first_sight_only and not self.first_sight_tokens:
            raise TrainingError("--first-sight-only answers from the first-sight tokens: pass --first-sight-tokens "
                                "(and --first-sight W) too")
        if not 0.0 <= self.company_only <= 1.0:
            raise TrainingError(f"--company-only is the share of sound_of questions answered from the first-sight "
                                f"tokens, between 0 and 1, got {self.company_only}")
        if self.company_only and not self.first_sight_company:
            raise TrainingError("--company-only answers from the first-sight tokens' company: pass "
                                "--first-sight-company (and --first-sight-tokens, --first-sight W) too")
        if self.first_sight_drills < 0:
            raise TrainingError(f"--first-sight-drills is a number of questions per step, 0 or more, got "
                                f"{self.first_sight_drills}")
        if self.clip_drills < 0:
            raise TrainingError(f"--clip-drills is a number of questions per clip, 0 or more, got {self.clip_drills}")
        if self.clip_drills and not self.first_sight_tokens:
            raise TrainingError("--clip-drills are answered from the first-sight tokens: pass --first-sight-tokens "
                                "(and --first-sight W) too")
        if not 0.0 <= self.lure_drills <= 1.0 or (self.lure_drills and not self.clip_drills):
            raise TrainingError(f"--lure-drills is a share of the clip drills, between 0 and 1, with --clip-drills; "
                                f"got {self.lure_drills} with --clip-drills {self.clip_drills}")
        if self.first_sight_drills and not self.first_sight_tokens:
            raise TrainingError("--first-sight-drills are answered from the first-sight tokens: pass "
                                "--first-sight-tokens (and --first-sight W) too")
        if self.age_code is not None and not 0.0 <= self.age_code < math.inf:
            raise TrainingError(f"--age-code must be 0 (off) or a positive amplitude such as 0.1, got {self.age_code}")
        if self.first_sight_age_code is not None and not 0.0 <= self.first_sight_age_code < math.inf:
            raise TrainingError("--first-sight-age-code must be 0 (off) or a positive amplitude such as 1, got "
                                f"{self.first_sight_age_code}")
        if self.first_sight_age_code and not self.first_sight_tokens:
            raise TrainingError("--first-sight-age-code codes the first-sight tokens' ages: pass --first-sight-tokens "
                                "(and --first-sight W) too")
        low, high = self.snippets
        if not 2 <= low <= high:
            raise TrainingError(
                f"--snippets must be a range A-B with 2 <= A <= B (training needs a next snippet "
                f"to reconstruct), got {low}-{high}"
            )
        if not 0.0 <= self.wild <= 1.0:
            raise TrainingError(f"--wild is the share of clips made wild, between 0 and 1, got {self.wild}")
        if not 0.0 <= self.window_dropout <= 1.0:
            raise TrainingError(f"--window-dropout is the share of questions whose window is cut, between 0 "
                                f"and 1, got {self.window_dropout}")
        if not 0.0 <= self.off_palette <= 1.0:
            raise TrainingError(f"--off-palette is the share of clips re-coloured, between 0 and 1, "
                                f"got {self.off_palette}")
        unknown = [k for k, _ in self.kind_weights if k not in QUESTION_KINDS]
        if unknown or any(not (w >= 0 and math.isfinite(w)) for _, w in self.kind_weights):
            raise TrainingError(f"--kind-weights names question kinds ({', '.join(QUESTION_KINDS)}) with weights "
                                f">= 0; got {self.kind_weights}")
        if any(not prefix or not (scale > 0 and math.isfinite(scale)) for prefix, scale in self.lr_scales):
            raise TrainingError(f"--lr-scales names parameter prefixes with multiples of --lr > 0; got "
                                f"{self.lr_scales}")
        if self.micro_batch is not None and self.micro_batch < 1:
            raise TrainingError(f"--micro-batch must be at least 1, got {self.micro_batch}")

    def data_identity(self) -> dict[str, Any]:
        """The settings that fix which clips each step sees: must not change on resume."""
        return {"data": self.data, "batch": self.batch, "seed": self.seed, "snippets": list(self.snippets),
                "curriculum": self.curriculum, "questions_per_clip": self.questions_per_clip, "wild": self.wild,
                **({"one_length_a_step": True} if self.one_length_a_step else {}),
                **({"off_palette": self.off_palette} if self.off_palette else {}),
                **({"kind_weights": [list(p) for p in self.kind_weights]} if self.kind_weights else {})}


def _value_type(annotation: Any) -> Any:
    """`int` for `int` or `int | None`: what a flag's text is parsed as."""
    if isinstance(annotation, types.UnionType):
        (annotation,) = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    return annotation


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field, as the field declares it (`option`)."""
    hints = typing.get_type_hints(TrainConfig)
    groups: dict[str, argparse._MutuallyExclusiveGroup] = {}
    for f in fields(TrainConfig):
        kwargs = dict(f.metadata["add_argument"])
        group = kwargs.pop("group", None)
        flag = f.metadata["flag"] or "--" + f.name.replace("_", "-")
        if hints[f.name] is bool:
            if f.default is True:
                flag = "--no-" + flag.removeprefix("--")
            kwargs["action"] = "store_false" if f.default else "store_true"
        else:
            if f.metadata["flag"]:
                kwargs.setdefault("metavar", flag.removeprefix("--").replace("-", "_").upper())
            if _value_type(hints[f.name]) is not str:  # argparse keeps text as it is
                kwargs.setdefault("type", _value_type(hints[f.name]))
            if not kwargs.get("required"):
                kwargs["default"] = f.default
        if group is not None and group not in groups:
            groups[group] = parser.add_mutually_exclusive_group()
        target = parser if group is None else groups[group]
        target.add_argument(flag, dest=f.name, help=f.metadata["help"], **kwargs)


def config_from_flags(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of flags parsed by a parser `add_config_arguments` built. A checkpoint
    interval below one step means every step."""
    cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
    return replace(cfg, snippets=tuple(cfg.snippets), checkpoint_every=max(1, cfg.checkpoint_every))
