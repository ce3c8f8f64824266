"""What the first-sight head learns from: which named shapes and which sounds are present in
each snippet of a world clip.

"Which came first, the red circle or the drum?" compares the first appearance of a shape with
the first play of a sound. A decoder that looks for "red circle" finds every snippet the circle
was on screen and every play of the drum, and must then pick the oldest of each; in a long
stream that is where its answers fail (experiments/order_age.py). The head instead predicts,
per snippet, which shapes and sounds are there (an easy, dense target), and the decoder marks a
thing as first seen where the head finds it present and never before
(`TextDecoder.first_sight`). The truth is the alignment head's (training.world.phrases): a
shape partly off the canvas, a play that grazes a snippet, or a colour the palette has no word
for (off-palette clips) is unknown there, not absent.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import torch

from training.world.phrases import SnippetTruth
from training.world.vocab import COLORS, SHAPES, SOUNDS

# The head's classes: every shape name of the world ("red circle", ...), then every sound.
FIRST_SIGHT_CLASSES: tuple[str, ...] = (*(f"{c} {s}" for c in COLORS for s in SHAPES), *SOUNDS)
PRESENT, ABSENT, UNKNOWN = 1, 0, -1

# One pattern per class that finds its name as whole words ("red circle", not "red circles").
_CLASS_NAMES = tuple(re.compile(rf"\b{re.escape(name)}\b") for name in FIRST_SIGHT_CLASSES)


def presence_targets(truths: Sequence[SnippetTruth]) -> np.ndarray:
    """int8 [len(truths), len(FIRST_SIGHT_CLASSES)]: PRESENT, ABSENT or UNKNOWN per snippet and class."""
    targets = np.full((len(truths), len(FIRST_SIGHT_CLASSES)), ABSENT, dtype=np.int8)
    for k, truth in enumerate(truths):
        for j, name in enumerate(FIRST_SIGHT_CLASSES):
            if name in truth.true:
                targets[k, j] = PRESENT
            elif name in truth.unclear:
                targets[k, j] = UNKNOWN
    return targets


def names_in(texts: Sequence[str]) -> torch.Tensor:
    """bool [len(texts), len(FIRST_SIGHT_CLASSES)]: the classes each text names word for word
    (what a first-sight pointer learns to find in a question)."""
    return torch.tensor([[pattern.search(text.lower()) is not None for pattern in _CLASS_NAMES] for text in texts],
                        dtype=torch.bool).view(len(texts), len(FIRST_SIGHT_CLASSES))
