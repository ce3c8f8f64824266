"""Training data readers: the world on the fly, and a folder of media + annotations.jsonl.

Both produce the same sample: {"video": uint8 [T, F, H, W, 3], "audio": float32 [T, S],
"questions": [SampleQuestion(text, answer, ask_snippets, kind)], "name": str}. Folder
media is decoded through the engine's own `File` source and `Chunker`, so training sees
exactly what streaming sees. Tokenisation stays with the model package.

Bad data (missing or corrupt file, empty question or answer, ask time outside the clip,
unreadable line) never crashes a run and is never dropped silently: the sample is
skipped, counted in a `DataReport` with the file name, and warned about; `strict=True`
turns the first problem into a ValueError.
"""

from __future__ import annotations

import json
import math
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import av
import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from model.media import MEDIA_PRESETS, MediaSpec, VideoFrame
from streamer.chunker import Chunker
from streamer.sources import File, SourceError
from training.world.clip import SPLITS, World, WorldConfig
from training.world.media_files import ANNOTATIONS
from training.world.phrases import clip_phrases

Sample = dict[str, Any]


class SampleQuestion(NamedTuple):
    """A question as training sees it: asked after `ask_snippets` whole snippets."""

    text: str
    answer: str
    ask_snippets: int
    kind: str = "all"


# --------------------------------------------------------------------------- problems


@dataclass(frozen=True)
class DataProblem:
    where: str  # file name, or "annotations.jsonl:LINE"
    reason: str


@dataclass
class DataReport:
    """Every sample skipped for bad data, with where and why."""

    problems: list[DataProblem] = field(default_factory=list)

    def add(self, where: str, reason: str) -> None:
        self.problems.append(DataProblem(where, reason))

    def __len__(self) -> int:
        return len(self.problems)

    def counts(self) -> Counter:
        return Counter(p.reason for p in self.problems)

    def summary(self, limit: int = 20) -> str:
        """A few lines a person can act on: how many were skipped, why, and where."""
        if not self.problems:
            return "no data problems"
        lines = [f"skipped {len(self.problems)} sample(s) for bad data:"]
        lines += [f"  {n} x {reason}" for reason, n in self.counts().most_common()]
        lines += [f"  - {p.where}: {p.reason}" for p in self.problems[:limit]]
        if len(self.problems) > limit:
            lines.append(f"  ... and {len(self.problems) - limit} more")
        return "\n".join(lines)


class BadDataError(ValueError):
    """Raised in strict mode at the first bad sample."""


# --------------------------------------------------------------------------- the world


CLIPS_PER_SEED = 10_000_000  # clips of a split in one seed's stream, so different seeds never share clips


class WorldStream(IterableDataset):
    """Endless world clips rendered on the fly, no disk. Each DataLoader worker draws its own
    clips: worker w of W takes clip indices `seed·CLIPS_PER_SEED + w, + W, + 2W, ...` of the split."""

    def __init__(self, config: WorldConfig = SPLITS["train"], seed: int = 0) -> None:
        self.world = World(config)
        self.seed = seed

    def __iter__(self) -> Iterator[Sample]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        index = self.seed * CLIPS_PER_SEED + worker
        while True:
            yield world_sample(self.world.clip(index % len(self.world)), name=f"world:{self.world.config.split}#{index}")
            index += workers


def world_sample(clip, name: str = "") -> Sample:
    """A rendered `Clip` in the sample format."""
    return {
        "video": clip.video_snippets(),
        "audio": clip.audio_snippets(),
        "questions": [SampleQuestion(q.text, q.answer, q.ask_snippets, q.kind) for q in clip.questions],
        "phrases": clip_phrases(clip),
        "name": name or f"world:{clip.seed}",
    }


# --------------------------------------------------------------------------- a folder


@dataclass
class FolderClip:
    """One media file (or a [start, end) part of it) and the questions asked about it."""

    path: Path
    start: float
    end: float | None
    questions: list[tuple[str, str, float | None, str, str]]  # text, answer, t_ask, kind, where

    @property
    def name(self) -> str:
        part = "" if self.start == 0 and self.end is None else f"[{self.start:g}-{'' if self.end is None else f'{self.end:g}'}]"
        return f"{self.path}{part}"


