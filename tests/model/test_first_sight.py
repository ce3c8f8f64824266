"""The decoder's first-sight head: a class is marked where it is present and was in no valid
snippet before, cues of zero leave the context as it was, learned cues mark each snippet by
those marks, the presence loss counts only known targets of real snippets, cached generation
agrees with teacher forcing, and checkpoints from before it read as they were."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from experiments.first_sight import with_cues_times
from model import ModelConfig
from model.config import LossWeights
from model_helpers import (
    assert_greedy_generation_matches_teacher_forcing,
    make_model,
    micro_config,
    random_clip,
    streamed_state,
    with_decoder,
)
from training.trainer import FAST_PART_LR_SCALE, parameter_groups

CLASSES = 5


def _with_head(cfg: ModelConfig) -> ModelConfig:
    return with_decoder(cfg, first_sight_classes=CLASSES)


def _context(model, h, memory):
    return model.decoder.context(memory, h, torch.ones(h.shape[:2], dtype=torch.bool))[0]


def test_cues_of_zero_leave_the_context_as_it_was_and_learned_cues_mark_each_snippet():
    plain = make_model(micro_config(), seed=51)
    marked = make_model(_with_head(micro_config()), seed=51)
    missing, unexpected = marked.load_state_dict(plain.state_dict(), strict=False)
    assert sorted(missing) == ["decoder.first_sight_cues", "decoder.first_sight_head.bias",
                               "decoder.first_sight_head.weight"] and not unexpected
    cfg = plain.cfg
    h = torch.randn(2, cfg.latent.window, cfg.combiner.out_tokens, cfg.latent.dim)
    memory = torch.randn(2, cfg.combiner.memory_tokens, cfg.combiner.dim)
    torch.testing.assert_close(_context(marked, h, memory), _context(plain, h, memory))

    with torch.no_grad():
        marked.decoder.first_sight_cues.normal_()
    marked.decoder.context_norm = torch.nn.Identity()
    plain.decoder.context_norm = torch.nn.Identity()
    valid = torch.ones(h.shape[:2], dtype=torch.bool)
    shift = _context(marked, h, memory) - _context(plain, h, memory)
    per_snippet = marked.decoder.first_sight(h, valid) @ marked.decoder.first_sight_cues  # [B, W, d]
    expected = per_snippet.repeat_interleave(cfg.combiner.out_tokens, dim=1)
    memory_part = 1 + cfg.combiner.memory_tokens
    torch.testing.assert_close(shift[:, :memory_part], torch.zeros_like(shift[:, :memory_part]))
    torch.testing.assert_close(shift[:, memory_part:], expected, atol=1e-5, rtol=1e-5)


def test_a_class_is_first_seen_where_it_is_present_and_was_in_no_valid_snippet_before():
    model = make_model(_with_head(micro_config()), seed=55)
    w = model.cfg.latent.window  # 3 snippets, oldest first
    present = torch.tensor([[[0.9, 0.0, 0.2, 0.0, 0.0],
                             [0.8, 0.9, 0.6, 0.0, 0.0],
                             [0.1, 0.9, 0.5, 0.7, 0.0]]])
    model.decoder.presence_logits = lambda h: torch.logit(present.expand(h.shape[0], -1, -1))
    h = torch.zeros(2, w, model.cfg.combiner.out_tokens, model.cfg.latent.dim)
    valid = torch.tensor([[True, True, True], [False, True, True]])  # the second stream is younger
    marks = model.decoder.first_sight(h, valid)
    expected = torch.tensor([[[0.9, 0.0, 0.2, 0.0, 0.0],
                              [0.8 * 0.1, 0.9, 0.6 * 0.8, 0.0, 0.0],
                              [0.1 * 0.1, 0.9 * 0.1, 0.5 * 0.4, 0.7, 0.0]],
                             [[0.0] * 5,
                              [0.8, 0.9, 0.6, 0.0, 0.0],
                              [0.1 * 0.2, 0.9 * 0.1, 0.5 * 0.4, 0.7, 0.0]]])
    torch.testing.assert_close(marks, expected, atol=1e-5, rtol=1e-5)


def test_the_loss_counts_only_known_targets_of_real_snippets():
    cfg = _with_head(micro_config())
    cfg = dataclasses.replace(cfg, loss=LossWeights(first_sight=1.0))
    model = make_model(cfg, seed=52)
    video, audio = random_clip(cfg, 2, 3, seed=5)
    mask = torch.tensor([[True, True, True], [True, True, False]])
    targets = torch.randint(0, 2, (2, 3, CLASSES), dtype=torch.int8)
    targets[0, 1, :2] = -1
    h = model._clip_latents(video, audio)[2]
    logits = model.decoder.presence_logits(h)
    known = (targets >= 0) & mask[..., None]
    expected = F.binary_cross_entropy_with_logits(logits[known], targets[known].float())
    batch = {"presence_targets": targets}
    torch.testing.assert_close(model._first_sight_pass(batch, h, None, mask, torch.device("cpu")), expected)
    assert float(model._first_sight_pass({}, h, None, mask, torch.device("cpu")).detach()) == 0.0
    with pytest.raises(ValueError, match="presence_targets must be"):
        model._first_sight_pass({"presence_targets": targets[..., :2]}, h, None, mask, torch.device("cpu"))


def test_greedy_generation_with_first_sight_cues_matches_teacher_forcing():
    model = make_model(_with_head(micro_config()), seed=53)
    with torch.no_grad():
        model.decoder.first_sight_cues.normal_()
    assert_greedy_generation_matches_teacher_forcing(model, streamed_state(model, 5, seed=6),
                                                     "which came first, the red circle or the drum?")


def test_an_old_config_reads_without_the_head_and_keeps_its_fingerprint():
    cfg = ModelConfig.from_name("tiny")
    data = cfg.to_dict()
    del data["decoder"]["first_sight_classes"]
    del data["loss"]["first_sight"]
    old = ModelConfig.from_dict(data)
    assert old.decoder.first_sight_classes == 0 and old.loss.first_sight == 0.0
    assert old.fingerprint_dict() == cfg.fingerprint_dict() and "first_sight" not in str(old.fingerprint_dict())
    assert with_decoder(cfg, first_sight_classes=CLASSES).fingerprint_dict() != cfg.fingerprint_dict()


def test_a_first_sight_loss_without_a_head_is_refused():
    with pytest.raises(ValueError, match="decoder.first_sight_classes"):
        dataclasses.replace(micro_config(), loss=LossWeights(first_sight=0.5))


def test_the_experiments_copy_without_cues_reads_the_context_as_a_model_without_the_head():
    plain = make_model(micro_config(), seed=54)
    marked = make_model(_with_head(micro_config()), seed=54)
    marked.load_state_dict(plain.state_dict(), strict=False)
    with torch.no_grad():
        marked.decoder.first_sight_cues.normal_()
    blank = with_cues_times(marked, 0.0)
    assert float(marked.decoder.first_sight_cues.detach().abs().min()) > 0  # the original keeps its cues
    cfg = plain.cfg
    h = torch.randn(1, cfg.latent.window, cfg.combiner.out_tokens, cfg.latent.dim)
    memory = torch.randn(1, cfg.combiner.memory_tokens, cfg.combiner.dim)
    torch.testing.assert_close(_context(blank, h, memory), _context(plain, h, memory))


def test_the_head_and_its_cues_learn_faster_than_the_rest():
    model = make_model(_with_head(micro_config()), seed=56)
    groups = parameter_groups(model, 0.05)
    fast = {id(p) for g in groups if g["lr_scale"] == FAST_PART_LR_SCALE for p in g["params"]}
    named = dict(model.named_parameters())
    assert fast == {id(named[n]) for n in ("decoder.first_sight_head.weight", "decoder.first_sight_head.bias",
                                           "decoder.first_sight_cues")}
    assert sum(len(g["params"]) for g in groups) == len(named)
    assert len(parameter_groups(make_model(micro_config()), 0.05)) == 2  # a model without the head: as before
