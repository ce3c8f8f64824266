"""answer(): greedy = teacher-forced argmax, length limit, seeded sampling, streamed pieces."""

from __future__ import annotations

import torch

from model_helpers import make_model, micro_config, random_clip


def _state(model, snippets=4):
    video, audio = random_clip(model.cfg, 1, snippets, seed=20)
    state = model.init_state(1)
    for t in range(snippets):
        state = model.step(state, video[:, t], audio[:, t])
    return state


def test_greedy_generation_matches_teacher_forcing(combiner_kind):
    """The KV-cached generation loop and the teacher-forced pass compute the same next tokens."""
    model = make_model(micro_config(combiner_kind), seed=21)
    state = _state(model)
    tok = model.tokenizer
    generated = []
    for token in model._generate(state, model.question_prompt("what color is the square?"), 12, 0.0, None):
        generated.append(token)
    assert 0 < len(generated) <= 12
    logits = model.answer_logits(state, tok.question_ids("what color is the square?"), generated + [tok.end_id])
    assert logits[0].argmax(-1)[: len(generated)].tolist() == generated


def test_answer_respects_the_length_limit_and_yields_text():
    model = make_model(micro_config("ttm"), seed=22)
    state = _state(model)
    pieces = list(model.answer(state, "what is happening?", max_new_tokens=5))
    assert all(isinstance(p, str) for p in pieces)
    assert len("".join(pieces).encode("utf-8", errors="replace")) <= 5 * 3


def test_seeded_sampling_is_reproducible():
    model = make_model(micro_config("ttm"), seed=23)
    state = _state(model)
    a = "".join(model.answer(state, "what?", max_new_tokens=16, temperature=1.0, seed=5))
    b = "".join(model.answer(state, "what?", max_new_tokens=16, temperature=1.0, seed=5))
    assert a == b
    greedy = [list(model._generate(state, model.question_prompt("what?"), 16, 0.0, None)) for _ in range(2)]
    assert greedy[0] == greedy[1]
