"""The trainer's data: training samples addressed by a global index, and batches of them.

Step s of a run trains on the samples [s·B, (s+1)·B), whatever the number of processes, so
any step's clips can be rebuilt on resume and N ranks see what one process would.
"""

from __future__ import annotations

from pathlib import Path
import numpy as np
import torch

from model import StreamerModel
from training.config import TrainingError
from training.data import CLIPS_PER_SEED, FolderDataset, Sample, collate, world_sample
from training.world.clip import World, WorldConfig
from training.world.wild import wild_sample


class TrainingData:
    """Training samples by global index, so any step's clips can be rebuilt on resume.

    `world`: the on-the-fly world (train split), clip i of seed s is train clip
    s·CLIPS_PER_SEED + i, rendered at the clip length the curriculum allows at that step.
    A folder: `annotations.jsonl` + media (training.data), one seeded shuffle per epoch.
    """

    def __init__(self, source: str, media, seed: int, questions_per_clip: int, folder=None,
                 wild: float = 0.0) -> None:
        self.source = source
        self.wild = wild
        self.media = media
        self.seed = seed
        self.questions_per_clip = questions_per_clip
        self.folder = folder
        self._orders: dict[int, list[int]] = {}

    @classmethod
    def open(cls, spec: str, media, seed: int = 0, questions_per_clip: int = 8,
             strict: bool = False, wild: float = 0.0) -> TrainingData:
        if spec in ("world", "world:train"):
            return cls("world", media, seed, questions_per_clip, wild=wild)
        if wild:
            raise TrainingError("--wild re-makes the media of world clips; it does not apply to a folder dataset")
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
                                        questions_per_clip=self.questions_per_clip)
            world_index = (self.seed * CLIPS_PER_SEED + index) % config.size
            clip = World(config).clip(world_index)
            if self.wild and np.random.default_rng([self.seed, index, 0x3A1]).random() < self.wild:
                return wild_sample(clip, name=f"world:train#{world_index}(wild)")
            return world_sample(clip, name=f"world:train#{world_index}")
        epoch, position = divmod(index, len(self.folder))
        if epoch not in self._orders:
            generator = torch.Generator().manual_seed(self.seed * 7919 + epoch)
            self._orders = {epoch: torch.randperm(len(self.folder), generator=generator).tolist()}
        return self.folder.sample(self._orders[epoch][position])


def to_model_batch(model: StreamerModel, samples: list[Sample]) -> dict[str, torch.Tensor]:
    """Pad clips to the longest (snippet_mask marks real snippets) and tokenise the questions."""
    padded = collate(samples)
    batch = {k: padded[k] for k in ("video", "audio", "snippet_mask")}
    batch.update(model.encode_batch_questions(
        [[(q.text, q.answer, q.ask_snippets) for q in qs] for qs in padded["questions"]]))
    return batch
