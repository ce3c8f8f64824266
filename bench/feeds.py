"""Media the benchmarks feed the engine: a camera-like encoded file, world clips looped for
hours without holding hours of media, and a cut-off for a source that runs longer than needed."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import av
import numpy as np

from model.media import AudioBlock, MediaItem, VideoFrame
from streamer.sources import File
from streamer.sources.base import paced
from training.world.clip import Clip


def write_camera_file(path: Path, clip: Clip, seconds: float, size: tuple[int, int] = (320, 240)) -> Path:
    """What a camera records: the clip looped and scaled up to `size`, H.264 at 25 fps + AAC 48 kHz,
    so decoding, resizing and resampling cost what they cost on real input."""
    width, height = size
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio = out.add_stream("aac", rate=48000, layout="mono")
        for i in range(round(seconds * 25)):
            source = clip.frames[int(i / 25 * clip.spec.fps) % len(clip.frames)]
            rgb = np.repeat(np.repeat(source, height // source.shape[0] + 1, 0), width // source.shape[1] + 1, 1)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[:height, :width]), format="rgb24")
            frame.pts = i
            out.mux(video.encode(frame))
        pcm48 = np.repeat(clip.audio, 3)  # 16 -> 48 kHz by repetition: the content does not matter here
        total = round(seconds * 48000)
        for start in range(0, total, 1024):
            block = pcm48[np.arange(start, min(start + 1024, total)) % len(pcm48)]
            frame = av.AudioFrame.from_ndarray(block[None].astype(np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 48000, start
            out.mux(audio.encode(frame))
        out.mux(video.encode())
        out.mux(audio.encode())
    return path


def decoded_items(path: Path, seconds: float) -> list[MediaItem]:
    """The file's first `seconds`, decoded once (what the chunker receives from `File`)."""
    with File(path) as source:
        return [item for item in source if item.t < seconds]


class LoopedClip:
    """A world clip repeated for `seconds` of stream time, generated as it is read (constant
    memory, so hours of stream cost nothing to hold). `realtime` paces it like a camera."""

    def __init__(self, clip: Clip, seconds: float, *, realtime: bool = False, block: int = 1600) -> None:
        self.clip, self.seconds, self.block = clip, seconds, block
        self.is_live = realtime

    def __iter__(self) -> Iterator[MediaItem]:
        return paced(self._items()) if self.is_live else self._items()

    def _items(self) -> Iterator[MediaItem]:
        clip, fps, rate = self.clip, self.clip.spec.fps, self.clip.spec.sample_rate
        n_frames, n_samples = round(self.seconds * fps), round(self.seconds * rate)
        next_sample = 0
        for j in range(n_frames):
            while next_sample < n_samples and next_sample <= j * rate / fps:
                idx = np.arange(next_sample, next_sample + self.block) % len(clip.audio)
                yield AudioBlock(next_sample / rate, clip.audio[idx, None], rate, 1)
                next_sample += self.block
            yield VideoFrame(j / fps, clip.frames[j % len(clip.frames)])


class FirstSeconds:
    """The first `seconds` of a source (a longer file shared by benchmarks that need less of it)."""

    def __init__(self, source: Iterable[MediaItem], seconds: float) -> None:
        self.source, self.seconds = source, seconds
        self.is_live = getattr(source, "is_live", False)

    def __iter__(self) -> Iterator[MediaItem]:
        for item in self.source:
            if item.t >= self.seconds:
                return
            yield item

    def close(self) -> None:
        close = getattr(self.source, "close", None)
        if callable(close):
            close()
