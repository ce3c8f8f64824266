"""--decoder-layers over an --init checkpoint: the new blocks follow the last one and write
nothing to the residual stream at first, so the grown model answers exactly as the checkpoint
did; per-layer parts gain rows as a new model's (slopes 0, length gains 1)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from model.decoder import POINTER_PRIOR
from training.trainer import FAST_PART_LR_SCALE, _grow_decoder, parameter_groups

sys.path.insert(0, str(Path(__file__).parents[1] / "model"))
from model_helpers import make_model, micro_config, random_clip, with_decoder  # noqa: E402

PER_LAYER = ("age_slopes", "length_scales", "first_sight_age_slopes", "first_sight_query_slopes",
             "first_sight_pointer", "first_sight_pointer_bias", "first_sight_pointer_gains", "first_sight_lookup")


def _model():
    cfg = with_decoder(micro_config(), first_sight_classes=5, first_sight_tokens=True, age_slopes=True,
                       length_scale=True, first_sight_age_slopes=True, first_sight_query_slopes=True,
                       first_sight_pointer=True, first_sight_lookup=True)
    model = make_model(cfg, seed=91).eval()
    with torch.no_grad():
        for name in PER_LAYER:
            getattr(model.decoder, name).normal_()  # trained values, not a new model's
        model.decoder.first_sight_head.bias.fill_(2.0)  # things seen, so the tokens' ages matter
    return model


def test_a_grown_decoder_answers_as_before_and_keeps_every_weight():
    model = _model()
    layers = model.cfg.decoder.layers
    grown = _grow_decoder(model, layers + 2).eval()
    assert grown.cfg.decoder.layers == layers + 2 and len(grown.decoder.blocks) == layers + 2
    video, audio = random_clip(model.cfg, 2, 4, seed=6)
    questions = [[("which came first, the red circle or the drum?", "drum", 4)], [("what color is the square?", "blue", 3)]]
    batch = dict(video=video, audio=audio, **model.encode_batch_questions(questions))
    with torch.no_grad():
        torch.testing.assert_close(grown(batch).answer_logits, model(batch).answer_logits, atol=1e-5, rtol=1e-5)
    old, new = model.state_dict(), grown.state_dict()
    for name, tensor in old.items():
        if name.removeprefix("decoder.") in PER_LAYER:
            torch.testing.assert_close(new[name][:layers], tensor)
        else:
            torch.testing.assert_close(new[name], tensor)
    assert not new["decoder.age_slopes"][layers:].any() and not new["decoder.first_sight_query_slopes"][layers:].any()
    assert not new["decoder.first_sight_lookup"][layers:].any()
    assert bool((new["decoder.length_scales"][layers:] == 1).all())
    assert not new["decoder.first_sight_pointer"][layers:].any()  # a fresh pointer: prior logits, gains 1
    assert bool((new["decoder.first_sight_pointer_bias"][layers:] == POINTER_PRIOR).all())
    assert bool((new["decoder.first_sight_pointer_gains"][layers:] == 1).all())
    block = grown.decoder.blocks[layers]
    for part in (block.attn.proj, block.cross.proj, block.mlp.proj):
        assert not part.weight.any() and not part.bias.any()
    assert block.attn.qkv.weight.std() > 0 and block.mlp.fc.weight.std() > 0  # the rest starts as a new block's


def test_the_new_blocks_learn():
    model = _grow_decoder(_model(), 4)
    video, audio = random_clip(model.cfg, 2, 4, seed=7)
    batch = dict(video=video, audio=audio,
                 **model.encode_batch_questions([[("what color is the square?", "blue", 3)]] * 2))
    model(batch).loss.backward()
    assert model.decoder.blocks[-1].mlp.proj.weight.grad.abs().sum() > 0


def test_lr_scales_give_a_grown_block_its_own_rate_and_keep_the_groups_order():
    model = _model()
    layers = model.cfg.decoder.layers
    grown = _grow_decoder(model, layers + 1)
    named = dict(grown.named_parameters())
    plain = parameter_groups(grown, 0.05)
    scaled = parameter_groups(grown, 0.05, ((f"decoder.blocks.{layers}.", 30.0),))
    rate = {id(p): g["lr_scale"] for g in scaled for p in g["params"]}
    assert len(rate) == len(named) == sum(len(g["params"]) for g in scaled)
    for name, p in named.items():
        expected = 30.0 if name.startswith(f"decoder.blocks.{layers}.") else (
            FAST_PART_LR_SCALE if name.startswith("decoder.first_sight_") else 1.0)
        assert rate[id(p)] == expected, name
    # without --lr-scales, the groups are as before it existed: a run saved then resumes
    assert [g["lr_scale"] for g in plain] == [1.0, 1.0, FAST_PART_LR_SCALE, FAST_PART_LR_SCALE]
    assert [g["lr_scale"] for g in scaled][:4] == [1.0, 1.0, FAST_PART_LR_SCALE, FAST_PART_LR_SCALE]
    assert [g["weight_decay"] for g in scaled] == [0.05, 0.0] * 3
