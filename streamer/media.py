"""The data types that cross the source → chunker → engine seams (DESIGN.md, "Seams")."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class VideoFrame:
    """One decoded picture: RGB uint8 [H, W, 3] at `t` seconds on the source's clock."""

    t: float
    rgb: np.ndarray


@dataclass(frozen=True)
class AudioBlock:
    """A block of PCM starting at `t` seconds on the source's clock.

    `pcm` is float32 in [-1, 1] or int16, laid out [samples, channels] (packed); the
    chunker also accepts planar [channels, samples] and 1-D interleaved data.
    """

    t: float
    pcm: np.ndarray
    rate: int
    channels: int


MediaItem = VideoFrame | AudioBlock


@dataclass
class Snippet:
    """Time-aligned video and audio covering exactly [t0, t1) of the stream.

    video: uint8 [F, H, W, 3]; audio: float32 [S] mono at 16 kHz. `*_filled` is True when
    the chunker synthesised part of that modality (repeated frames, silence).
    """

    index: int
    t0: float
    t1: float
    video: np.ndarray
    audio: np.ndarray
    video_filled: bool = False
    audio_filled: bool = False
