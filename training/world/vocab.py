"""The fixed vocabulary of the shapes-and-sounds world (training/world/README.md): names,
colours, sounds.

Answers are built only from these words, so a model's output can be checked by exact match.
"""

from __future__ import annotations

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross")

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 200, 60),
    "blue": (50, 90, 230),
    "yellow": (230, 210, 40),
    "white": (235, 235, 235),
    "purple": (150, 60, 200),
}

# Duration of one play of each sound, in seconds.
SOUND_SECONDS: dict[str, float] = {
    "beep": 0.15,
    "buzz": 0.3,
    "chirp": 0.4,
    "drum": 0.2,
    "whistle": 0.4,
}
SOUNDS: tuple[str, ...] = tuple(SOUND_SECONDS)

DIRECTIONS: tuple[str, ...] = ("left", "right", "up", "down", "still")

NUMBER_WORDS: tuple[str, ...] = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
)

NOTHING = "nothing"
SILENCE = "silence"

QUESTION_KINDS: tuple[str, ...] = (
    "color_now",
    "shape_now",
    "count_now",
    "direction",
    "sound_now",
    "count_sound",
    "first_shape",
    "first_color",
    "order",
    "sound_of",
    "who_made",
    "describe",
)

# Pairs the train and test splits never show; the `compositional` split is built on them,
# so a model that scores there has learned the parts, not memorised the combinations.
HELD_OUT_COLOR_SHAPE: frozenset[tuple[str, str]] = frozenset(
    {("red", "triangle"), ("green", "circle"), ("blue", "cross"), ("yellow", "square")}
)
HELD_OUT_SHAPE_SOUND: frozenset[tuple[str, str]] = frozenset(
    {("circle", "whistle"), ("square", "chirp"), ("triangle", "buzz"), ("cross", "beep")}
)


def number_word(n: int) -> str:
    """`3` -> "three"; the world never produces counts past eight."""
    if not 0 <= n < len(NUMBER_WORDS):
        raise ValueError(f"count {n} is outside the world's number words (0-{len(NUMBER_WORDS) - 1})")
    return NUMBER_WORDS[n]
