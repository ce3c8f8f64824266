"""The decoder's first-sight tokens: one context token per class after the memory slots, each
its class embedding plus a projection of how surely and how long ago the class was first seen
in the window; the snippet tokens stay as they were, cached generation agrees with teacher
forcing, and configs from before the tokens read as they were."""

from __future__ import annotations

import pytest
import torch

from experiments.first_sight import without_token_ages
from experiments.first_sight_attention import TokenShare
from model.decoder import age_code
from model import ModelConfig
from model_helpers import (
    assert_greedy_generation_matches_teacher_forcing,
    make_model,
    micro_config,
    streamed_state,
    with_decoder,
)
from training.trainer import FAST_PART_LR_SCALE, parameter_groups

CLASSES = 5


def _with_tokens(cfg: ModelConfig, **fields) -> ModelConfig:
    return with_decoder(cfg, first_sight_classes=CLASSES, first_sight_tokens=True, **fields)


def test_the_context_holds_one_summary_token_per_class_between_the_memory_and_the_snippets():
    plain = make_model(with_decoder(micro_config(), first_sight_classes=CLASSES), seed=61)
    summed = make_model(_with_tokens(micro_config()), seed=61)
    missing, unexpected = summed.load_state_dict(plain.state_dict(), strict=False)
    assert sorted(missing) == ["decoder.first_sight_token_class.weight", "decoder.first_sight_token_features.bias",
                               "decoder.first_sight_token_features.weight"] and not unexpected
    for model in (plain, summed):
        model.decoder.context_norm = torch.nn.Identity()
        with torch.no_grad():
            model.decoder.first_sight_cues.normal_(generator=torch.Generator().manual_seed(3))
    cfg = plain.cfg
    h = torch.randn(2, cfg.latent.window, cfg.combiner.out_tokens, cfg.latent.dim)
    memory = torch.randn(2, cfg.combiner.memory_tokens, cfg.combiner.dim)
    valid = torch.tensor([[True] * cfg.latent.window, [False] + [True] * (cfg.latent.window - 1)])
    context, mask = summed.decoder.context(memory, h, valid)
    before, before_mask = plain.decoder.context(memory, h, valid)
    head = 1 + cfg.combiner.memory_tokens
    assert context.shape[1] == before.shape[1] + CLASSES
    torch.testing.assert_close(context[:, :head], before[:, :head])
    torch.testing.assert_close(context[:, head + CLASSES:], before[:, head:])
    summary = summed.decoder.first_sight_summary(summed.decoder.first_sight(h, valid))
    torch.testing.assert_close(context[:, head:head + CLASSES], summary)
    assert mask[:, head:head + CLASSES].all()
    torch.testing.assert_close(torch.cat((mask[:, :head], mask[:, head + CLASSES:]), 1), before_mask)


def test_the_summary_says_how_surely_and_how_long_ago_each_class_was_first_seen():
    model = make_model(_with_tokens(micro_config()), seed=62)
    w = model.cfg.latent.window  # 3 snippets, oldest first: ages 2, 1, 0 are shares 1, 0.5, 0
    assert w == 3
    marks = torch.tensor([[[0.9, 0.0, 0.0, 0.0, 0.0],
                           [0.1, 0.8, 0.0, 0.0, 0.0],
                           [0.0, 0.1, 0.6, 0.0, 0.0]]])
    decoder = model.decoder
    features = (decoder.first_sight_summary(marks) - decoder.first_sight_token_class.weight
                - decoder.first_sight_token_features.bias)
    seen = torch.tensor([0.9, 0.8, 0.6, 0.0, 0.0])
    age = torch.tensor([(0.9 * 1.0 + 0.1 * 0.5) / 1.0, (0.8 * 0.5) / 0.9, 0.0, 0.0, 0.0])
    expected = torch.stack((seen, age), -1) @ decoder.first_sight_token_features.weight.T
    torch.testing.assert_close(features[0], expected, atol=1e-6, rtol=1e-5)


def test_greedy_generation_with_first_sight_tokens_matches_teacher_forcing():
    model = make_model(_with_tokens(micro_config(), age_slopes=True, length_scale=True), seed=63)
    with torch.no_grad():
        model.decoder.first_sight_cues.normal_()
        model.decoder.age_slopes.normal_()
    assert_greedy_generation_matches_teacher_forcing(model, streamed_state(model, 5, seed=7),
                                                     "which came first, the red circle or the drum?")


def test_an_old_config_reads_without_the_tokens_and_keeps_its_fingerprint():
    cfg = with_decoder(ModelConfig.from_name("tiny"), first_sight_classes=CLASSES)
    data = cfg.to_dict()
    del data["decoder"]["first_sight_tokens"]
    old = ModelConfig.from_dict(data)
    assert old.decoder.first_sight_tokens is False
    assert old.fingerprint_dict() == cfg.fingerprint_dict() and "first_sight_tokens" not in str(old.fingerprint_dict())
    assert _with_tokens(ModelConfig.from_name("tiny")).fingerprint_dict() != cfg.fingerprint_dict()


def test_tokens_without_a_first_sight_head_are_refused():
    with pytest.raises(ValueError, match="decoder.first_sight_classes"):
        with_decoder(micro_config(), first_sight_tokens=True)


