"""answer(): greedy = teacher-forced argmax, length limit, seeded sampling, streamed pieces."""

from __future__ import annotations

import torch

from model_helpers import assert_greedy_generation_matches_teacher_forcing, make_model, micro_config, streamed_state


def _state(model, snippets=4):
    return streamed_state(model, snippets, seed=20)


def test_greedy_generation_matches_teacher_forcing(combiner_kind):
    model = make_model(micro_config(combiner_kind), seed=21)
    assert_greedy_generation_matches_teacher_forcing(model, _state(model), "what color is the square?")


def test_answer_respects_the_length_limit_and_yields_text():
    """The limit cuts the answer the model would give anyway after exactly 5 tokens."""
    model = make_model(micro_config("ttm"), seed=22)
    end = model.tokenizer.end_id
    # a model that never ends its answer by itself, so only the limit can stop it
    model.decoder.head.register_forward_hook(
        lambda module, args, logits: logits.index_fill(-1, torch.tensor([end]), -1e9))
    state = _state(model)
    prompt = model.question_prompt("what is happening?")
    unlimited = list(model._generate(state, prompt, 40, 0.0, None))
    assert len(unlimited) == 40
    pieces = list(model.answer(state, "what is happening?", max_new_tokens=5))
    assert pieces and all(isinstance(p, str) for p in pieces)
    assert "".join(pieces) == model.tokenizer.decode(unlimited[:5])


def test_seeded_sampling_is_reproducible_and_depends_on_the_seed():
    model = make_model(micro_config("ttm"), seed=23)
    state = _state(model)

    def sample(seed: int, temperature: float = 1.0) -> list[int]:
        return list(model._generate(state, model.question_prompt("what?"), 16, temperature, seed))

    assert sample(5) == sample(5)
    assert len({tuple(sample(seed)) for seed in range(5, 10)}) > 1, "five seeds sampled the same answer"
    greedy = list(model._generate(state, model.question_prompt("what?"), 16, 0.0, None))
    assert sample(5) != greedy  # temperature 1 is not argmax
    assert sample(5, temperature=1e-4) == greedy  # ... but a vanishing temperature is
