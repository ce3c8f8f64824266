"""Random questions through the tokenizer and the model's answer: text that round-trips, an
answer within the budget, or a ValueError that says what was wrong; never a hang or a crash."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from fuzz_helpers import assert_clear_error, budget, within
from hypothesis import given
from hypothesis import strategies as st

from model.tokenizer import Tokenizer

sys.path.insert(0, str(Path(__file__).parents[1] / "model"))
from model_helpers import make_model, micro_config, random_clip  # noqa: E402

TOKENIZER = Tokenizer()


@budget(100)
@given(st.text())
def test_any_text_round_trips_through_the_tokenizer(text):
    ids = TOKENIZER.encode(text)
    assert all(0 <= i < 256 for i in ids)
    assert TOKENIZER.decode(ids) == text


@budget(100)
@given(st.lists(st.integers(-5, 300), max_size=64))
def test_any_token_ids_decode_alike_at_once_and_streamed(ids):
    assert "".join(TOKENIZER.stream_decode(ids)) == TOKENIZER.decode(ids)


@pytest.fixture(scope="module")
def stepped():
    """A micro model and its state after two snippets of noise."""
    model = make_model(micro_config())
    video, audio = random_clip(model.cfg, 1, 2)
    state = model.init_state(1)
    for k in range(2):
        state = model.step(state, video[:, k], audio[:, k])
    return model, state


@budget(25)
@given(question=st.text(max_size=80), max_new_tokens=st.one_of(st.none(), st.integers(0, 12)))
def test_any_question_is_answered_within_budget_or_refused(stepped, question, max_new_tokens):
    model, state = stepped
    try:
        text = within(lambda: "".join(model.answer(state, question, max_new_tokens=max_new_tokens)))
    except ValueError as exc:
        assert_clear_error(exc, (ValueError,))
        assert len(TOKENIZER.question_ids(question)) > model.cfg.decoder.max_question_tokens
        return
    budget_tokens = model.cfg.decoder.max_answer_tokens if max_new_tokens is None else max_new_tokens
    assert isinstance(text, str)
    assert len(text.encode("utf-8")) <= 3 * budget_tokens  # a broken byte decodes to U+FFFD, 3 bytes