def test_the_tokens_learn_at_the_first_sight_heads_rate():
    model = make_model(_with_tokens(micro_config()), seed=64)
    fast = {id(p) for g in parameter_groups(model, 0.05) if g["lr_scale"] == FAST_PART_LR_SCALE for p in g["params"]}
    named = dict(model.named_parameters())
    tokens = [n for n in named if n.startswith("decoder.first_sight_token_")]
    assert len(tokens) == 3 and {id(named[n]) for n in tokens} <= fast


def test_the_experiments_copy_without_token_ages_reads_every_class_as_first_seen_now():
    model = make_model(_with_tokens(micro_config()), seed=65)
    blind = without_token_ages(model)
    assert float(model.decoder.first_sight_token_features.weight.detach()[:, 1].abs().min()) > 0  # the original keeps them
    marks = torch.rand(1, model.cfg.latent.window, CLASSES)
    now = marks.clone()
    now[:, :-1] = 0.0  # every mark in the newest snippet: age 0
    now[:, -1] = marks.amax(dim=1)  # as sure as before
    torch.testing.assert_close(blind.decoder.first_sight_summary(marks), model.decoder.first_sight_summary(now))


def test_cross_attention_weights_are_the_ones_its_forward_applies():
    model = make_model(_with_tokens(micro_config(), age_slopes=True, length_scale=True), seed=66)
    with torch.no_grad():
        model.decoder.age_slopes.normal_()
    cfg, decoder = model.cfg, model.decoder
    h = torch.randn(2, cfg.latent.window, cfg.combiner.out_tokens, cfg.latent.dim)
    memory = torch.randn(2, cfg.combiner.memory_tokens, cfg.combiner.dim)
    valid = torch.tensor([[True] * cfg.latent.window, [False] + [True] * (cfg.latent.window - 1)])
    context, mask = decoder.context(memory, h, valid)
    cross = decoder.blocks[1].cross
    k, v = cross.context_kv(context)
    x = torch.randn(2, 4, cfg.decoder.dim)
    bias, scale = decoder.age_bias()[1], decoder.query_scales(mask)[1]
    weights = cross.weights(x, k, mask, bias, scale).detach()
    assert float(weights[0, :, :, 1 + cfg.combiner.memory_tokens + CLASSES].sum()) > 0
    assert float(weights[1, :, :, 1 + cfg.combiner.memory_tokens + CLASSES:][..., :cfg.combiner.out_tokens].abs().max()) == 0
    by_hand = cross.proj((weights @ v).transpose(1, 2).reshape(2, 4, -1))
    torch.testing.assert_close(by_hand, cross(x, k, v, mask, bias, scale), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("slopes", [{}, {"first_sight_age_slopes": True, "first_sight_query_slopes": True}])
def test_the_attention_experiment_counts_every_layer_heads_share_of_the_tokens(slopes):
    model = make_model(_with_tokens(micro_config(), **slopes), seed=67).eval()
    if slopes:  # each query's own bias: the experiment reads the last query's row of it
        with torch.no_grad():
            model.decoder.first_sight_query_slopes.normal_()
    share = TokenShare(model)
    state = streamed_state(model, 4, seed=8)
    "".join(model.answer(state, "which came first, the red circle or the drum?", max_new_tokens=3))
    report = share.report()
    shares = torch.tensor(report["share per layer and head"])
    assert shares.shape == (model.cfg.decoder.layers, model.cfg.decoder.heads)
    assert report["query positions"] >= 1 and bool(((shares > 0) & (shares < 1)).all())
    uniform = torch.tensor(report["uniform share per layer"])
    valid = 1 + model.cfg.combiner.memory_tokens + CLASSES + 3 * model.cfg.combiner.out_tokens  # window of 3, all seen
    torch.testing.assert_close(uniform, torch.full_like(uniform, CLASSES / valid))
    assert not model.decoder.blocks[0].cross._forward_hooks  # the hooks are gone


def test_an_age_code_adds_the_sinusoids_of_each_tokens_age_in_snippets():
    """decoder.first_sight_age_code: the tokens gain `age_code` of their age in snippets (the
    mark-weighted share of the window times window − 1); 0 leaves them as they were."""
    plain = make_model(_with_tokens(micro_config()), seed=65)
    coded = make_model(_with_tokens(micro_config(), first_sight_age_code=1.0), seed=65)
    coded.load_state_dict(plain.state_dict())
    marks = torch.tensor([[[0.9, 0.0, 0.0, 0.0, 0.0],
                           [0.0, 0.8, 0.0, 0.0, 0.0],
                           [0.0, 0.0, 0.6, 0.0, 0.0]]])
    added = coded.decoder.first_sight_summary(marks) - plain.decoder.first_sight_summary(marks)
    ages = torch.tensor([2.0, 1.0, 0.0, 0.0, 0.0])  # a class never seen reads as age 0
    torch.testing.assert_close(added[0], age_code(ages, coded.cfg.decoder.dim, 1.0), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(added[0, 0], added[0, 1])


def test_an_age_code_needs_the_tokens_and_old_configs_read_without_it():
    with pytest.raises(ValueError, match="decoder.first_sight_tokens"):
        with_decoder(micro_config(), first_sight_classes=CLASSES, first_sight_age_code=1.0)
    cfg = _with_tokens(ModelConfig.from_name("tiny"))
    data = cfg.to_dict()
    del data["decoder"]["first_sight_age_code"]
    old = ModelConfig.from_dict(data)
    assert old.decoder.first_sight_age_code == 0.0 and old.fingerprint_dict() == cfg.fingerprint_dict()
