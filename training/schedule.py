"""The schedule of a run, as functions of the step: learning rate and clip-length curriculum.

Functions of (step, config) only, so a resumed run follows exactly the same schedule.
"""

from __future__ import annotations

import math

import numpy as np

from training.config import TrainConfig


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    """Linear warm-up to `lr`, then cosine decay to `lr · min_lr_ratio` at `total`."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = min(1.0, (step - cfg.warmup) / max(1, total - cfg.warmup))
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + (cfg.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def clip_lengths_at(step: int, cfg: TrainConfig) -> tuple[int, int]:
    """The range of clip lengths at `step`: the longest grows linearly over `curriculum` steps;
    with `one_length_a_step`, one length drawn for the whole step (the same on every rank)."""
    low, high = cfg.snippets
    if 0 < cfg.curriculum and step < cfg.curriculum:
        high = low + round((high - low) * step / cfg.curriculum)
    if cfg.one_length_a_step:
        length = int(np.random.default_rng([cfg.seed, step, 0x1E9]).integers(low, high + 1))
        return length, length
    return low, high
