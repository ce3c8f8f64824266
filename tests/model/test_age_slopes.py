"""The decoder's learned age slopes: a head can rank equal matches by age, masked tokens stay
out, zero slopes change nothing, and checkpoints from before them read as they were."""

from __future__ import annotations

import pytest
import torch

from model import ModelConfig
from model.layers import CrossAttention
from model_helpers import (
    assert_decoder_field_reads_as_off_when_absent,
    assert_greedy_generation_matches_teacher_forcing,
    make_model,
    micro_config,
    streamed_state,
    with_decoder,
)


def _sloped(cfg: ModelConfig) -> ModelConfig:
    return with_decoder(cfg, age_slopes=True)


def _state(model, snippets: int = 5):
    return streamed_state(model, snippets, seed=30)


def test_a_bias_on_equal_keys_picks_the_oldest_or_newest_and_never_a_masked_token():
    """Three equal keys whose values say their age: a rising bias reads the oldest valid one."""
    attention = CrossAttention(8, 2)
    k = torch.zeros(1, 2, 3, 4)
    v = torch.tensor([2.0, 1.0, 0.0]).view(1, 1, 3, 1).expand(1, 2, 3, 4)  # value = age
    proj = torch.nn.Identity()
    attention.proj = proj
    x = torch.randn(1, 1, 8)
    ages = torch.tensor([2.0, 1.0, 0.0])
    everything = torch.ones(1, 3, dtype=torch.bool)
    oldest_first = attention(x, k, v, everything, 20.0 * ages.expand(2, 3))
    assert torch.allclose(oldest_first, torch.full_like(oldest_first, 2.0), atol=1e-3)
    newest_first = attention(x, k, v, everything, -20.0 * ages.expand(2, 3))
    assert torch.allclose(newest_first, torch.zeros_like(newest_first), atol=1e-3)
    without_oldest = attention(x, k, v, torch.tensor([[False, True, True]]), 20.0 * ages.expand(2, 3))
    assert torch.allclose(without_oldest, torch.ones_like(without_oldest), atol=1e-3)


def test_the_bias_counts_each_context_tokens_age_in_snippets():
    model = make_model(_sloped(micro_config()))
    decoder, cfg = model.decoder, model.cfg
    with torch.no_grad():
        decoder.age_slopes.fill_(1.0)
    bias = decoder.age_bias()
    m, w, r = cfg.combiner.out_tokens, cfg.latent.window, cfg.combiner.memory_tokens
    assert bias.shape == (cfg.decoder.layers, cfg.decoder.heads, 1 + r + w * m)
    per_token = bias[0, 0] / bias[0, 0].max()
    assert per_token[: 1 + r].eq(0).all()  # the null token and the memory slots have no age
    h_ages = per_token[1 + r:].view(w, m)
    assert h_ages[:, 0].tolist() == [(w - 1 - i) / (w - 1) for i in range(w)]  # oldest snippet first
    assert (h_ages == h_ages[:, :1]).all()


def test_zero_slopes_answer_exactly_as_the_model_without_them_and_nonzero_ones_change_the_answer():
    plain = make_model(micro_config(), seed=31)
    sloped = make_model(_sloped(micro_config()), seed=31)
    missing, unexpected = sloped.load_state_dict(plain.state_dict(), strict=False)
    assert missing == ["decoder.age_slopes"] and not unexpected
    state = _state(plain)
    tok = plain.tokenizer
    question, answer = tok.question_ids("which came first, the drum or the bell?"), tok.answer_ids("the drum")
    before = plain.answer_logits(state, question, answer)
    torch.testing.assert_close(sloped.answer_logits(state, question, answer), before)
    with torch.no_grad():
        sloped.decoder.age_slopes.fill_(0.5)
    assert not torch.allclose(sloped.answer_logits(state, question, answer), before, atol=1e-4)


def test_greedy_generation_with_slopes_matches_teacher_forcing():
    """The KV-cached answer loop applies the same bias as the teacher-forced pass."""
    model = make_model(_sloped(micro_config()), seed=32)
    with torch.no_grad():
        model.decoder.age_slopes.copy_(torch.tensor([[0.5, -0.5], [0.25, 1.0]]))
    assert_greedy_generation_matches_teacher_forcing(model, _state(model), "which came first?")


def test_a_config_from_before_the_slopes_reads_as_off_and_keeps_its_fingerprint():
    assert_decoder_field_reads_as_off_when_absent("age_slopes")


def test_a_context_of_another_length_is_refused_with_a_clear_error():
    """The slopes are per age of the window's tokens: a hand-made context cannot be read with them."""
    model = make_model(_sloped(micro_config()))
    d = model.cfg.decoder.dim
    context = torch.randn(1, 5, d)
    mask = torch.ones(1, 5, dtype=torch.bool)
    ids = torch.tensor([model.question_prompt("what?")])
    with pytest.raises(ValueError, match="age slopes reads the .* context tokens"):
        model.decoder(ids, torch.arange(ids.shape[1])[None], None, model.decoder.cross_kv(context), mask)
