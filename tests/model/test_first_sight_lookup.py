"""The first-sight lookup: every decoder layer adds the cross-attention values of the first-sight
tokens of the classes its question names, each weighted by σ of the pointer's logit, through a
projection that starts at zero. A fresh lookup changes nothing, so it can grow over a trained
checkpoint; it reads exactly the named tokens' values and nothing the mask hides; streaming
generation reads the same as teacher forcing; text loss trains the projection, not the pointer."""

from __future__ import annotations

import pytest
import torch

from model.decoder import _looked_up
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


def _model(seed: int, lookup: bool = True):
    cfg = with_decoder(micro_config(), first_sight_classes=CLASSES, first_sight_tokens=True,
                       first_sight_company=True, first_sight_pointer=True, first_sight_lookup=lookup)
    cfg.validate()
    model = make_model(cfg, seed=seed)
    with torch.no_grad():
        model.decoder.first_sight_head.bias.fill_(2.0)  # things seen, so their tokens carry something
        model.decoder.first_sight_company.normal_()
    return model


def _batch(model):
    video, audio = random_clip(model.cfg, 2, 4, seed=5)
    questions = [[(QUESTION, "drum", 4), ("what color is the square?", "blue", 3)], [(QUESTION, "silence", 2)]]
    return dict(video=video, audio=audio, **model.encode_batch_questions(questions))


def test_a_fresh_lookup_leaves_the_answers_as_they_were():
    plain, looking = _model(seed=101, lookup=False), _model(seed=101)
    missing, unexpected = looking.load_state_dict(plain.state_dict(), strict=False)
    assert missing == ["decoder.first_sight_lookup"] and not unexpected
    assert not looking.decoder.first_sight_lookup.any()
    batch = _batch(plain)
    with torch.no_grad():
        torch.testing.assert_close(looking(batch).answer_logits, plain(batch).answer_logits)
        looking.decoder.first_sight_lookup.normal_(std=0.1)
        assert not torch.allclose(looking(batch).answer_logits, plain(batch).answer_logits)


def test_it_reads_the_named_tokens_values_and_nothing_the_mask_hides():
    b, heads, head_dim, first = 2, 2, 3, 4
    values = torch.randn(b, heads, first + CLASSES + 6, head_dim)
    lookup = torch.randn(heads * head_dim, heads * head_dim)
    names = torch.full((b, 3, CLASSES), -30.0)  # nothing named ...
    names[0, 1, 2] = names[1, 2, 4] = 30.0  # ... but class 2 at row 0's second query, class 4 at row 1's third
    mask = torch.ones(b, values.shape[2], dtype=torch.bool)
    out = _looked_up(names, values, mask, first, lookup)
    token = values.transpose(1, 2).reshape(b, values.shape[2], -1)  # a context token's values, heads side by side
    torch.testing.assert_close(out[0, 1], token[0, first + 2] @ lookup)
    torch.testing.assert_close(out[1, 2], token[1, first + 4] @ lookup)
    torch.testing.assert_close(out[0, 0], torch.zeros(heads * head_dim), atol=1e-9, rtol=0)
    names[0, 1, 0] = 0.0  # a class half named weighs half
    torch.testing.assert_close(_looked_up(names, values, mask, first, lookup)[0, 1],
                               (token[0, first + 2] + 0.5 * token[0, first]) @ lookup)
    mask[0, first + 2] = False  # the tokens hidden from a question (first_sight_readout's parts) stay unread
    torch.testing.assert_close(_looked_up(names, values, mask, first, lookup)[0, 1], 0.5 * token[0, first] @ lookup)


def test_greedy_generation_with_a_lookup_matches_teacher_forcing():
    model = _model(seed=102)
    with torch.no_grad():
        model.decoder.first_sight_pointer.normal_(std=0.5)
        model.decoder.first_sight_lookup.normal_(std=0.2)
    assert_greedy_generation_matches_teacher_forcing(model, streamed_state(model, 5, seed=9), QUESTION)


def test_the_answer_loss_trains_the_projection_and_leaves_the_pointer_to_its_own_loss():
    model = _model(seed=103)
    with torch.no_grad():
        model.decoder.first_sight_pointer.normal_(std=0.5)
        model.decoder.first_sight_lookup.normal_(std=0.2)
        model.decoder.first_sight_pointer_gains.zero_()  # no score bias: only the lookup could move the pointer
    model(_batch(model)).text_loss.backward()
    assert model.decoder.first_sight_lookup.grad.abs().sum() > 0
    assert model.decoder.first_sight_pointer.grad is None or not model.decoder.first_sight_pointer.grad.any()


def test_the_lookup_needs_the_pointer_and_old_configs_read_without_it():
    with pytest.raises(ValueError, match="set decoder.first_sight_pointer"):
        with_decoder(micro_config(), first_sight_classes=CLASSES, first_sight_tokens=True,
                     first_sight_lookup=True).validate()
    cfg = with_decoder(micro_config(), first_sight_classes=CLASSES, first_sight_tokens=True, first_sight_pointer=True)
    data = cfg.to_dict()
    del data["decoder"]["first_sight_lookup"]
    old = type(cfg).from_dict(data)
    assert old.decoder.first_sight_lookup is False and old.fingerprint_dict() == cfg.fingerprint_dict()
