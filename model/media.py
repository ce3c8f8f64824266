"""The media contract: what one snippet holds (`MediaSpec`) and the values that carry
media from a source through the chunker to the model (`VideoFrame`, `AudioBlock`, `Snippet`).

It lives at the model layer, the lowest one that needs it: a model's config fixes the
snippet it was trained on, and the runtime (sources, chunker, engine) cuts media to that
shape. Only numpy is needed here, so nothing above depends on more of the model than this.
`streamer.media` offers the same names to users of the runtime.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class MediaSpec:
    """What one snippet holds: the preset fixes frame size, frame rate and snippet length."""

    height: int
    width: int
    fps: float
    frames_per_snippet: int
    sample_rate: int = SAMPLE_RATE

    @property
    def snippet_seconds(self) -> float:
        return self.frames_per_snippet / self.fps

    @property
    def samples_per_snippet(self) -> int:
        samples = self.snippet_seconds * self.sample_rate
        if abs(samples - round(samples)) > 1e-6:
            raise ValueError(
                f"a snippet of {self.snippet_seconds} s is not a whole number of samples at "
                f"{self.sample_rate} Hz; choose fps and frames_per_snippet that divide evenly"
            )
        return round(samples)


MEDIA_PRESETS: dict[str, MediaSpec] = {
    "tiny": MediaSpec(height=64, width=64, fps=12.5, frames_per_snippet=8),
    "base": MediaSpec(height=224, width=224, fps=25.0, frames_per_snippet=16),
    "paper": MediaSpec(height=448, width=448, fps=25.0, frames_per_snippet=8),
}


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
