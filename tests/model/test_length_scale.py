"""The decoder's length scale (Scalable-Softmax): gains of 1 leave a context of the reference
size as it was, longer contexts are scored more sharply, cached generation agrees with teacher
forcing, and checkpoints from before it read as they were."""

from __future__ import annotations

import math

import torch

from experiments.length_scale import with_unit_gains
from model import ModelConfig
from model.decoder import LENGTH_SCALE_REFERENCE_TOKENS
from model.layers import CrossAttention
from model_helpers import (
    assert_decoder_field_reads_as_off_when_absent,
    assert_greedy_generation_matches_teacher_forcing,
    make_model,
    micro_config,
    streamed_state,
    with_decoder,
)
from training.trainer import parameter_groups


def _scaled(cfg: ModelConfig) -> ModelConfig:
    return with_decoder(cfg, length_scale=True)


def test_a_query_scale_multiplies_the_scores_of_each_row_and_head():
    attention = CrossAttention(8, 2)
    attention.proj = torch.nn.Identity()
    x = torch.randn(2, 3, 8)
    k, v = torch.randn(2, 2, 5, 4), torch.randn(2, 2, 5, 4)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    scale = torch.tensor([[1.0, 2.0], [0.5, 3.0]])
    q = attention.q(x).view(2, 3, 2, 4).transpose(1, 2)
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(4) * scale[:, :, None, None]
    weights = scores.masked_fill(~mask[:, None, None, :], float("-inf")).softmax(-1)
    expected = (weights @ v).transpose(1, 2).reshape(2, 3, 8)
    torch.testing.assert_close(attention(x, k, v, mask, query_scale=scale), expected, atol=1e-5, rtol=1e-5)


def test_gains_of_one_scale_by_the_log_of_the_valid_context_tokens():
    model = make_model(_scaled(micro_config()))
    nc = 1 + model.cfg.combiner.memory_tokens + model.cfg.latent.window * model.cfg.combiner.out_tokens
    valid = torch.tensor([nc, 17, 1])
    mask = torch.arange(nc)[None, :] < valid[:, None]
    scales = model.decoder.query_scales(mask)
    assert scales.shape == (model.cfg.decoder.layers, 3, model.cfg.decoder.heads)
    expected = torch.log(valid.float()) / math.log(LENGTH_SCALE_REFERENCE_TOKENS)
    torch.testing.assert_close(scales, expected[None, :, None].expand_as(scales))
    assert scales[0, 0, 0] > scales[0, 1, 0] > scales[0, 2, 0] == 0  # a lone null token scores flat


def test_the_reference_context_is_scored_as_without_the_scale_and_others_are_not():
    """Gains of 1 at LENGTH_SCALE_REFERENCE_TOKENS valid tokens give exactly the old logits."""
    plain = make_model(micro_config(), seed=41)
    with torch.no_grad():  # scores far from flat, so that their scale shows in the answer
        for block in plain.decoder.blocks:
            block.cross.q.weight.mul_(100.0)
    scaled = make_model(_scaled(micro_config()), seed=41)
    missing, unexpected = scaled.load_state_dict(plain.state_dict(), strict=False)
    assert missing == ["decoder.length_scales"] and not unexpected
    ids = torch.tensor([plain.question_prompt("what sound did the red square make?")])
    positions = torch.arange(ids.shape[1])[None]
    d = plain.cfg.decoder.dim
    context = torch.randn(1, LENGTH_SCALE_REFERENCE_TOKENS + 20, d)
    reference = torch.arange(context.shape[1])[None] < LENGTH_SCALE_REFERENCE_TOKENS
    longer = torch.ones_like(reference)

    def logits(model, mask):
        return model.decoder(ids, positions, None, model.decoder.cross_kv(context), mask)[0]

    torch.testing.assert_close(logits(scaled, reference), logits(plain, reference))
    assert not torch.allclose(logits(scaled, longer), logits(plain, longer), atol=1e-4)


def test_greedy_generation_with_the_scale_matches_teacher_forcing():
    model = make_model(_scaled(micro_config()), seed=42)
    with torch.no_grad():
        model.decoder.length_scales.copy_(torch.tensor([[1.5, 0.5], [2.0, 1.0]]))
    assert_greedy_generation_matches_teacher_forcing(model, streamed_state(model, 5, seed=40), "which came first?")


def test_the_gains_are_not_pulled_towards_zero_by_weight_decay():
    model = make_model(_scaled(micro_config()))
    decay, no_decay = parameter_groups(model, 0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert any(p is model.decoder.length_scales for p in no_decay["params"])
    assert not any(p is model.decoder.length_scales for p in decay["params"])
    assert any(p is model.decoder.head.weight for p in decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_a_config_from_before_the_scale_reads_as_off_and_keeps_its_fingerprint():
    assert_decoder_field_reads_as_off_when_absent("length_scale")


def test_the_experiments_scaled_copy_keeps_every_weight_and_sets_every_gain_to_one():
    """experiments.length_scale asks a checkpoint with the untrained scale: same weights, gains 1."""
    model = make_model(micro_config(), seed=5)
    scaled = with_unit_gains(model)
    assert scaled.cfg.decoder.length_scale and not model.cfg.decoder.length_scale
    weights = scaled.state_dict()
    assert set(weights) - set(model.state_dict()) == {"decoder.length_scales"}
    assert weights["decoder.length_scales"].eq(1).all()
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(weights[name], tensor, atol=0, rtol=0)
    assert not scaled.training