class FolderDataset(Dataset):
    """`annotations.jsonl` + media files, one line per question:

        {"video": "clips/a.mp4", "question": "...", "answer": "...",
         "t_ask": 3.2, "kind": "...", "start": 0.0, "end": 10.0}

    `video` is relative to the folder (or absolute); `t_ask` (seconds on the file's
    clock, default the end of the clip), `kind`, `start` and `end` are optional. Lines with the
    same video, start and end form one clip. Files are checked when the dataset opens;
    a file that opens but fails while decoding is skipped when it is read, and the next
    usable clip is returned in its place, so an index-driven trainer keeps going.
    """

    def __init__(
        self, root: str | Path, spec: MediaSpec = MEDIA_PRESETS["tiny"], strict: bool = False,
        annotations: str = ANNOTATIONS,
    ) -> None:
        self.root = Path(root)
        self.spec = spec
        self.strict = strict
        self.report = DataReport()
        self._bad: set[int] = set()
        path = self.root / annotations
        if not path.is_file():
            raise ValueError(f"{path} not found: a dataset folder needs {annotations} (one JSON object per "
                             f"line with video, question, answer); make one with `streamer world --out DIR`")
        self.clips = self._check_files(self._read_annotations(path))
        if self.report.problems:
            warnings.warn(f"{self.root}: {self.report.summary()}", RuntimeWarning, stacklevel=2)

    # -- problems

    def _problem(self, where: str, reason: str) -> None:
        """Record a skipped sample (returns None, so callers can `return self._problem(...)`)."""
        if self.strict:
            raise BadDataError(f"{where}: {reason} (strict mode; drop --strict to skip bad samples and report them)")
        self.report.add(where, reason)

    # -- reading and checking the annotations

    def _read_annotations(self, path: Path) -> list[FolderClip]:
        clips: dict[tuple[str, float, float | None], FolderClip] = {}
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                where = f"{path.name}:{number}"
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    if not isinstance(record, dict):
                        raise ValueError("not a JSON object")
                except ValueError as error:
                    self._problem(where, f"not a JSON object ({error})")
                    continue
                entry = self._parse(record, where)
                if entry is None:
                    continue
                video, start, end, question = entry
                key = (video, start, end)
                if key not in clips:
                    media = Path(video) if Path(video).is_absolute() else self.root / video
                    clips[key] = FolderClip(media, start, end, [])
                clips[key].questions.append(question)
        return list(clips.values())

    def _parse(self, record: dict, where: str):
        video = record.get("video")
        text = str(record.get("question") or "").strip()
        answer = str(record.get("answer") or "").strip()
        if not isinstance(video, str) or not video.strip():
            return self._problem(where, "no video path")
        where = f"{where} ({video})"
        if not text:
            return self._problem(where, "empty question")
        if not answer:
            return self._problem(where, "empty answer")
        try:
            start = float(record.get("start") or 0.0)
            end = None if record.get("end") is None else float(record["end"])
            t_ask = None if record.get("t_ask") is None else float(record["t_ask"])
        except (TypeError, ValueError):
            return self._problem(where, "start, end and t_ask must be numbers of seconds")
        if start < 0 or (end is not None and end <= start) or not all(
            math.isfinite(v) for v in (start, end or 0.0, t_ask or 0.0)
        ):
            return self._problem(where, f"bad time range start={start} end={end}")
        kind = str(record.get("kind") or "all")
        return video, start, end, (text, answer, t_ask, kind, where)

    def _check_files(self, clips: list[FolderClip]) -> list[FolderClip]:
        """Open every file once: drop missing or unreadable ones and questions past the end."""
        usable = []
        for clip in clips:
            duration = self._probe(clip)
            if duration is None:
                continue
            end = duration if clip.end is None else min(clip.end, duration)
            kept = []
            for question in clip.questions:
                t_ask = question[2]
                if t_ask is not None and t_ask > end + 1 / self.spec.fps:
                    self._problem(question[4], f"ask time {t_ask:g} s is past the end of the clip ({end:.2f} s)")
                elif t_ask is not None and t_ask < clip.start + self.spec.snippet_seconds - 1e-6:
                    self._problem(question[4], f"ask time {t_ask:g} s is before the first whole snippet ends "
                                               f"({clip.start + self.spec.snippet_seconds:g} s)")
                else:
                    kept.append(question)
            if kept:
                clip.questions = kept
                usable.append(clip)
        return usable

    def _probe(self, clip: FolderClip) -> float | None:
        """The file's duration in seconds, or None (problem recorded) if it cannot be used."""
        if not clip.path.is_file():
            return self._problem(str(clip.path), "missing file")
        try:
            with av.open(str(clip.path)) as container:
                streams = [s for s in container.streams if s.type in ("video", "audio")]
                if not streams:
                    return self._problem(str(clip.path), "no video or audio stream")
                durations = [float(s.duration * s.time_base) for s in streams if s.duration]
                if container.duration:
                    durations.append(container.duration / av.time_base)
        except (av.FFmpegError, OSError, UnicodeDecodeError) as error:
            return self._problem(str(clip.path), f"corrupt or unreadable media ({type(error).__name__}: {error})")
        if not durations:
            return self._problem(str(clip.path), "the file does not say how long it is")
        if clip.start >= max(durations):
            return self._problem(str(clip.path), f"start {clip.start:g} s is past the end ({max(durations):.2f} s)")
        return max(durations)

    # -- decoding

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> Sample:
        return self.sample(index)

    def sample(self, index: int) -> Sample:
        """Decode clip `index`; a clip that fails to decode is reported and the next one returned."""
        if not self.clips:
            raise ValueError(f"{self.root}: no usable clips ({self.report.summary()})")
        for step in range(len(self.clips)):
            position = (index + step) % len(self.clips)
            if position in self._bad:
                continue
            known = len(self.report)
            sample = self._decode(self.clips[position])
            for problem in self.report.problems[known:]:
                warnings.warn(f"{self.root}: {problem.where}: {problem.reason}; skipped", RuntimeWarning, stacklevel=2)
            if sample is not None:
                return sample
            self._bad.add(position)
        raise ValueError(f"{self.root}: no clip could be decoded:\n{self.report.summary()}")

    def _decode(self, clip: FolderClip) -> Sample | None:
        try:
            snippets = decode_snippets(clip.path, self.spec, clip.start, clip.end)
        except SourceError as error:
            return self._problem(str(clip.path), f"cannot decode ({error})")
        if not snippets:
            return self._problem(str(clip.path), "holds no whole snippet")
        count = len(snippets)
        questions = []
        for text, answer, t_ask, kind, where in clip.questions:
            ask = count if t_ask is None else math.floor((t_ask - clip.start) / self.spec.snippet_seconds + 1e-6)
            if ask > count:
                self._problem(where, f"ask time {t_ask:g} s is past the decoded end ({count} snippets)")
                continue
            questions.append(SampleQuestion(text, answer, max(1, ask), kind))
        if not questions:
            return self._problem(clip.name, "no question left to ask")
        return {
            "video": np.stack([s.video for s in snippets]),
            "audio": np.stack([s.audio for s in snippets]),
            "questions": questions,
            "name": clip.name,
        }


