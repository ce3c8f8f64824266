"""Draw a random timeline for one clip, following the rules in training/world/README.md.

Beyond those rules, the generator keeps every question answerable by someone who watched
and listened: each shape appears at least 0.7 s after the previous one and nothing else
sounds in the 0.6 s after an appearance except that shape's own first play (so a sound
can be bound to its shape), a sound kind belongs to at most one shape per clip, and a
sound with no owner plays only while the screen is empty.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from model.media import MediaSpec
from training.world.timeline import ShapeEvent, SoundEvent, Timeline
from training.world.vocab import (
    COLORS,
    DIRECTIONS,
    HELD_OUT_COLOR_SHAPE,
    HELD_OUT_SHAPE_SOUND,
    SHAPES,
    SOUND_SECONDS,
    SOUNDS,
)

HeldOut = Literal["exclude", "require", "allow"]

APPEARANCE_GAP = 0.7  # seconds between two shapes appearing
BINDING_WINDOW = 0.6  # after an appearance, only that shape's first play may sound
SOUND_GAP = 0.1  # silence between two plays
MAX_PLAYS_PER_KIND = 8  # the world counts up to "eight"
# Seconds from one appearance to the next: mostly soon (two shapes together), sometimes a
# long pause (an empty screen, room for sounds with no shape).
GAPS = ((APPEARANCE_GAP, 1.4), (1.4, 3.0), (3.0, 5.0))
GAP_WEIGHTS = (0.7, 0.15, 0.15)


def generate_timeline(
    rng: np.random.Generator, spec: MediaSpec, n_snippets: int, held_out: HeldOut = "exclude"
) -> Timeline:
    """A random timeline of `n_snippets` snippets; `held_out` says what to do with the
    compositional pairs: never show them, make every clip show one, or ignore them."""
    if held_out not in ("exclude", "require", "allow"):
        raise ValueError(f"held_out must be 'exclude', 'require' or 'allow', not {held_out!r}")
    duration = n_snippets * spec.snippet_seconds
    palette = {
        name: tuple(int(v) for v in np.clip(np.array(rgb) + rng.integers(-15, 16, 3), 0, 255))
        for name, rgb in COLORS.items()
    }
    shapes, owned = _place_shapes(rng, spec, duration, palette, held_out)
    sounds = _schedule_sounds(rng, shapes, owned, duration)
    return Timeline(
        width=spec.width,
        height=spec.height,
        duration=duration,
        shapes=tuple(shapes),
        sounds=tuple(sorted(sounds, key=lambda s: s.t_start)),
        background=tuple(int(v) for v in rng.integers(20, 61, 3)),
        pixel_noise=float(rng.uniform(0.0, 4.0)),
        noise_level=float(10 ** (rng.uniform(-40.0, -30.0) / 20)),
    )


def _place_shapes(
    rng: np.random.Generator,
    spec: MediaSpec,
    duration: float,
    palette: dict[str, tuple[int, int, int]],
    held_out: HeldOut,
) -> tuple[list[ShapeEvent], list[str | None]]:
    """Shapes in order of appearance, at most two at once, and the sound each one owns."""
    shapes: list[ShapeEvent] = []
    owned: list[str | None] = []
    # A "require" clip makes its first shape show a held-out colour-shape or shape-sound pair.
    required = rng.choice(["color_shape", "shape_sound"]) if held_out == "require" else None
    t = 0.0 if rng.random() < 0.6 else float(rng.uniform(0.3, 1.5))
    while t < duration - 0.5:
        active = [s for s in shapes if s.active(t)]
        if len(active) >= 2:
            t = max(min(s.t_end for s in active) + float(rng.uniform(0.05, 0.5)), shapes[-1].t_start + APPEARANCE_GAP)
            continue
        first = not shapes
        pair = _pick_pair(rng, shapes, held_out, required if first else None)
        if pair is None:
            break  # every allowed (colour, shape) pair has been used in this clip
        color, shape = pair
        shapes.append(_new_shape(rng, spec, t, duration, color, shape, palette[color], active))
        owned.append(_pick_sound(rng, shape, owned, held_out, required if first else None))
        t += float(rng.uniform(*GAPS[rng.choice(len(GAPS), p=GAP_WEIGHTS)]))
    return shapes, owned


def _pick_pair(
    rng: np.random.Generator, shapes: list[ShapeEvent], held_out: HeldOut, required: str | None
) -> tuple[str, str] | None:
    used = {(s.color, s.shape) for s in shapes}
    pairs = [(c, s) for c in COLORS for s in SHAPES if (c, s) not in used]
    if required == "color_shape":
        pairs = [p for p in pairs if p in HELD_OUT_COLOR_SHAPE]
    elif required == "shape_sound":
        pairs = [p for p in pairs if p[1] in {shape for shape, _ in HELD_OUT_SHAPE_SOUND}]
    elif held_out == "exclude":
        pairs = [p for p in pairs if p not in HELD_OUT_COLOR_SHAPE]
    return pairs[rng.integers(len(pairs))] if pairs else None


def _pick_sound(
    rng: np.random.Generator, shape: str, owned: list[str | None], held_out: HeldOut, required: str | None
) -> str | None:
    free = [k for k in SOUNDS if k not in owned]
    if required == "shape_sound":
        return next(k for k in SOUNDS if (shape, k) in HELD_OUT_SHAPE_SOUND)
    if held_out == "exclude":
        free = [k for k in free if (shape, k) not in HELD_OUT_SHAPE_SOUND]
    if not free or rng.random() >= 0.7:
        return None
    return free[rng.integers(len(free))]


def _new_shape(
    rng: np.random.Generator,
    spec: MediaSpec,
    t: float,
    duration: float,
    color: str,
    shape: str,
    rgb: tuple[int, int, int],
    active: list[ShapeEvent],
) -> ShapeEvent:
    width, height = spec.width, spec.height
    size = float(rng.uniform(0.30, 0.45) * min(width, height))
    direction = DIRECTIONS[rng.integers(len(DIRECTIONS))]
    speed = 0.0 if direction == "still" else float(rng.uniform(0.25, 0.6) * width)
    half = size / 2
    # Start fully on the canvas, as far from the shapes already there as a few tries allow;
    # a moving shape starts in the part of the canvas it moves away from, so it stays a while.
    low, high = np.array([half, half]), np.array([width - half, height - half])
    axis = 0 if direction in ("left", "right") else 1
    if direction in ("right", "down"):
        high[axis] = low[axis] + 0.5 * (high[axis] - low[axis])
    elif direction in ("left", "up"):
        low[axis] = high[axis] - 0.5 * (high[axis] - low[axis])
    candidates = rng.uniform(low, high, size=(8, 2))
    overlaps = [sum(_box_overlap(x, y, size, other, t) for other in active) for x, y in candidates]
    x, y = candidates[int(np.argmin(overlaps))]
    lifetime = float(rng.uniform(2.0, 6.0))
    placed = ShapeEvent(shape, color, rgb, size, float(x), float(y), direction, speed, t, t + lifetime)
    t_end = min(t + lifetime, placed.exit_time(width, height), duration)
    return ShapeEvent(shape, color, rgb, size, float(x), float(y), direction, speed, t, t_end)


def _box_overlap(x: float, y: float, size: float, other: ShapeEvent, t: float) -> float:
    ox, oy = (float(v) for v in other.centre(t))
    reach = (size + other.size) / 2
    return max(0.0, reach - abs(x - ox)) * max(0.0, reach - abs(y - oy))


def _schedule_sounds(
    rng: np.random.Generator, shapes: list[ShapeEvent], owned: list[str | None], duration: float
) -> list[SoundEvent]:
    plays: list[SoundEvent] = []
    windows = [(s.t_start, s.t_start + BINDING_WINDOW) for s in shapes]

    def fits(start: float, kind: str, own_window: int | None = None) -> bool:
        end = start + SOUND_SECONDS[kind]
        if start < 0 or end > duration:
            return False
        if any(p.t_start < end + SOUND_GAP and start < p.t_end + SOUND_GAP for p in plays):
            return False
        return not any(w0 < end and start < w1 for i, (w0, w1) in enumerate(windows) if i != own_window)

    def peak() -> float:
        return float(10 ** (rng.uniform(-12.0, -3.0) / 20))

    # First plays: within 0.3 s of the owner's appearance, while it is still there.
    first_end: dict[int, float] = {}
    for i, (shape, kind) in enumerate(zip(shapes, owned)):
        if kind is None:
            continue
        for _ in range(6):
            start = shape.t_start + float(rng.uniform(0.0, 0.3))
            if start + SOUND_SECONDS[kind] <= shape.t_end and fits(start, kind, own_window=i):
                plays.append(SoundEvent(kind, start, peak(), owner=i))
                first_end[i] = start + SOUND_SECONDS[kind]
                break
    # Repeats: 0-3 more plays while the owner is on screen.
    for i, end_of_first in first_end.items():
        kind, shape = owned[i], shapes[i]
        latest = shape.t_end - SOUND_SECONDS[kind]
        for _ in range(int(rng.integers(0, 4))):
            for _ in range(6):
                if latest <= end_of_first + SOUND_GAP:
                    break
                start = float(rng.uniform(end_of_first + SOUND_GAP, latest))
                if fits(start, kind):
                    plays.append(SoundEvent(kind, start, peak(), owner=i))
                    break
    # Sounds with no owner: kinds no shape owns, only while the screen is empty.
    unowned = [k for k in SOUNDS if k not in owned]
    for _ in range(int(rng.poisson(duration / 4.0)) if unowned else 0):
        kind = unowned[rng.integers(len(unowned))]
        start = float(rng.uniform(0.0, max(0.0, duration - SOUND_SECONDS[kind])))
        end = start + SOUND_SECONDS[kind]
        screen_empty = not any(s.t_start < end and start < s.t_end for s in shapes)
        count = sum(1 for p in plays if p.sound == kind)
        if screen_empty and count < MAX_PLAYS_PER_KIND and fits(start, kind):
            plays.append(SoundEvent(kind, start, peak(), owner=None))
    return plays
