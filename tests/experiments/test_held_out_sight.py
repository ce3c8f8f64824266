"""experiments.held_out_sight: the probes score a colour-shape pair from its parts, on one token
or each at its best, and the detection shares count held-out and trained pairs apart."""

from __future__ import annotations

import torch

from experiments.held_out_sight import SHAPE_CLASSES, detection, probe_logits
from training.world.first_sight import ABSENT, FIRST_SIGHT_CLASSES, PRESENT, UNKNOWN
from training.world.vocab import COLORS, SHAPES

RED_CIRCLE, BLUE_SQUARE = FIRST_SIGHT_CLASSES.index("red circle"), FIRST_SIGHT_CLASSES.index("blue square")
RED_SQUARE = FIRST_SIGHT_CLASSES.index("red square")


def _scores() -> torch.Tensor:
    """One snippet, two tokens: a red circle on the first, a blue square on the second."""
    scores = torch.full((1, 2, len(COLORS) + len(SHAPES)), -5.0)
    scores[0, 0, list(COLORS).index("red")] = scores[0, 0, len(COLORS) + SHAPES.index("circle")] = 5.0
    scores[0, 1, list(COLORS).index("blue")] = scores[0, 1, len(COLORS) + SHAPES.index("square")] = 5.0
    return scores


def test_a_bound_probe_pairs_parts_on_one_token_and_an_unbound_one_anywhere():
    bound, unbound = probe_logits(_scores(), "bound")[0], probe_logits(_scores(), "unbound")[0]
    assert bound.shape == unbound.shape == (SHAPE_CLASSES,)
    assert bound[RED_CIRCLE] == bound[BLUE_SQUARE] == 10.0 and bound[RED_SQUARE] == 0.0
    assert unbound[RED_SQUARE] == 10.0  # a red thing and a square thing, not one red square
    assert int((bound > 0).sum()) == 2


def test_detection_counts_held_out_and_trained_pairs_apart():
    truth = torch.full((2, SHAPE_CLASSES), ABSENT, dtype=torch.int8)
    truth[:, RED_CIRCLE] = PRESENT
    truth[0, BLUE_SQUARE] = PRESENT
    truth[1, RED_SQUARE] = UNKNOWN
    held_out = torch.zeros(2, SHAPE_CLASSES, dtype=torch.bool)
    held_out[:, BLUE_SQUARE] = True
    present = torch.zeros(2, SHAPE_CLASSES)
    present[0, RED_CIRCLE] = present[1, RED_SQUARE] = present[0, RED_SQUARE] = 0.9
    shares = detection(present, {"truth": truth, "held_out": held_out})
    assert shares["held-out pairs found"] == 0.0 and shares["held-out pairs present"] == 1
    assert shares["trained pairs found"] == 0.5 and shares["trained pairs present"] == 2
    absent = int((truth == ABSENT).sum())
    assert shares["found where absent"] == round(1 / absent, 4)  # the unknown one is not counted
