"""Numpy arrays as a source: recorded or rendered frames and PCM (a world clip is one)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from model.media import AudioBlock, MediaItem, VideoFrame
from streamer.sources.base import Source, paced


class Arrays(Source):
    """Frames and PCM from numpy arrays, stamped from t0.

    video: uint8 [N, H, W, 3] at `fps`; audio: [S] mono or [S, C] (float in [-1, 1] or
    int16) at `rate`, yielded in blocks of `block` samples, merged with the frames in time order.
    realtime: pace items to the wall clock like a live source (then `is_live` is True);
    `close()` ends the stream.
    """

    def __init__(
        self,
        video: np.ndarray | None = None,
        fps: float | None = None,
        audio: np.ndarray | None = None,
        rate: int | None = None,
        t0: float = 0.0,
        block: int = 1024,
        realtime: bool = False,
    ) -> None:
        if video is None and audio is None:
            raise ValueError("Arrays needs video, audio or both")
        if video is not None:
            video = np.asarray(video)
            if video.dtype != np.uint8 or video.ndim != 4 or video.shape[3] != 3:
                raise ValueError(f"video must be uint8 [N, H, W, 3], got {video.dtype} {video.shape}")
            if not fps or fps <= 0:
                raise ValueError("video needs fps > 0")
        if audio is not None:
            audio = np.asarray(audio)
            if audio.ndim == 1:
                audio = audio[:, None]
            if audio.ndim != 2:
                raise ValueError(f"audio must be [S] or [S, C], got shape {audio.shape}")
            if not rate or rate <= 0:
                raise ValueError("audio needs rate > 0")
        if block < 1:
            raise ValueError("block must be at least 1 sample")
        self.video, self.fps, self.audio, self.rate, self.t0, self.block = video, fps, audio, rate, float(t0), block
        self.tracks = frozenset(kind for kind, data in (("video", video), ("audio", audio)) if data is not None)
        self.realtime = self.is_live = realtime
        self._closed = False

    def __iter__(self) -> Iterator[MediaItem]:
        frames = [] if self.video is None else [
            VideoFrame(t=self.t0 + i / self.fps, rgb=frame) for i, frame in enumerate(self.video)
        ]
        blocks = [] if self.audio is None else [
            AudioBlock(t=self.t0 + s / self.rate, pcm=self.audio[s : s + self.block], rate=int(self.rate),
                       channels=self.audio.shape[1])
            for s in range(0, len(self.audio), self.block)
        ]
        items = sorted([*frames, *blocks], key=lambda item: item.t)
        for item in paced(items) if self.realtime else items:
            if self._closed:
                return
            yield item

    def close(self) -> None:
        self._closed = True
