"""First-sight drills: `order` questions answered from exact first-sight marks alone.

A clip asks "which came first, the A or the B?" a handful of times, and the decoder must learn
from those few to rank two first-sight tokens by age; given perfect tokens and nothing else, it
took hundreds of steps of 32 such questions to rank them better than chance
(experiments/token_compare.py), far more than world clips ask in a fine-tuning run. A drill
draws a few of the world's shapes and sounds, gives each a first sight at a random age in the
window (the marks `TextDecoder.first_sight` makes, as a perfect head would) and asks the world's
`order` question about two of the same sort. It costs the decoder alone over a context of 30
tokens (`StreamerModel.drill_logits`): 128 drills take about 0.85 s on one core, about as long as
one or two clips of a training batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from model.streamer_model import StreamerModel
from training.world.first_sight import FIRST_SIGHT_CLASSES
from training.world.questions import TEMPLATES
from training.world.vocab import SOUNDS

SHAPE_CLASSES = FIRST_SIGHT_CLASSES[:-len(SOUNDS)]
SHAPES_SEEN = (2, 4)  # shapes first seen in a drill's window, at least and at most
SOUNDS_SEEN = (0, 3)
SOUND_PAIRS = 0.4  # share of drills that ask about two sounds (the rest: two shapes)


@dataclass
class Drills:
    """A batch of drills: marks [N, W, classes] oldest snippet first, the (question, answer)
    pairs, and how many snippets apart the two named things were first seen."""

    marks: torch.Tensor
    asked: list[tuple[str, str]]
    gaps: list[int]


def draw_drills(n: int, window: int, generator: torch.Generator) -> Drills:
    """n drills over a window of `window` snippets."""
    if window < SHAPES_SEEN[1] + SOUNDS_SEEN[1]:
        raise ValueError(f"a drill window needs at least {SHAPES_SEEN[1] + SOUNDS_SEEN[1]} snippets, got {window}")
    marks = torch.zeros(n, window, len(FIRST_SIGHT_CLASSES))
    asked, gaps = [], []

    def pick(names, count):
        return [names[j] for j in torch.randperm(len(names), generator=generator)[:count]]

    for i in range(n):
        sounds_asked = bool(torch.rand(1, generator=generator) < SOUND_PAIRS)
        shapes = pick(SHAPE_CLASSES, int(torch.randint(SHAPES_SEEN[0], SHAPES_SEEN[1] + 1, (1,), generator=generator)))
        low = 2 if sounds_asked else SOUNDS_SEEN[0]
        sounds = pick(SOUNDS, int(torch.randint(low, SOUNDS_SEEN[1] + 1, (1,), generator=generator)))
        seen = shapes + sounds
        ages = dict(zip(seen, torch.randperm(window, generator=generator)[: len(seen)].tolist()))
        for name, age in ages.items():
            marks[i, window - 1 - age, FIRST_SIGHT_CLASSES.index(name)] = 1.0
        a, b = pick(sounds if sounds_asked else shapes, 2)
        template = TEMPLATES["order"][int(torch.randint(len(TEMPLATES["order"]), (1,), generator=generator))]
        asked.append((template.format(a=a, b=b), a if ages[a] > ages[b] else b))
        gaps.append(abs(ages[a] - ages[b]))
    return Drills(marks, asked, gaps)


def drill_batch(model: StreamerModel, drills: Drills) -> dict[str, torch.Tensor]:
    """The batch entries `StreamerModel.forward` reads drills from."""
    encoded = model.encode_batch_questions([[(q, a, 0)] for q, a in drills.asked])
    return {"drill_marks": drills.marks,
            **{f"drill_{name}": encoded[name][:, 0] for name in
               ("question_ids", "question_mask", "answer_ids", "answer_mask")}}
