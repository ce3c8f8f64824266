"""The schedule of a run, as functions of the step: learning rate and clip-length curriculum.

Functions of (step, config) only, so a resumed run follows exactly the same schedule.
"""

from __future__ import annotations

import math

from training.config import TrainConfig


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    """Linear warm-up to `lr`, then cosine decay to `lr · min_lr_ratio` at `total`."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = min(1.0, (step - cfg.warmup) / max(1, total - cfg.warmup))
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + (cfg.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def clip_lengths_at(step: int, cfg: TrainConfig) -> tuple[int, int]:
    """Curriculum over clip length: the longest clip grows linearly over `curriculum` steps."""
    low, high = cfg.snippets
    if cfg.curriculum <= 0 or step >= cfg.curriculum:
        return low, high
    return low, low + round((high - low) * step / cfg.curriculum)
