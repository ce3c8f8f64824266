"""The trainer's data: training samples addressed by a global index, and batches of them.

Step s of a run trains on the samples [s·B, (s+1)·B), whatever the number of processes, so
any step's clips can be rebuilt on resume and N ranks see what one process would.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import torch

from model import StreamerModel
from model.align import FALSE, TRUE, UNCLEAR
from model.decoder import READ_HEAD, SOUND_READ_HEAD
from training.config import DEFAULT_READ_KINDS, READ_KINDS, TrainingError
from training.data import CLIPS_PER_SEED, FolderDataset, Sample, collate, world_sample
from training.world.clip import World, WorldConfig
from training.world.first_sight import FIRST_SIGHT_CLASSES, UNKNOWN, names_in, presence_targets
from training.world.off_palette import off_palette_sample
from training.world.phrases import templates_for
from training.world.vocab import SOUNDS
from training.world.wild import wild_sample


class TrainingData:
    """Training samples by global index, so any step's clips can be rebuilt on resume.

    `world`: the on-the-fly world (train split), clip i of seed s is train clip
    s·CLIPS_PER_SEED + i, rendered at the clip length the curriculum allows at that step.
    A folder: `annotations.jsonl` + media (training.data), one seeded shuffle per epoch.
    """

    def __init__(self, source: str, media, seed: int, questions_per_clip: int, folder=None,
                 wild: float = 0.0, kind_weights: tuple[tuple[str, float], ...] = (),
                 off_palette: float = 0.0) -> None:
        self.source = source
        self.kind_weights = kind_weights
        self.wild = wild
        self.off_palette = off_palette
        self.media = media
        self.seed = seed
        self.questions_per_clip = questions_per_clip
        self.folder = folder
        self._orders: dict[int, list[int]] = {}

    @classmethod
    def open(cls, spec: str, media, seed: int = 0, questions_per_clip: int = 8,
             strict: bool = False, wild: float = 0.0,
             kind_weights: tuple[tuple[str, float], ...] = (), off_palette: float = 0.0) -> TrainingData:
        if spec in ("world", "world:train"):
            return cls("world", media, seed, questions_per_clip, wild=wild, kind_weights=kind_weights,
                       off_palette=off_palette)
        if kind_weights:
            raise TrainingError("--kind-weights weighs the question kinds of world clips; it does not apply to a "
                                "folder dataset")
        if wild:
            raise TrainingError("--wild re-makes the media of world clips; it does not apply to a folder dataset")
        if off_palette:
            raise TrainingError("--off-palette re-colours the shapes of world clips; it does not apply to a "
                                "folder dataset")
        if spec.startswith("world:"):
            raise TrainingError(f"train on --data world (the train split); {spec} is for `streamer eval`")
        path = Path(spec)
        if not path.is_dir():
            raise TrainingError(
                f"data folder {spec} does not exist; pass --data world for the on-the-fly world, or a "
                "folder with annotations.jsonl and media files (make one with `streamer world --out DIR`)"
            )
        try:
            folder = FolderDataset(path, media, strict=strict)
        except (OSError, ValueError) as err:
            raise TrainingError(f"cannot read the dataset in {spec}: {err}") from None
        if len(folder) == 0:
            raise TrainingError(f"the dataset in {spec} has no usable clips")
        return cls(spec, media, seed, questions_per_clip, folder)

    def problems(self) -> int:
        """Samples of a folder dataset skipped for bad data so far (reported at the end)."""
        return 0 if self.folder is None else len(self.folder.report)

    @property
    def size(self) -> int | None:
        return None if self.folder is None else len(self.folder)

    def sample(self, index: int, lengths: tuple[int, int]) -> Sample:
        if self.folder is None:
            config = WorldConfig.preset("train", spec=self.media, snippets=lengths,
                                        questions_per_clip=self.questions_per_clip,
                                        kind_weights=self.kind_weights)
            world_index = (self.seed * CLIPS_PER_SEED + index) % config.size
            clip = World(config).clip(world_index)
            if self.off_palette and np.random.default_rng([self.seed, index, 0x0FF]).random() < self.off_palette:
                return off_palette_sample(clip, config, name=f"world:train#{world_index}(off-palette)")
            if self.wild and np.random.default_rng([self.seed, index, 0x3A1]).random() < self.wild:
                return wild_sample(clip, name=f"world:train#{world_index}(wild)")
            return world_sample(clip, name=f"world:train#{world_index}")
        epoch, position = divmod(index, len(self.folder))
        if epoch not in self._orders:
            generator = torch.Generator().manual_seed(self.seed * 7919 + epoch)
            self._orders = {epoch: torch.randperm(len(self.folder), generator=generator).tolist()}
        return self.folder.sample(self._orders[epoch][position])


MAX_PHRASES = 256  # phrase pool of one batch for the alignment loss


def to_model_batch(model: StreamerModel, samples: list[Sample], first_sight_reads: bool = False,
                   first_sight_only: float = 0.0, generator: torch.Generator | None = None,
                   first_sight_names: bool = False, company_only: float = 0.0,
                   read_kinds: tuple[str, ...] = DEFAULT_READ_KINDS,
                   read_sounds_apart: bool = False) -> dict[str, torch.Tensor]:
    """Pad clips to the longest (snippet_mask marks real snippets), tokenise the questions and,
    for a model with an alignment head, build the batch's phrase pool and its targets (with a
    first-sight head, its presence targets too; with `first_sight_reads`, the first-sight class
    each question of `read_kinds` is read at, `read_targets`; with `read_sounds_apart`, the
    decoder head that reads it, `read_heads`). With `first_sight_only`, that share
    of the `order` questions that name a first-sight class (drawn with `generator`) let the decoder read the first-sight tokens alone
    (first_sight_only [B, Q]), not the memory or the snippets: it otherwise leaves the tokens
    unread, since the memory answers `order` on short clips well enough. With
    `first_sight_names`, the classes each question names (first_sight_names [B, Q, classes]), which
    the first-sight pointer learns to find. With `company_only`, that share of the `sound_of`
    questions whose shape is a first-sight class read the tokens alone too, so that the answer
    must come from the company of its first sight (`decoder.first_sight_company`)."""
    padded = collate(samples)
    batch = {k: padded[k] for k in ("video", "audio", "snippet_mask")}
    batch.update(model.encode_batch_questions(
        [[(q.text, q.answer, q.ask_snippets) for q in qs] for qs in padded["questions"]]))
    if model.can_align and any(s.get("phrases") is not None for s in samples):
        batch.update(phrase_pool(model, samples, batch["snippet_mask"].shape[1]))
    classes = model.cfg.decoder.first_sight_classes
    if classes and any(s.get("phrases") is not None for s in samples):
        batch["presence_targets"] = presence_batch(samples, batch["snippet_mask"].shape[1], classes)
    if model.cfg.decoder.first_sight_onsets and any(s.get("phrases") is not None for s in samples):
        batch["onset_targets"] = onset_batch(samples, batch["snippet_mask"].shape[1])
    if first_sight_names:
        batch["first_sight_names"] = named_classes(padded["questions"], batch["question_valid"].shape[1])
    width = batch["question_valid"].shape[1]
    if first_sight_reads:
        batch["first_sight_reads"] = read_targets(padded["questions"], width, read_kinds)
        if read_sounds_apart:
            batch["first_sight_read_heads"] = read_heads(batch["first_sight_reads"])
    if first_sight_only:
        orders = read_targets(padded["questions"], width)
        batch["first_sight_only"] = (orders >= 0) & (torch.rand(orders.shape, generator=generator)
                                                     < first_sight_only)
    if company_only:
        about = company_questions(padded["questions"], width)
        only = about & (torch.rand(about.shape, generator=generator) < company_only)
        batch["first_sight_only"] = batch["first_sight_only"] | only if "first_sight_only" in batch else only
    return batch


# Question kinds that ask what came with a first-sight class (`decoder.first_sight_company`).
COMPANY_KINDS = ("sound_of",)


def company_questions(questions: list[list], width: int) -> torch.Tensor:
    """bool [B, width]: questions of COMPANY_KINDS that name a first-sight class ("what sound did
    the red circle make?"; not a shape of an off-palette colour)."""
    asks = torch.zeros(len(questions), width, dtype=torch.bool)
    for i, clip_questions in enumerate(questions):
        asks[i, :len(clip_questions)] = torch.tensor([q.kind in COMPANY_KINDS for q in clip_questions], dtype=torch.bool)
    return asks & named_classes(questions, width).any(dim=-1)


def read_targets(questions: list[list], width: int,
                 kinds: tuple[str, ...] = DEFAULT_READ_KINDS) -> torch.Tensor:
    """int64 [B, width]: per question of `kinds` (of READ_KINDS), the index of the first-sight class
    whose token the first-sight read loss points the decoder at: an `order` answer's class, the one
    class any other kind's question names; -1 for other questions and where there is no such class
    (an off-palette colour)."""
    unknown = [k for k in kinds if k not in READ_KINDS]
    if unknown:
        raise TrainingError(f"the first-sight read loss reads {', '.join(READ_KINDS)} questions, not "
                            f"{', '.join(unknown)}")
    targets = torch.full((len(questions), width), -1, dtype=torch.long)
    named = named_classes(questions, width)
    for i, clip_questions in enumerate(questions):
        for j, q in enumerate(clip_questions):
            if q.kind not in kinds:
                continue
            if q.kind == "order" and q.answer in FIRST_SIGHT_CLASSES:
                targets[i, j] = FIRST_SIGHT_CLASSES.index(q.answer)
            elif q.kind != "order" and int(named[i, j].sum()) == 1:
                targets[i, j] = int(named[i, j].nonzero())
    return targets


def read_heads(targets: torch.Tensor) -> torch.Tensor:
    """int64 like `read_targets`' targets: the head of the decoder's last layer that reads each,
    SOUND_READ_HEAD for a sound's token and READ_HEAD for any other (and where nothing is read)."""
    first_sound = len(FIRST_SIGHT_CLASSES) - len(SOUNDS)
    return torch.where(targets >= first_sound, SOUND_READ_HEAD, READ_HEAD)


def named_classes(questions: list[list], width: int) -> torch.Tensor:
    """bool [B, width, classes]: the first-sight classes whose name each question holds word for
    word ("which came first, the red circle or the blue square?" names two; "what color is the
    square?" none)."""
    names = torch.zeros(len(questions), width, len(FIRST_SIGHT_CLASSES), dtype=torch.bool)
    for i, clip_questions in enumerate(questions):
        if clip_questions:
            names[i, :len(clip_questions)] = names_in([q.text for q in clip_questions])
    return names


def presence_batch(samples: list[Sample], length: int, classes: int) -> torch.Tensor:
    """int8 [B, T, classes] targets of the first-sight head (training.world.first_sight),
    UNKNOWN on padding snippets and for clips without a world truth (a folder dataset's)."""
    if classes != len(FIRST_SIGHT_CLASSES):
        raise TrainingError(f"the model's first-sight head has {classes} classes; the world's truth has "
                            f"{len(FIRST_SIGHT_CLASSES)} ({', '.join(FIRST_SIGHT_CLASSES[:3])}, ...)")
    targets = torch.full((len(samples), length, classes), UNKNOWN, dtype=torch.int8)
    for i, sample in enumerate(samples):
        if sample.get("phrases") is None:
            continue
        truths = sample["phrases"].truths[: len(sample["video"])]
        targets[i, : len(truths)] = torch.from_numpy(presence_targets(truths))
    return targets


def onset_batch(samples: list[Sample], length: int) -> torch.Tensor:
    """int64 [B, T, sounds]: the plays of each sound that each snippet starts (the hearing head's
    onset targets, training.world.phrases.snippet_onsets), -1 on padding snippets and for clips
    without a world truth."""
    targets = torch.full((len(samples), length, len(SOUNDS)), -1, dtype=torch.int64)
    for i, sample in enumerate(samples):
        phrases = sample.get("phrases")
        if phrases is None or not phrases.onsets:
            continue
        onsets = phrases.onsets[: len(sample["video"])]
        targets[i, : len(onsets)] = torch.tensor(onsets, dtype=torch.int64)
    return targets


def cut_windows(batch: dict[str, torch.Tensor], share: float, window: int,
                generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Hide the older part of the latent window from a `share` of the batch's questions:
    window_snippets [B, Q] is the window W for most and a uniform 0..W-1 for the cut ones.

    The window answers most questions on its own, so the memory otherwise learns from the few
    asked about what is older than W snippets; a cut window makes every kind a memory question.
    A cut question has no first-sight read target and reads its whole context: its window may
    hide the first sights."""
    shape = batch["ask_snippets"].shape
    cut = torch.rand(shape, generator=generator) < share
    kept = torch.randint(0, window, shape, generator=generator)
    out = {**batch, "window_snippets": torch.where(cut, kept, torch.full(shape, window))}
    if "first_sight_reads" in batch:
        out["first_sight_reads"] = batch["first_sight_reads"].masked_fill(cut, -1)
    if "first_sight_only" in batch:
        out["first_sight_only"] = batch["first_sight_only"] & ~cut
    return out


def phrase_pool(model: StreamerModel, samples: list[Sample], length: int) -> dict[str, torch.Tensor]:
    """Every phrase true somewhere in the batch plus the clips' hard negatives (up to
    MAX_PHRASES), each worded with a random template; targets [B, T, P] say, per snippet, which
    are true, false or unclear (padding snippets and clips without phrases: all unclear).
    Its random draws are seeded by the clips' names, so the pool is a function of the clips
    alone: the same whichever process or micro-batch builds it."""
    rng = np.random.default_rng(zlib.crc32("\n".join(str(s.get("name", "")) for s in samples).encode()))
    true = sorted({p for s in samples if s.get("phrases") for t in s["phrases"].truths for p in t.true})
    negatives = sorted({p for s in samples if s.get("phrases") for p in s["phrases"].negatives} - set(true))
    room = max(0, MAX_PHRASES - len(true))
    if len(negatives) > room:
        keep = np.sort(rng.permutation(len(negatives))[:room])
        negatives = [negatives[i] for i in keep]
    pool = (true + negatives)[:MAX_PHRASES]
    column = {phrase: j for j, phrase in enumerate(pool)}
    targets = torch.full((len(samples), length, len(pool)), UNCLEAR, dtype=torch.int8)
    for i, sample in enumerate(samples):
        phrases = sample.get("phrases")
        if phrases is None:
            continue
        for k, truth in enumerate(phrases.truths[: len(sample["video"])]):
            row = targets[i, k]
            row.fill_(FALSE)  # every pool phrase is false here unless the snippet's truth says otherwise
            row[[column[p] for p in truth.unclear if p in column]] = UNCLEAR
            row[[column[p] for p in truth.true if p in column]] = TRUE
    worded = []
    for phrase in pool:
        templates = templates_for(phrase)
        worded.append(templates[int(rng.integers(len(templates)))].format(p=phrase))
    ids, mask = model.phrase_ids(worded)
    return {"align_ids": ids, "align_mask": mask, "align_targets": targets}
