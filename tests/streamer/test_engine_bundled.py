"""The bundled checkpoint end to end: world clips in, answers that match the world out."""

from __future__ import annotations

import json
import math

import pytest

from streamer import Engine
from streamer.engine import BUNDLED_CHECKPOINT
from training.world.clip import World, WorldConfig

EASY_KINDS = ("color_now", "shape_now", "count_now")

pytestmark = pytest.mark.skipif(
    not (BUNDLED_CHECKPOINT / "config.json").is_file(),
    reason=f"no bundled checkpoint in {BUNDLED_CHECKPOINT}; train one with `streamer train --preset tiny`",
)


def test_bundled_model_answers_easy_questions_like_the_world():
    """The engine's streaming path answers as well as the card's offline evaluation says, kind by kind:
    the expected count of right answers from the card's per-kind accuracy, less three standard deviations."""
    card = json.loads((BUNDLED_CHECKPOINT / "card.json").read_text())
    accuracy = {kind: row["accuracy"] for kind, row in card["evaluation"]["world:test"]["per_kind"].items()}
    expected = variance = 0.0
    world = World(WorldConfig.preset("test", kinds=EASY_KINDS, questions_per_clip=4))
    right = total = 0
    with Engine.load(device="cpu") as engine:
        for index in range(12):
            clip = world.clip(index)
            questions = list(clip.questions)
            session = engine.session()
            for update in session.stream(clip.source()):
                for question in [q for q in questions if q.ask_snippets == update.index + 1]:
                    right += session.ask(question.text, at=update).text == question.answer
                    total += 1
                    p = accuracy[question.kind]
                    expected, variance = expected + p, variance + p * (1 - p)
            session.close()
    assert total >= 30
    floor = expected - 3 * math.sqrt(variance)
    assert right >= floor, f"the bundled model answered {right}/{total} easy questions like the world; " \
                           f"its card predicts {expected:.1f} (at least {floor:.1f})"
