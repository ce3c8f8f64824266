"""The first-sight tokens' company: each token also carries what the first-sight head found
present where its thing was first seen and one snippet later. A fresh projection changes
nothing, so it can grow over a trained checkpoint; the features are the mark-weighted presence
there; the answer loss trains the projection; streaming generation reads the same tokens as
teacher forcing; drills (no snippets) leave it out."""

from __future__ import annotations

import pytest
import torch

from model import ModelConfig
from model.decoder import TextDecoder
from model_helpers import (
    assert_greedy_generation_matches_teacher_forcing,
    make_model,
    micro_config,
    random_clip,
    streamed_state,
    with_decoder,
)

CLASSES = 5
QUESTION = "what sound did the red circle make?"


def _model(seed: int, company: bool = True):
    cfg = with_decoder(micro_config(), first_sight_classes=CLASSES, first_sight_tokens=True,
                       first_sight_company=company)
    cfg.validate()
    return make_model(cfg, seed=seed)


def _batch(model):
    video, audio = random_clip(model.cfg, 2, 4, seed=5)
    questions = [[(QUESTION, "drum", 3), ("what color is the square?", "blue", 2)], [(QUESTION, "beep", 4)]]
    return dict(video=video, audio=audio, **model.encode_batch_questions(questions))


def test_a_fresh_company_projection_leaves_the_answers_as_they_were():
    plain, grown = _model(seed=81, company=False), _model(seed=81)
    missing, unexpected = grown.load_state_dict(plain.state_dict(), strict=False)
    assert missing == ["decoder.first_sight_company"] and not unexpected
    assert not grown.decoder.first_sight_company.any()  # the model's initialisation leaves it at zero
    batch = _batch(plain)
    with torch.no_grad():
        torch.testing.assert_close(grown(batch).answer_logits, plain(batch).answer_logits)


def test_company_is_the_mark_weighted_presence_at_the_first_sight_and_one_snippet_later():
    # one clip, 4 snippets, 3 classes: class 0 (a shape) first seen at snippet 1, where class 2 (a
    # sound) plays; class 2 plays again at 3; class 1 is never seen.
    present = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]])
    marks = TextDecoder.first_sight_marks(present)
    torch.testing.assert_close(marks[0, :, 0], torch.tensor([0.0, 1.0, 0.0, 0.0]))
    company = TextDecoder.company(marks, present)
    assert company.shape == (1, 3, 6)
    torch.testing.assert_close(company[0, 0], torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 0.0]))  # then, one later
    torch.testing.assert_close(company[0, 2], torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 0.0]))
    assert not company[0, 1].any()  # never seen: no company
    # the last snippet has no later one: its second half reads as nothing present
    last = torch.tensor([[[0.0], [1.0]]])
    torch.testing.assert_close(TextDecoder.company(TextDecoder.first_sight_marks(last), last)[0, 0],
                               torch.tensor([1.0, 0.0]))


def test_the_answer_loss_trains_the_projection_and_not_the_presence_through_it():
    model = _model(seed=82).train()
    out = model(_batch(model))
    (grad_company,) = torch.autograd.grad(out.text_loss, model.decoder.first_sight_company)
    assert grad_company.abs().sum() > 0
    decoder = model.decoder
    decoder.context_norm = torch.nn.Identity()  # so that the company's share of the context is a difference
    with torch.no_grad():
        decoder.first_sight_company.normal_()
    h = torch.randn(1, model.cfg.latent.window, model.cfg.combiner.out_tokens, model.cfg.latent.dim)
    valid = torch.ones(1, model.cfg.latent.window, dtype=torch.bool)
    memory = torch.randn(1, decoder.memory_tokens, model.cfg.combiner.dim)
    with_company, _ = decoder.context(memory, h, valid)
    weights = decoder.first_sight_company.detach().clone()
    with torch.no_grad():
        decoder.first_sight_company.zero_()
    without, _ = decoder.context(memory, h, valid)
    assert (with_company - without).abs().max() > 0
    (grad_head,) = torch.autograd.grad((with_company - without).pow(2).sum(), decoder.first_sight_head.weight)
    assert grad_head.abs().max() == 0
    assert weights.any()


def test_greedy_generation_with_company_matches_teacher_forcing():
    model = _model(seed=83)
    with torch.no_grad():
        model.decoder.first_sight_company.normal_(std=0.5)
        model.decoder.first_sight_head.bias.fill_(1.0)  # things seen, so their tokens have company
    assert_greedy_generation_matches_teacher_forcing(model, streamed_state(model, 5, seed=9), QUESTION)


def test_drill_tokens_have_no_company():
    model = _model(seed=84)
    with torch.no_grad():
        model.decoder.first_sight_company.normal_()
    marks = torch.zeros(1, model.cfg.latent.window, CLASSES)
    marks[0, 1, 2] = 1.0
    plain = _model(seed=84, company=False)
    plain.load_state_dict(model.state_dict(), strict=False)
    torch.testing.assert_close(model.decoder.first_sight_summary(marks), plain.decoder.first_sight_summary(marks))


def test_company_needs_the_tokens_and_old_configs_read_without_it():
    with pytest.raises(ValueError, match="first_sight_tokens"):
        with_decoder(micro_config(), first_sight_classes=CLASSES, first_sight_company=True).validate()
    cfg = with_decoder(micro_config(), first_sight_classes=CLASSES, first_sight_tokens=True)
    data = cfg.to_dict()
    del data["decoder"]["first_sight_company"]
    old = ModelConfig.from_dict(data)
    assert old.decoder.first_sight_company is False
    assert old.fingerprint_dict() == cfg.fingerprint_dict() and "first_sight_company" not in str(old.fingerprint_dict())
    assert with_decoder(cfg, first_sight_company=True).fingerprint_dict() != cfg.fingerprint_dict()