def decode_snippets(path: Path, spec: MediaSpec, start: float = 0.0, end: float | None = None) -> list:
    """Whole snippets of [start, end) of a media file, through `File` and `Chunker`.

    A trailing part shorter than a snippet (less one frame of slack) is left out.
    """
    media_end = -math.inf

    def before_end(items):
        nonlocal media_end
        for item in items:
            if end is not None and item.t >= end:
                continue
            if isinstance(item, VideoFrame):
                media_end = max(media_end, item.t + 1 / spec.fps)
            else:
                media_end = max(media_end, item.t + len(item.pcm) / item.rate)
            yield item

    with File(path, start=start) as source:
        snippets = list(Chunker(spec, t0=start).snippets(before_end(source)))
    if end is not None:
        media_end = min(media_end, end)
    return [s for s in snippets if s.t1 <= media_end + 1 / spec.fps + 1e-6]


# --------------------------------------------------------------------------- batches


def collate(samples: list[Sample]) -> dict[str, Any]:
    """Pad clips to the longest: video [B, T, F, H, W, 3] uint8, audio [B, T, S] float32,
    snippet_mask [B, T] bool (True for real snippets), questions (per-clip lists), names."""
    if not samples:
        raise ValueError("cannot collate an empty batch")
    longest = max(len(s["video"]) for s in samples)
    first_video, first_audio = samples[0]["video"], samples[0]["audio"]
    video = torch.zeros((len(samples), longest, *first_video.shape[1:]), dtype=torch.uint8)
    audio = torch.zeros((len(samples), longest, *first_audio.shape[1:]), dtype=torch.float32)
    mask = torch.zeros((len(samples), longest), dtype=torch.bool)
    for i, sample in enumerate(samples):
        n = len(sample["video"])
        if sample["video"].shape[1:] != first_video.shape[1:] or sample["audio"].shape[1:] != first_audio.shape[1:]:
            raise ValueError(f"{sample.get('name', i)}: snippet shape differs from the rest of the batch; "
                             "all samples must come from the same media spec")
        video[i, :n] = torch.from_numpy(np.ascontiguousarray(sample["video"]))
        audio[i, :n] = torch.from_numpy(np.ascontiguousarray(sample["audio"]))
        mask[i, :n] = True
    return {
        "video": video,
        "audio": audio,
        "snippet_mask": mask,
        "questions": [list(s["questions"]) for s in samples],
        "names": [s.get("name", "") for s in samples],
    }
