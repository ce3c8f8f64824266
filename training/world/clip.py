"""`Clip`: one rendered episode of the world, and `WorldConfig`/`World` for the splits."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from model.media import MEDIA_PRESETS, MediaSpec, Snippet
from streamer.sources import Arrays
from training.world.answers import AnswerKey
from training.world.generate import HeldOut, generate_timeline
from training.world.questions import Question, choose_questions
from training.world.render import render_audio, render_frames
from training.world.timeline import Timeline
from training.world.vocab import QUESTION_KINDS


@dataclass(frozen=True)
class WorldConfig:
    """How clips of one split are drawn. Seeds of a split are `seed_start + index`,
    `index < size`, so the splits' seed ranges never meet."""

    split: str = "train"
    spec: MediaSpec = MEDIA_PRESETS["tiny"]
    snippets: tuple[int, int] = (4, 16)  # clip length range in snippets, inclusive
    questions_per_clip: int = 8
    kinds: tuple[str, ...] = QUESTION_KINDS
    held_out: HeldOut = "exclude"
    kind_weights: tuple[tuple[str, float], ...] = ()  # (kind, weight) pairs; unnamed kinds weigh 1
    seed_start: int = 0
    size: int = 1_000_000_000

    def __post_init__(self) -> None:
        low, high = self.snippets
        if not 1 <= low <= high:
            raise ValueError(f"snippets must be a range 'A-B' with 1 <= A <= B, got {low}-{high}")
        unknown = [k for k in self.kinds if k not in QUESTION_KINDS]
        if unknown:
            raise ValueError(f"unknown question kinds {unknown}; choose from {', '.join(QUESTION_KINDS)}")
        unknown = [k for k, _ in self.kind_weights if k not in QUESTION_KINDS]
        if unknown or any(not w >= 0 for _, w in self.kind_weights):
            raise ValueError(f"kind_weights must name question kinds ({', '.join(QUESTION_KINDS)}) with weights "
                             f">= 0, got {self.kind_weights}")
        if self.questions_per_clip < 0:
            raise ValueError("questions_per_clip must be 0 or more")

    @classmethod
    def preset(cls, split: str, **overrides) -> WorldConfig:
        """The named split (`train`, `test`, `compositional`, `long`), with fields overridden."""
        if split not in SPLITS:
            raise ValueError(f"unknown world split {split!r}; choose one of {', '.join(SPLITS)}")
        return replace(SPLITS[split], **overrides)


TRAIN_SNIPPETS = (4, 16)

SPLITS: dict[str, WorldConfig] = {
    "train": WorldConfig("train", snippets=TRAIN_SNIPPETS, seed_start=0, size=1_000_000_000),
    "test": WorldConfig("test", snippets=TRAIN_SNIPPETS, seed_start=1_000_000_000, size=100_000_000),
    "compositional": WorldConfig(
        "compositional", snippets=TRAIN_SNIPPETS, held_out="require", seed_start=1_100_000_000, size=100_000_000
    ),
    # Four times the training length: tests memory beyond what training showed.
    "long": WorldConfig(
        "long", snippets=(4 * TRAIN_SNIPPETS[0], 4 * TRAIN_SNIPPETS[1]), seed_start=1_200_000_000, size=100_000_000
    ),
    # Test-like clips whose media reach the model through `training.world.wild` (other frame
    # and sample rates, stereo, codecs, camera response); evaluation applies that path.
    "wild": WorldConfig("wild", snippets=TRAIN_SNIPPETS, seed_start=1_300_000_000, size=100_000_000),
    # Held out from training and from the reported numbers: what thresholds are tuned on
    # (the standing-query threshold stored in a checkpoint).
    "val": WorldConfig("val", snippets=TRAIN_SNIPPETS, seed_start=1_400_000_000, size=100_000_000),
}


@dataclass
class Clip:
    """A rendered clip: the timeline, T·F frames, T·S audio samples and the questions."""

    seed: int
    spec: MediaSpec
    timeline: Timeline
    frames: np.ndarray  # uint8 [T*F, H, W, 3]
    audio: np.ndarray  # float32 [T*S]
    questions: list[Question] = field(default_factory=list)

    @classmethod
    def generate(cls, seed: int, config: WorldConfig = SPLITS["train"]) -> Clip:
        """The clip for `seed`: the same seed and config always give the same bytes."""
        timeline_rng, pixel_rng, audio_rng, question_rng = (
            np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4)
        )
        spec = config.spec
        low, high = config.snippets
        n_snippets = int(timeline_rng.integers(low, high + 1))
        timeline = generate_timeline(timeline_rng, spec, n_snippets, config.held_out)
        frames = render_frames(timeline, spec, n_snippets * spec.frames_per_snippet, pixel_rng)
        audio = render_audio(timeline, spec, n_snippets * spec.samples_per_snippet, audio_rng)
        questions = choose_questions(
            timeline, spec, n_snippets, config.kinds, config.questions_per_clip, question_rng,
            dict(config.kind_weights),
        )
        return cls(seed, spec, timeline, frames, audio, questions)

    @property
    def n_snippets(self) -> int:
        return len(self.frames) // self.spec.frames_per_snippet

    @property
    def duration(self) -> float:
        return self.n_snippets * self.spec.snippet_seconds

    def video_snippets(self) -> np.ndarray:
        """uint8 [T, F, H, W, 3] (a view, no copy)."""
        return self.frames.reshape(self.n_snippets, self.spec.frames_per_snippet, *self.frames.shape[1:])

    def audio_snippets(self) -> np.ndarray:
        """float32 [T, S] (a view, no copy)."""
        return self.audio.reshape(self.n_snippets, self.spec.samples_per_snippet)

    def snippet_video(self, k: int) -> np.ndarray:
        return self.video_snippets()[k]

    def snippet_audio(self, k: int) -> np.ndarray:
        return self.audio_snippets()[k]

    def snippets(self) -> list[Snippet]:
        d = self.spec.snippet_seconds
        return [
            Snippet(k, k * d, (k + 1) * d, self.snippet_video(k), self.snippet_audio(k))
            for k in range(self.n_snippets)
        ]

    def source(self, realtime: bool = False, block: int = 1024) -> Arrays:
        """The clip as a media source: frames and `block`-sample audio blocks in time order,
        stamped from 0. `realtime` paces them to the wall clock, like a camera and a mic."""
        return Arrays(video=self.frames, fps=self.spec.fps, audio=self.audio, rate=self.spec.sample_rate,
                      block=block, realtime=realtime)

    def answer(self, kind: str, t_ask: float, **subject: str) -> str:
        """Answer any question about this clip at any time, e.g. for a live demo."""
        return AnswerKey(self.timeline, self.spec, t_ask).answer(kind, **subject)


class World:
    """The clips of one split, addressed by index: `World(config).clip(i)`."""

    def __init__(self, config: WorldConfig = SPLITS["train"]) -> None:
        self.config = config

    def __len__(self) -> int:
        return self.config.size

    def seed(self, index: int) -> int:
        if not 0 <= index < self.config.size:
            raise ValueError(
                f"clip index {index} is outside the {self.config.split!r} split (0..{self.config.size - 1})"
            )
        return self.config.seed_start + index

    def clip(self, index: int) -> Clip:
        return Clip.generate(self.seed(index), self.config)
