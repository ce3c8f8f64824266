"""What happens in a clip: shapes that move across the canvas and sounds that play.

The timeline is the single source of truth. Frames and audio are rendered from it, and
every answer is computed from it, so a hand-built timeline is enough to test a question.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from training.world.vocab import COLORS, DIRECTIONS, SHAPES, SOUND_SECONDS

# Time comparisons tolerate float error from fps arithmetic (12.5 fps: 0.08 s per frame).
EPS = 1e-9

_VELOCITY = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0), "still": (0.0, 0.0)}


@dataclass(frozen=True)
class ShapeEvent:
    """One shape from `t_start` until `t_end`; (x, y) is its bounding-box centre at `t_start`.

    Pixel coordinates: x to the right, y downwards, the canvas spans [0, width) x [0, height).
    """

    shape: str
    color: str
    rgb: tuple[int, int, int]
    size: float
    x: float
    y: float
    direction: str
    speed: float
    t_start: float
    t_end: float

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"unknown shape {self.shape!r}; choose one of {SHAPES}")
        if self.color not in COLORS:
            raise ValueError(f"unknown colour {self.color!r}; choose one of {tuple(COLORS)}")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"unknown direction {self.direction!r}; choose one of {DIRECTIONS}")
        if not self.t_end > self.t_start:
            raise ValueError(f"shape ends at {self.t_end} s, not after it starts at {self.t_start} s")

    @property
    def name(self) -> str:
        """How questions and answers refer to this shape: "red circle"."""
        return f"{self.color} {self.shape}"

    def centre(self, t: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Bounding-box centre at time(s) t (the shape keeps moving past the canvas edge)."""
        vx, vy = _VELOCITY[self.direction]
        dt = np.asarray(t, dtype=np.float64) - self.t_start
        return self.x + vx * self.speed * dt, self.y + vy * self.speed * dt

    def active(self, t: float) -> bool:
        return self.t_start - EPS <= t < self.t_end - EPS

    def visible_fraction(self, t: float, width: int, height: int) -> float:
        """Share of the bounding box that lies on the canvas at time t (0 when inactive)."""
        if not self.active(t):
            return 0.0
        cx, cy = self.centre(t)
        half = self.size / 2
        overlap_x = max(0.0, min(float(cx) + half, width) - max(float(cx) - half, 0.0))
        overlap_y = max(0.0, min(float(cy) + half, height) - max(float(cy) - half, 0.0))
        return overlap_x * overlap_y / (self.size * self.size)

    def exit_time(self, width: int, height: int) -> float:
        """When the bounding box has fully left the canvas (inf for a still shape)."""
        half = self.size / 2
        distance = {
            "left": self.x + half,
            "right": width + half - self.x,
            "up": self.y + half,
            "down": height + half - self.y,
        }.get(self.direction)
        if distance is None or self.speed <= 0:
            return math.inf
        return self.t_start + distance / self.speed


@dataclass(frozen=True)
class SoundEvent:
    """One play of a sound from `t_start`; `owner` is the index of the shape that made it."""

    sound: str
    t_start: float
    peak: float = 0.3
    owner: int | None = None

    def __post_init__(self) -> None:
        if self.sound not in SOUND_SECONDS:
            raise ValueError(f"unknown sound {self.sound!r}; choose one of {tuple(SOUND_SECONDS)}")

    @property
    def duration(self) -> float:
        return SOUND_SECONDS[self.sound]

    @property
    def t_end(self) -> float:
        return self.t_start + self.duration

    def overlap(self, t0: float, t1: float) -> float:
        """Seconds of this play inside [t0, t1)."""
        return max(0.0, min(self.t_end, t1) - max(self.t_start, t0))


@dataclass(frozen=True)
class Timeline:
    """Everything in one clip. `shapes` and `sounds` are sorted by start time."""

    width: int
    height: int
    duration: float
    shapes: tuple[ShapeEvent, ...] = ()
    sounds: tuple[SoundEvent, ...] = ()
    background: tuple[int, int, int] = (40, 40, 40)
    pixel_noise: float = 0.0
    noise_level: float = 0.0

    def __post_init__(self) -> None:
        if list(self.shapes) != sorted(self.shapes, key=lambda s: s.t_start):
            raise ValueError("timeline shapes must be sorted by t_start")
        if list(self.sounds) != sorted(self.sounds, key=lambda s: s.t_start):
            raise ValueError("timeline sounds must be sorted by t_start")
        for sound in self.sounds:
            if sound.owner is not None and not 0 <= sound.owner < len(self.shapes):
                raise ValueError(f"sound {sound.sound!r} names owner {sound.owner}, but the timeline has "
                                 f"{len(self.shapes)} shapes")


def frames_before(t: float, fps: float) -> int:
    """How many frames (shown at j / fps) come strictly before time t."""
    return max(0, math.ceil(t * fps - 1e-6))
