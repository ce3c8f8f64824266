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

Exact marks are not what the decoder meets: the head's marks are soft and smeared, and the
decoder that drilled on exact ones read real tokens less well (experiments/first_sight_readout.py).
Clip drills (`draw_clip_drills`) ask the same question of the batch's own clips, over the marks the
head makes of them (`StreamerModel._clip_drill_pass`), with the truth taken from the clip's
presence targets: the decoder practises on the tokens it will read, still at its own cost only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from model.streamer_model import StreamerModel
from training.world.first_sight import ABSENT, FIRST_SIGHT_CLASSES, PRESENT, names_in
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
    return {"drill_marks": drills.marks, **_encoded("drill", model, drills.asked)}


@dataclass
class ClipDrills:
    """Drills over a batch's clips: per drill the clip (rows [N]), how many of its snippets were
    seen when it is asked (asks [N]), the (question, answer) and the snippets between the two
    first sights."""

    rows: torch.Tensor
    asks: torch.Tensor
    asked: list[tuple[str, str]]
    gaps: list[int]


def first_sights(presence: torch.Tensor, ask: int, window: int) -> dict[str, int]:
    """presence int8 [T, classes] (training.world.first_sight) of one clip -> {class name: the
    snippet it was first present in}, for the classes first present among the `window` snippets
    before `ask` and surely absent in every snippet before that (a class first met as unknown,
    or already present before the window, has no first sight a question could name)."""
    seen = {}
    for c, name in enumerate(FIRST_SIGHT_CLASSES):
        column = presence[:ask, c]
        present = (column == PRESENT).nonzero()
        if len(present) == 0:
            continue
        first = int(present[0])
        if first >= ask - window and bool((column[:first] == ABSENT).all()):
            seen[name] = first
    return seen


def look_alike(a: str, b: str) -> bool:
    """Whether two shapes ("colour shape") share a colour or a shape."""
    (colour_a, shape_a), (colour_b, shape_b) = a.split(" ", 1), b.split(" ", 1)
    return colour_a == colour_b or shape_a == shape_b


def lured(a: str, b: str, seen: dict[str, int]) -> bool:
    """Whether, of two shapes ("colour shape") first seen at `seen`, the newer shares a colour or
    a shape with another shape first seen before the older: a token the question half matches
    that an older-preferring head weights up (experiments/order_age.py finds long `order` answers
    wrong most often there)."""
    if a in SOUNDS:
        return False
    older, newer = sorted((a, b), key=seen.get)
    return any(name not in (a, b) and name not in SOUNDS and seen[name] < seen[older] and look_alike(name, newer)
               for name in seen)


def draw_clip_drills(presence: torch.Tensor, lengths: torch.Tensor, per_clip: int, window: int,
                     generator: torch.Generator, lure_share: float = 0.0) -> ClipDrills:
    """Up to `per_clip` drills for each clip of a batch (presence int8 [B, T, classes], lengths
    [B] real snippets): each at a random ask time, about two things of one sort first seen in
    different snippets of the window before it. A clip without such a pair gives none. A share
    `lure_share` of drills asks about a `lured` pair where the window has one (more practice where
    the decoder errs most); at 0 the draws are those made before the option existed."""
    rows, asks, asked, gaps = [], [], [], []
    templates = TEMPLATES["order"]
    for b in range(presence.shape[0]):
        length = int(lengths[b])
        for _ in range(per_clip if length > 1 else 0):
            ask = int(torch.randint(2, length + 1, (1,), generator=generator))
            seen = first_sights(presence[b], ask, window)
            pairs = [(a, c) for sort in (SHAPE_CLASSES, SOUNDS) for a in sort for c in sort
                     if a in seen and c in seen and seen[a] != seen[c]]  # both orders of each pair
            if not pairs:
                continue
            if lure_share and float(torch.rand(1, generator=generator)) < lure_share:
                pairs = [pair for pair in pairs if lured(*pair, seen)] or pairs
            a, c = pairs[int(torch.randint(len(pairs), (1,), generator=generator))]
            template = templates[int(torch.randint(len(templates), (1,), generator=generator))]
            rows.append(b)
            asks.append(ask)
            asked.append((template.format(a=a, b=c), a if seen[a] < seen[c] else c))
            gaps.append(abs(seen[a] - seen[c]))
    return ClipDrills(torch.tensor(rows, dtype=torch.long), torch.tensor(asks, dtype=torch.long), asked, gaps)


def clip_drill_batch(model: StreamerModel, drills: ClipDrills) -> dict[str, torch.Tensor]:
    """The batch entries `StreamerModel.forward` reads clip drills from (none without drills)."""
    if not drills.asked:
        return {}
    return {"clip_drill_rows": drills.rows, "clip_drill_asks": drills.asks,
            **_encoded("clip_drill", model, drills.asked)}


def _encoded(prefix: str, model: StreamerModel, asked: list[tuple[str, str]]) -> dict[str, torch.Tensor]:
    """The drills' questions and answers as `encode_batch_questions` gives them, and the classes
    each question names (what a first-sight pointer learns from)."""
    encoded = model.encode_batch_questions([[(q, a, 0)] for q, a in asked])
    return {**{f"{prefix}_{name}": encoded[name][:, 0]
               for name in ("question_ids", "question_mask", "answer_ids", "answer_mask")},
            f"{prefix}_names": names_in([q for q, _ in asked])}
