"""The world as a live source: a clip's frames and audio blocks, like a camera and a mic."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np

from model.media import AudioBlock, MediaItem, VideoFrame
from streamer.sources import Source
from training.world.clip import SPLITS, Clip, World, WorldConfig


class WorldSource(Source):
    """Streams a world clip as `VideoFrame`s and `AudioBlock`s in time order.

    seed: which clip of `config`'s split (its index, so the test split never repeats a
    training clip). realtime: pace items to the wall clock (then `is_live` is True).
    block: audio samples per block. `clip` stays available so a demo can check answers.
    """

    def __init__(
        self,
        seed: int = 0,
        config: WorldConfig = SPLITS["test"],
        realtime: bool = False,
        block: int = 1024,
        clip: Clip | None = None,
    ) -> None:
        if block < 1:
            raise ValueError("block must be at least 1 sample")
        self.clip = clip if clip is not None else World(config).clip(seed)
        self.realtime = realtime
        self.block = block
        self._closed = False

    @property
    def is_live(self) -> bool:
        return self.realtime

    def __iter__(self) -> Iterator[MediaItem]:
        clip, spec = self.clip, self.clip.spec
        frame_times = np.arange(len(clip.frames)) / spec.fps
        block_starts = range(0, len(clip.audio), self.block)
        items: list[tuple[float, int, MediaItem]] = []
        for j, t in enumerate(frame_times):
            items.append((float(t), 0, VideoFrame(t=float(t), rgb=clip.frames[j])))
        for start in block_starts:
            t = start / spec.sample_rate
            pcm = clip.audio[start : start + self.block, None]
            items.append((t, 1, AudioBlock(t=t, pcm=pcm, rate=spec.sample_rate, channels=1)))
        items.sort(key=lambda entry: (entry[0], entry[1]))
        wall0 = time.monotonic()
        for t, _, item in items:
            if self._closed:
                return
            if self.realtime:
                delay = wall0 + t - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            yield item

    def close(self) -> None:
        self._closed = True
