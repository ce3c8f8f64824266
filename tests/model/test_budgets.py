"""Question and answer budgets: every question and answer the world can produce fits the
tiny model whole (with its end-of-answer token), and text past a budget is refused, never cut."""

from __future__ import annotations

from itertools import product

import pytest
import torch

from model import ModelConfig, StreamerModel
from training.world.questions import TEMPLATES
from training.world.vocab import COLORS, NOTHING, NUMBER_WORDS, SHAPES, SILENCE, SOUNDS


def _longest_answers() -> dict[str, str]:
    """The longest answer of each question kind, built from the world's whole vocabulary."""
    names = [f"{c} {s}" for c, s in product(COLORS, SHAPES)]
    motions = ["standing still"] + [f"moving {d}" for d in ("left", "right", "up", "down")]
    one_shape = [f"{n} {m}" for n, m in product(names, motions)]
    candidates = {
        "color_now": list(COLORS) + [NOTHING],
        "shape_now": [f"{a} and {b}" for a, b in product(SHAPES, SHAPES)] + [NOTHING],
        "count_now": list(NUMBER_WORDS[:3]),
        "direction": ["left", "right", "up", "down", "still", NOTHING],
        "sound_now": list(SOUNDS) + [SILENCE],
        "count_sound": list(NUMBER_WORDS),
        "first_shape": list(SHAPES) + [NOTHING],
        "first_color": list(COLORS) + [NOTHING],
        "order": names + list(SOUNDS),
        "sound_of": list(SOUNDS) + [SILENCE],
        "who_made": names + [NOTHING],
        "describe": [f"{a} and {b}" for a, b in product(one_shape, one_shape)] + [NOTHING],
    }
    return {kind: max(answers, key=len) for kind, answers in candidates.items()}


def _longest_questions() -> list[str]:
    names = [f"{c} {s}" for c, s in product(COLORS, SHAPES)]
    longest_name = max(names, key=len)
    fill = {"shape": max(SHAPES, key=len), "color": max(COLORS, key=len), "sound": max(SOUNDS, key=len),
            "a": longest_name, "b": longest_name}
    return [t.format(**fill) for templates in TEMPLATES.values() for t in templates]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return StreamerModel(ModelConfig.from_name("tiny")).eval()


def test_every_world_answer_and_question_fits_the_tiny_budgets(model):
    tok, dc = model.tokenizer, model.cfg.decoder
    longest = _longest_answers()
    assert len(longest["describe"]) >= 60  # two shapes described: the answers that were cut before
    for kind, answer in longest.items():
        assert len(tok.answer_ids(answer)) <= dc.max_answer_tokens, (kind, answer)
    for question in _longest_questions():
        assert len(tok.question_ids(question)) <= dc.max_question_tokens, question
    batch = model.encode_batch_questions([[("what is happening?", longest["describe"], 1)]])
    ids = batch["answer_ids"][0, 0][batch["answer_mask"][0, 0]].tolist()
    assert tok.decode(ids) == longest["describe"] and ids[-1] == tok.end_id


def test_text_past_a_budget_is_refused_not_cut(model):
    long_answer = "x" * model.cfg.decoder.max_answer_tokens
    with pytest.raises(ValueError, match="max_answer_tokens"):
        model.encode_batch_questions([[("what?", long_answer, 1)]])
    long_question = "why " * model.cfg.decoder.max_question_tokens
    with pytest.raises(ValueError, match="questions of at most"):
        model.encode_batch_questions([[(long_question, "red", 1)]])
    state = model.init_state(1)
    with pytest.raises(ValueError, match="questions of at most"):
        model.answer(state, long_question)


def test_generation_runs_to_the_answer_budget_by_default(model):
    state = model.init_state(1)
    budget = model.cfg.decoder.max_answer_tokens
    ids = list(model._generate(state, model.question_prompt("what is happening?"), budget + 20, 0.0, None))
    default = "".join(model.answer(state, "what is happening?"))
    assert default == model.tokenizer.decode(ids[:budget])
