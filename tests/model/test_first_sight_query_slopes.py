"""First-sight query slopes: each cross-attention query adds its own multiple of every
first-sight token's age (a learned projection of the query) to its scores, on top of the heads'
fixed slopes. Zero projections change nothing, so the part can grow over a trained checkpoint;
a query's slope weights the tokens up by exactly its multiple of their ages; streaming generation
reads the same scores as teacher forcing."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from model import ModelConfig
from model.decoder import AGE_SLOPE_GAIN, READ_HEAD
from model.layers import rope_angles
from model_helpers import (
    assert_greedy_generation_matches_teacher_forcing,
    make_model,
    micro_config,
    random_clip,
    streamed_state,
    teacher_forced_rows,
    with_decoder,
)

CLASSES = 5
QUESTION = "which came first, the red circle or the drum?"


def _model(seed: int, query_slopes: bool = True):
    cfg = with_decoder(micro_config(), first_sight_classes=CLASSES, first_sight_tokens=True, age_slopes=True,
                       length_scale=True, first_sight_age_slopes=True, first_sight_query_slopes=query_slopes)
    return make_model(cfg, seed=seed)


def _batch(model):
    video, audio = random_clip(model.cfg, 2, 4, seed=5)
    questions = [[(QUESTION, "red circle", 4), ("what color is the square?", "blue", 3)], [(QUESTION, "drum", 2)]]
    return dict(video=video, audio=audio, **model.encode_batch_questions(questions))


def test_zero_query_slopes_leave_the_answers_as_they_were():
    plain, sloped = _model(seed=81, query_slopes=False), _model(seed=81)
    with torch.no_grad():
        plain.decoder.first_sight_age_slopes.normal_()
    missing, unexpected = sloped.load_state_dict(plain.state_dict(), strict=False)
    assert missing == ["decoder.first_sight_query_slopes"] and not unexpected
    assert sloped.decoder.first_sight_query_slopes.shape == (sloped.cfg.decoder.layers, sloped.cfg.decoder.heads,
                                                             sloped.cfg.decoder.dim)
    assert not sloped.decoder.first_sight_query_slopes.any()
    batch = _batch(plain)
    with torch.no_grad():
        torch.testing.assert_close(sloped(batch).answer_logits, plain(batch).answer_logits)


def test_each_query_weights_the_tokens_up_by_its_own_multiple_of_their_ages():
    model = _model(seed=82)
    batch = _batch(model)
    _, ids, _, context, mask = teacher_forced_rows(model, batch)
    positions = torch.arange(ids.shape[1])[None]
    cross_kv = model.decoder.cross_kv(context)
    ages = torch.tensor([[0.0, 1.0, 2.0, 0.5, 0.0]]).expand(ids.shape[0], -1)
    direction = torch.randn(model.cfg.decoder.dim)
    with torch.no_grad():
        _, _, before = model.decoder(ids, positions, None, cross_kv, mask, read=True, token_ages=ages)
        model.decoder.first_sight_query_slopes[-1, READ_HEAD] = direction
        _, _, after = model.decoder(ids, positions, None, cross_kv, mask, read=True, token_ages=ages)
        # the slope of each query: its projection on the direction, from what the last block's
        # cross-attention reads (the earlier blocks' query slopes are zero, so they run without them)
        decoder = model.decoder
        rope = rope_angles(positions, model.cfg.decoder.dim // model.cfg.decoder.heads)
        bias, scales = decoder._score_bias(mask, ages, False), decoder.query_scales(mask)
        x = decoder.embed(ids)
        for i, earlier in enumerate(decoder.blocks[:-1]):
            x = earlier(x, rope, None, cross_kv[i], mask, bias[i], scales[i])[0]
        block = decoder.blocks[-1]
        q, k, v = block.attn.project(block.norm1(x), rope)
        x = x + block.attn.merge(F.scaled_dot_product_attention(q, k, v, is_causal=True))
        slopes = block.norm2(x) @ direction * AGE_SLOPE_GAIN / math.sqrt(model.cfg.decoder.dim)  # [B, L]
    first = 1 + model.cfg.combiner.memory_tokens
    tokens = slice(first, first + CLASSES)
    gain = (after[..., tokens] / before[..., tokens]) / (after[..., :1] / before[..., :1])  # against the null token
    torch.testing.assert_close(gain, torch.exp(slopes[..., None] * ages[:, None, :]), atol=1e-4, rtol=1e-4)
    assert slopes.std() > 0.1  # the queries' slopes differ, so the test tells a per-query bias from a shared one


def test_greedy_generation_with_query_slopes_matches_teacher_forcing():
    model = _model(seed=83)
    with torch.no_grad():
        model.decoder.first_sight_query_slopes.normal_()
        model.decoder.first_sight_head.bias.fill_(2.0)  # things seen, so the ages differ
    assert_greedy_generation_matches_teacher_forcing(model, streamed_state(model, 5, seed=9), QUESTION)


def test_query_slopes_need_the_age_slopes_and_old_configs_read_without_them():
    with pytest.raises(ValueError, match="decoder.first_sight_age_slopes"):
        with_decoder(micro_config(), first_sight_classes=CLASSES, first_sight_tokens=True,
                     first_sight_query_slopes=True)
    cfg = ModelConfig.from_name("tiny")
    data = cfg.to_dict()
    del data["decoder"]["first_sight_query_slopes"]
    old = ModelConfig.from_dict(data)
    assert old.decoder.first_sight_query_slopes is False and old.fingerprint_dict() == cfg.fingerprint_dict()
