"""Choose a clip's questions: when to ask, what to ask about, and how to word it.

Every answer comes from `AnswerKey`. This module only decides which questions are fair
(a viewer could answer them from what came before t_ask, with no borderline cases such as
a shape two pixels from gone) and keeps the answers balanced, so no single answer
("silence", "zero") dominates what a model is trained on.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from model.media import MediaSpec
from training.world.answers import AnswerKey
from training.world.generate import BINDING_WINDOW
from training.world.timeline import Timeline
from training.world.vocab import NOTHING, QUESTION_KINDS, SILENCE, SOUNDS

TEMPLATES: dict[str, tuple[str, ...]] = {
    "color_now": ("what color is the {shape}?", "which color is the {shape}?"),
    "shape_now": ("what shape is on the screen?", "which shape do you see?"),
    "count_now": ("how many shapes are on the screen?", "how many shapes do you see?"),
    "direction": ("which way is the {color} {shape} moving?", "where is the {color} {shape} going?"),
    "sound_now": ("what sound is playing?", "what do you hear now?"),
    "count_sound": ("how many times did you hear the {sound}?", "how often did you hear the {sound}?"),
    "first_shape": ("what was the first shape you saw?", "which shape appeared first?"),
    "first_color": ("what color was the first shape?", "which color did the first shape have?"),
    "order": ("which came first, the {a} or the {b}?", "what happened first, the {a} or the {b}?"),
    "sound_of": ("what sound did the {color} {shape} make?", "what did the {color} {shape} sound like?"),
    "who_made": ("which shape made the {sound}?", "what made the {sound}?"),
    "describe": ("what is happening?", "describe what you see."),
}

CLEAR_FRACTION = 0.35  # a shape on screen shows at least this share of its box
MIN_FRAMES_FOR_MOTION = 4  # frames a shape must be watched before asking how it moves
SETTLE_SECONDS = 0.1  # a play must have sounded this long before it counts as heard
MIN_OVERLAP_NOW = 0.08  # seconds of a play inside the last snippet for "what sound is playing"
EMPTY_ANSWERS = frozenset({NOTHING, SILENCE, "zero"})
EMPTY_WEIGHT = 0.5  # "nothing happened" answers are drawn half as often as any other answer
# Answers available in nearly every clip, drawn less often so they do not dominate
# (one shape on screen is far more common than two).
COMMON_ANSWER_WEIGHTS = {("count_now", "one"): 0.4}


@dataclass(frozen=True)
class Question:
    """A question asked at `t_ask` seconds, after `ask_snippets` whole snippets."""

    text: str
    kind: str
    t_ask: float
    ask_snippets: int
    answer: str


def choose_questions(
    timeline: Timeline,
    spec: MediaSpec,
    n_snippets: int,
    kinds: tuple[str, ...],
    count: int,
    rng: np.random.Generator,
    kind_weights: dict[str, float] | None = None,
) -> list[Question]:
    """Up to `count` distinct fair questions at snippet boundaries 1..n_snippets, sorted by ask time.

    A kind is drawn among those with a fair question (uniformly, or by `kind_weights`, 1 for
    a kind it does not name), then an answer class
    among that kind's possible answers (empty answers at half weight), then a question.
    """
    unknown = [k for k in kinds if k not in QUESTION_KINDS]
    if unknown:
        raise ValueError(f"unknown question kinds {unknown}; choose from {QUESTION_KINDS}")
    keys = [AnswerKey(timeline, spec, k * spec.snippet_seconds) for k in range(1, n_snippets + 1)]
    pool: dict[str, list[tuple[int, dict[str, str], str]]] = {}
    for kind in kinds:
        entries = [
            (k, subject, key.answer(kind, **subject))
            for k, key in enumerate(keys, start=1)
            for subject in fair_subjects(kind, key)
        ]
        if entries:
            pool[kind] = entries
    questions = []
    while len(questions) < count and pool:
        kinds_here = sorted(pool)
        if kind_weights:
            weights = np.array([kind_weights.get(k, 1.0) for k in kinds_here])
            kind = kinds_here[rng.choice(len(kinds_here), p=weights / weights.sum())]
        else:
            kind = kinds_here[rng.integers(len(kinds_here))]
        by_class: dict[str, list[int]] = defaultdict(list)
        for position, (_, subject, answer) in enumerate(pool[kind]):
            by_class[_answer_class(kind, subject, answer)].append(position)
        classes = sorted(by_class)
        weights = np.array([_class_weight(kind, c) for c in classes])
        choices = by_class[classes[rng.choice(len(classes), p=weights / weights.sum())]]
        k, subject, answer = pool[kind].pop(choices[rng.integers(len(choices))])
        if not pool[kind]:
            del pool[kind]
        templates = TEMPLATES[kind]
        text = templates[rng.integers(len(templates))].format(**subject)
        questions.append(Question(text, kind, k * spec.snippet_seconds, k, answer))
    return sorted(questions, key=lambda q: (q.ask_snippets, q.kind, q.text))


def _class_weight(kind: str, answer_class: str) -> float:
    if answer_class in EMPTY_ANSWERS:
        return EMPTY_WEIGHT
    return COMMON_ANSWER_WEIGHTS.get((kind, answer_class), 1.0)


def _answer_class(kind: str, subject: dict[str, str], answer: str) -> str:
    """What to balance: the answer itself, except where answers are nearly all distinct
    (`describe`: balance how many shapes it names) or position could leak (`order`)."""
    if kind == "describe":
        return answer if answer in EMPTY_ANSWERS else f"{answer.count(' and ') + 1} shapes"
    if kind == "order":
        return "first named" if answer == subject["a"] else "second named"
    return answer


def fair_subjects(kind: str, key: AnswerKey) -> list[dict[str, str]]:
    """The subjects a question of `kind` may be asked about at key.t_ask (empty if none)."""
    return _FAIR[kind](key)


def _last_frame(key: AnswerKey) -> int:
    return key.frames_seen - 1


def _screen_is_clear(key: AnswerKey) -> bool:
    """No shape half-gone at the edge and no two shapes hiding each other in the last frame."""
    if key.frames_seen == 0:
        return False
    last = _last_frame(key)
    fractions = [key.visible(i, last) for i in range(len(key.timeline.shapes))]
    if any(0 < f < CLEAR_FRACTION for f in fractions):
        return False
    t = last / key.spec.fps
    for i, j in combinations(key.on_screen, 2):
        a, b = key.timeline.shapes[i], key.timeline.shapes[j]
        (ax, ay), (bx, by) = a.centre(t), b.centre(t)
        reach = (a.size + b.size) / 2
        overlap = max(0.0, reach - abs(float(ax - bx))) * max(0.0, reach - abs(float(ay - by)))
        if overlap > 0.3 * min(a.size, b.size) ** 2:
            return False
    return True


def _watched_long_enough(key: AnswerKey, index: int) -> bool:
    return key.frames_seen - key.first_frames.get(index, key.frames_seen) >= MIN_FRAMES_FOR_MOTION


def _color_now(key: AnswerKey) -> list[dict[str, str]]:
    if not _screen_is_clear(key):
        return []
    kinds = [key.timeline.shapes[i].shape for i in key.on_screen]
    return [{"shape": s} for s in kinds if kinds.count(s) == 1]


def _shape_now(key: AnswerKey) -> list[dict[str, str]]:
    return [{}] if _screen_is_clear(key) and len(key.on_screen) == 1 else []


def _count_now(key: AnswerKey) -> list[dict[str, str]]:
    return [{}] if _screen_is_clear(key) else []


def _direction(key: AnswerKey) -> list[dict[str, str]]:
    if not _screen_is_clear(key):
        return []
    return [
        {"color": key.timeline.shapes[i].color, "shape": key.timeline.shapes[i].shape}
        for i in key.on_screen
        if _watched_long_enough(key, i)
    ]


def _sound_now(key: AnswerKey) -> list[dict[str, str]]:
    window_start = max(0.0, key.t_ask - key.spec.snippet_seconds)
    playing = [s.overlap(window_start, key.t_ask) for s in key.heard if s.overlap(window_start, key.t_ask) > 0]
    return [{}] if not playing or (len(playing) == 1 and playing[0] >= MIN_OVERLAP_NOW) else []


def _count_sound(key: AnswerKey) -> list[dict[str, str]]:
    if any(s.t_start > key.t_ask - SETTLE_SECONDS for s in key.heard):
        return []
    return [{"sound": sound} for sound in SOUNDS]


def _first(key: AnswerKey) -> list[dict[str, str]]:
    if not key.seen:
        return [{}]
    return [{}] if key.frames_seen - key.first_frames[key.seen[0]] >= 3 else []


def _order(key: AnswerKey) -> list[dict[str, str]]:
    shapes = [key.timeline.shapes[i].name for i in key.seen if key.frames_seen - key.first_frames[i] >= 3]
    first_heard: dict[str, float] = {}
    for play in key.heard:
        first_heard.setdefault(play.sound, play.t_start)
    sounds = [k for k, t in first_heard.items() if t <= key.t_ask - SETTLE_SECONDS]
    subjects = []
    for names in (shapes, sounds):
        for a, b in combinations(names, 2):
            subjects.append({"a": a, "b": b})
            subjects.append({"a": b, "b": a})
    return subjects


def _sound_of(key: AnswerKey) -> list[dict[str, str]]:
    subjects = []
    for i in key.seen:
        shape = key.timeline.shapes[i]
        made = [s for s in key.heard if s.owner == i]
        settled = made[0].t_start <= key.t_ask - SETTLE_SECONDS if made else key.t_ask - shape.t_start >= BINDING_WINDOW
        if settled:
            subjects.append({"color": shape.color, "shape": shape.shape})
    return subjects


def _who_made(key: AnswerKey) -> list[dict[str, str]]:
    kinds = []
    for play in key.heard:
        if play.sound not in kinds and play.t_start <= key.t_ask - SETTLE_SECONDS:
            kinds.append(play.sound)
    return [{"sound": k} for k in kinds]


def _describe(key: AnswerKey) -> list[dict[str, str]]:
    if not _screen_is_clear(key) or not all(_watched_long_enough(key, i) for i in key.on_screen):
        return []
    return [{}]


_FAIR = {
    "color_now": _color_now,
    "shape_now": _shape_now,
    "count_now": _count_now,
    "direction": _direction,
    "sound_now": _sound_now,
    "count_sound": _count_sound,
    "first_shape": _first,
    "first_color": _first,
    "order": _order,
    "sound_of": _sound_of,
    "who_made": _who_made,
    "describe": _describe,
}
