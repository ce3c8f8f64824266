"""Write world clips as real media files (mp4: H.264 + AAC, webm: VP8 + Opus) and datasets.

A dataset is a folder of clip files plus `annotations.jsonl`, one line per question:
{"video": "clips/000000.mp4", "question": ..., "answer": ..., "t_ask": 1.92, "kind": ...}.
`training.data.FolderDataset` reads it back, and a user's own data uses the same format.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from tqdm import tqdm

from training.world.clip import World, WorldConfig

ANNOTATIONS = "annotations.jsonl"


@dataclass(frozen=True)
class Container:
    """Codecs and encoder options for one file format."""

    video_codec: str
    audio_codec: str
    video_options: dict[str, str]


FORMATS: dict[str, Container] = {
    # crf 12: small shapes at 64x64 keep their colours through 4:2:0 compression
    "mp4": Container("libx264", "aac", {"crf": "12", "preset": "veryfast"}),
    "webm": Container("libvpx", "libopus", {"crf": "4", "b": "2M", "deadline": "realtime", "cpu-used": "8"}),
}


def write_clip(clip, path: str | Path) -> Path:
    """Encode `clip` to `path`; the suffix (.mp4 or .webm) picks the codecs."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise ValueError(f"cannot write {path.name}: use a .mp4 or .webm file name")
    codecs = FORMATS[fmt]
    spec = clip.spec
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        video = container.add_stream(codecs.video_codec, rate=Fraction(spec.fps).limit_denominator(1000))
        video.width, video.height, video.pix_fmt = spec.width, spec.height, "yuv420p"
        video.options = dict(codecs.video_options)
        audio = container.add_stream(codecs.audio_codec, rate=spec.sample_rate, layout="mono")
        for j, rgb in enumerate(clip.frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts = j
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        block = 1024
        for start in range(0, len(clip.audio), block):
            pcm = clip.audio[None, start : start + block]
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm), format="flt", layout="mono")
            frame.sample_rate, frame.pts = spec.sample_rate, start
            container.mux(audio.encode(frame))
        container.mux(audio.encode(None))
    return path


def write_dataset(
    out: str | Path, config: WorldConfig, clips: int, first: int = 0, fmt: str = "mp4", progress: bool = True
) -> Path:
    """Render clips `first .. first + clips - 1` of the split to `out`; returns the annotations path."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown media format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if clips < 1:
        raise ValueError("write at least one clip (--clips 1 or more)")
    out = Path(out)
    world = World(config)
    world.seed(first + clips - 1)  # fail before writing anything if the range leaves the split
    (out / "clips").mkdir(parents=True, exist_ok=True)
    annotations = out / ANNOTATIONS
    with annotations.open("w", encoding="utf-8") as lines:
        for index in tqdm(range(first, first + clips), desc=f"world {config.split}", unit="clip", disable=not progress):
            clip = world.clip(index)
            name = f"clips/{config.split}-{index:07d}.{fmt}"
            write_clip(clip, out / name)
            for q in clip.questions:
                record = {"video": name, "question": q.text, "answer": q.answer, "t_ask": round(q.t_ask, 6),
                          "kind": q.kind, "seed": clip.seed}
                lines.write(json.dumps(record) + "\n")
    return annotations
