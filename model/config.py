"""Model configuration: dataclasses with named presets (`ModelConfig.from_name("tiny")`)."""

from __future__ import annotations

from dataclasses import dataclass

SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class MediaSpec:
    """What one snippet holds: the preset fixes frame size, frame rate and snippet length."""

    height: int
    width: int
    fps: float
    frames_per_chunk: int
    sample_rate: int = SAMPLE_RATE

    @property
    def chunk_seconds(self) -> float:
        return self.frames_per_chunk / self.fps

    @property
    def samples_per_chunk(self) -> int:
        samples = self.chunk_seconds * self.sample_rate
        if abs(samples - round(samples)) > 1e-6:
            raise ValueError(
                f"a snippet of {self.chunk_seconds} s is not a whole number of samples at "
                f"{self.sample_rate} Hz; choose fps and frames_per_chunk that divide evenly"
            )
        return round(samples)


MEDIA_PRESETS: dict[str, MediaSpec] = {
    "tiny": MediaSpec(height=64, width=64, fps=12.5, frames_per_chunk=8),
    "base": MediaSpec(height=224, width=224, fps=25.0, frames_per_chunk=16),
    "paper": MediaSpec(height=448, width=448, fps=25.0, frames_per_chunk=8),
}
