"""Render a timeline to pixels and samples, vectorised over frames with numpy."""

from __future__ import annotations

import functools

import numpy as np

from model.media import MediaSpec
from training.world.timeline import ShapeEvent, Timeline, frames_before
from training.world.vocab import SOUND_SECONDS


def shape_mask(shape: str, dx: np.ndarray, dy: np.ndarray, half: float) -> np.ndarray:
    """Pixels inside a filled `shape` whose bounding box has half-side `half`;
    dx, dy are pixel-centre offsets from the box centre (y downwards)."""
    ax, ay = np.abs(dx), np.abs(dy)
    if shape == "circle":
        return dx * dx + dy * dy <= half * half
    if shape == "square":
        return (ax <= half) & (ay <= half)
    if shape == "triangle":  # apex at the top, base at the bottom
        return (ay <= half) & (ax <= (dy + half) / 2)
    if shape == "cross":
        arm = half / 3
        return ((ax <= arm) & (ay <= half)) | ((ay <= arm) & (ax <= half))
    raise ValueError(f"cannot draw unknown shape {shape!r}")


def render_frames(timeline: Timeline, spec: MediaSpec, n_frames: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 [n_frames, H, W, 3]; frame j shows the world at j / fps. Later shapes are drawn on top."""
    height, width = timeline.height, timeline.width
    image = np.empty((n_frames, height, width, 3), dtype=np.int16)
    image[...] = np.asarray(timeline.background, dtype=np.int16)
    xs = np.arange(width, dtype=np.float32) + 0.5
    ys = np.arange(height, dtype=np.float32) + 0.5
    for shape in timeline.shapes:
        first, last = _frame_range(shape, spec.fps, n_frames)
        if first >= last:
            continue
        cx, cy = shape.centre(np.arange(first, last) / spec.fps)
        dx = xs[None, None, :] - cx.astype(np.float32)[:, None, None]
        dy = ys[None, :, None] - cy.astype(np.float32)[:, None, None]
        mask = shape_mask(shape.shape, dx, dy, shape.size / 2)
        image[first:last][mask] = np.asarray(shape.rgb, dtype=np.int16)
    _add_pixel_noise(image, timeline.pixel_noise, rng)
    np.clip(image, 0, 255, out=image)
    return image.astype(np.uint8)


NOISE_BANK_SIZE = 1 << 22
NOISE_BANK_SCALE = 16  # the bank holds round(16 * N(0, 1)) as int8


@functools.cache
def _noise_bank() -> np.ndarray:
    """A fixed table of Gaussian noise, drawn once per process.

    Drawing fresh Gaussian noise for every pixel was most of a clip's rendering time; a
    window of this table at a random offset is as good for a model and ~20x faster.
    """
    noise = np.random.default_rng(0x5EED).standard_normal(NOISE_BANK_SIZE) * NOISE_BANK_SCALE
    return np.clip(np.rint(noise), -127, 127).astype(np.int8)


def _add_pixel_noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> None:
    """Add rounded N(0, sigma) noise to an int16 image in place (sigma in steps of 1/16)."""
    weight = round(sigma * NOISE_BANK_SCALE)
    if weight == 0:
        return
    bank = _noise_bank()
    flat = image.reshape(-1)
    piece = len(bank) // 2  # long clips take several windows, each at its own offset
    for start in range(0, flat.size, piece):
        size = min(piece, flat.size - start)
        offset = int(rng.integers(0, len(bank) - size + 1))
        noise = bank[offset : offset + size].astype(np.int16)
        noise *= weight
        noise += NOISE_BANK_SCALE * NOISE_BANK_SCALE // 2
        noise >>= 8  # divide by 16 * 16, rounding to nearest
        flat[start : start + size] += noise


def _frame_range(shape: ShapeEvent, fps: float, n_frames: int) -> tuple[int, int]:
    """Frames j with t_start <= j / fps < t_end."""
    return min(n_frames, frames_before(shape.t_start, fps)), min(n_frames, frames_before(shape.t_end, fps))


def synthesize(sound: str, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """One play of `sound`, float32 with peak 1 (training/world/README.md, "Sound": each recipe)."""
    n = round(SOUND_SECONDS[sound] * sample_rate)
    t = np.arange(n, dtype=np.float64) / sample_rate
    if sound == "beep":
        wave = np.sin(2 * np.pi * 880.0 * t)
        ramp = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.010)
        wave *= ramp
    elif sound == "buzz":
        wave = np.where(np.sin(2 * np.pi * 220.0 * t) >= 0, 1.0, -1.0)
    elif sound == "chirp":
        rate = (1500.0 - 300.0) / SOUND_SECONDS["chirp"]
        wave = np.sin(2 * np.pi * (300.0 * t + rate * t * t / 2))
    elif sound == "drum":
        wave = rng.standard_normal(n) * np.exp(-t / 0.040)
    elif sound == "whistle":
        vibrato = 6.0
        wave = np.sin(2 * np.pi * 2000.0 * t - (50.0 / vibrato) * np.cos(2 * np.pi * vibrato * t))
    else:
        raise ValueError(f"cannot synthesise unknown sound {sound!r}")
    return (wave / np.max(np.abs(wave))).astype(np.float32)


def render_audio(timeline: Timeline, spec: MediaSpec, n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """float32 [n_samples] mono at spec.sample_rate: background noise plus every play."""
    audio = rng.standard_normal(n_samples, dtype=np.float32) * np.float32(timeline.noise_level)
    for play in timeline.sounds:
        start = round(play.t_start * spec.sample_rate)
        if start >= n_samples:
            continue
        wave = synthesize(play.sound, spec.sample_rate, rng)[: n_samples - start]
        audio[start : start + len(wave)] += np.float32(play.peak) * wave
    return np.clip(audio, -1.0, 1.0)
