"""The alignment head: its loss, its two embedders, and streaming = offline for snippet vectors."""

from __future__ import annotations

import json

import pytest
import torch

from model import ModelConfig, StreamerModel
from model.align import FALSE, TRUE, UNCLEAR
from tests.model.model_helpers import make_model, micro_config, random_clip


def _unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x, dim=-1)


def test_the_loss_is_lowest_when_each_snippet_meets_its_own_phrases():
    head = make_model(micro_config()).align
    texts = _unit(torch.randn(4, head.cfg.dim))
    targets = torch.tensor([[TRUE, FALSE, FALSE, FALSE], [FALSE, TRUE, TRUE, FALSE]], dtype=torch.int8)
    aligned = _unit(torch.stack([texts[0], texts[1] + texts[2]]))
    crossed = _unit(torch.stack([texts[3], texts[0]]))
    assert head.loss(aligned, texts, targets) < head.loss(crossed, texts, targets)


def test_unclear_pairs_take_no_part_and_never_make_nan():
    head = make_model(micro_config()).align
    snippets = _unit(torch.randn(3, head.cfg.dim)).requires_grad_()
    texts = _unit(torch.randn(4, head.cfg.dim))
    targets = torch.tensor([[TRUE, FALSE, UNCLEAR, FALSE], [UNCLEAR] * 4, [FALSE, TRUE, FALSE, UNCLEAR]],
                           dtype=torch.int8)
    loss = head.loss(snippets, texts, targets)
    loss.backward()
    assert torch.isfinite(snippets.grad).all()
    keep = [0, 1, 2]
    alone = head.loss(snippets.detach(), texts[keep], targets[:, keep])
    texts_moved = texts.clone()
    texts_moved[3] = -texts_moved[3]
    # a column that is unclear everywhere it matters cannot change the loss
    only_unclear = targets.clone()
    only_unclear[:, 3] = UNCLEAR
    a = head.loss(snippets.detach(), texts, only_unclear)
    b = head.loss(snippets.detach(), texts_moved, only_unclear)
    assert torch.allclose(a, b)
    assert torch.allclose(a, alone)


def test_no_true_pair_gives_a_zero_loss_with_a_gradient_path():
    head = make_model(micro_config()).align
    snippets = _unit(torch.randn(2, head.cfg.dim)).requires_grad_()
    loss = head.loss(snippets, _unit(torch.randn(3, head.cfg.dim)), torch.zeros(2, 3, dtype=torch.int8))
    assert float(loss.detach()) == 0.0
    loss.backward()


def test_snippet_vectors_stream_exactly_as_the_clip_computes_them():
    cfg = micro_config()
    model = make_model(cfg)
    video, audio = random_clip(cfg, 1, 6)
    offline = model.embed_clip(video, audio)[0]
    state = model.init_state(1)
    for t in range(6):
        state = model.step(state, video[:, t], audio[:, t])
        torch.testing.assert_close(model.embed_snippet(state)[0], offline[t], rtol=1e-4, atol=1e-5)
    assert torch.allclose(offline.norm(dim=-1), torch.ones(6))


def test_phrases_are_read_in_lower_case_and_refused_when_empty_or_too_long():
    model = make_model(micro_config())
    a, b = model.embed_text(["Red Square", "  red square "])
    torch.testing.assert_close(a, b)
    assert not torch.allclose(*model.embed_text(["red square", "blue square"]))
    with pytest.raises(ValueError, match="empty"):
        model.embed_text([" "])
    with pytest.raises(ValueError, match="at most 64 bytes"):
        model.embed_text(["x" * 65])


def test_a_checkpoint_from_before_the_head_loads_without_one_and_keeps_its_fingerprint(tmp_path):
    cfg = micro_config()
    old = ModelConfig.from_dict({**{k: v for k, v in cfg.to_dict().items() if k != "align"},
                                 "loss": {k: v for k, v in cfg.to_dict()["loss"].items() if k != "align"}})
    assert old.align.dim == 0 and old.loss.align == 0.0
    model = make_model(old)
    assert model.align is None and not model.can_align
    with pytest.raises(ValueError, match="no alignment head"):
        model.embed_text(["drum"])
    # the fingerprint hashes the config as it was before the head existed
    assert "align" not in old.fingerprint_dict() and "align" not in old.fingerprint_dict()["loss"]
    model.save(tmp_path / "ckpt")
    data = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert StreamerModel.load(tmp_path / "ckpt").fingerprint() == model.fingerprint()
    assert data["align"]["dim"] == 0


def test_the_tiny_preset_has_a_head_and_a_threshold_in_range():
    cfg = ModelConfig.from_name("tiny")
    assert cfg.align.dim > 0 and 0 < cfg.align.watch_threshold < 1
    with pytest.raises(ValueError, match="watch_threshold"):
        ModelConfig.from_dict({**cfg.to_dict(), "align": {**cfg.to_dict()["align"], "watch_threshold": 1.5}})
