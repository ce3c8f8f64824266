"""The first-sight pointer: each decoder query gives a logit per first-sight class that its
question names it, and each head adds its gain times log σ(logit) − log σ(POINTER_PRIOR) to that
class's token. A fresh pointer changes nothing, so it can grow over a trained checkpoint; a
logit weights its token by exactly that factor; streaming generation reads the same scores as
teacher forcing; its loss is the binary cross-entropy at the answer positions, and the targets
are the classes a question names word for word."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from model import ModelConfig
from model.decoder import LOG_PRIOR, POINTER_PRIOR, READ_HEAD
from model_helpers import (
    assert_greedy_generation_matches_teacher_forcing,
    make_model,
    micro_config,
    random_clip,
    streamed_state,
    teacher_forced_rows,
    with_decoder,
)
from training.data import SampleQuestion
from training.drills import draw_drills, drill_batch
from training.samples import named_classes
from training.world.first_sight import FIRST_SIGHT_CLASSES, names_in

CLASSES = 5
QUESTION = "which came first, the red circle or the drum?"


def _model(seed: int, pointer: bool = True, weight: float = 0.0):
    cfg = with_decoder(micro_config(), first_sight_classes=CLASSES, first_sight_tokens=True, age_slopes=True,
                       length_scale=True, first_sight_age_slopes=True, first_sight_pointer=pointer)
    cfg.loss.first_sight_pointer = weight
    cfg.validate()
    return make_model(cfg, seed=seed)


def _batch(model, names: bool = True):
    video, audio = random_clip(model.cfg, 2, 4, seed=5)
    questions = [[(QUESTION, "red circle", 4), ("what color is the square?", "blue", 3)], [(QUESTION, "drum", 2)]]
    batch = dict(video=video, audio=audio, **model.encode_batch_questions(questions))
    if names:
        named = torch.zeros(2, 2, CLASSES, dtype=torch.bool)
        named[0, 0, [0, 3]] = named[1, 0, [0, 3]] = True  # "red circle" and "drum" in a 5-class model
        batch["first_sight_names"] = named
    return batch


def test_a_fresh_pointer_leaves_the_answers_as_they_were():
    plain, pointed = _model(seed=91, pointer=False), _model(seed=91)
    missing, unexpected = pointed.load_state_dict(plain.state_dict(), strict=False)
    assert sorted(missing) == ["decoder.first_sight_pointer", "decoder.first_sight_pointer_bias",
                               "decoder.first_sight_pointer_gains"] and not unexpected
    batch = _batch(plain, names=False)
    with torch.no_grad():
        torch.testing.assert_close(pointed(batch).answer_logits, plain(batch).answer_logits)


def test_a_logit_weights_its_token_by_the_gain_times_its_log_sigmoid():
    model = _model(seed=92)
    batch = _batch(model, names=False)
    _, ids, _, context, mask = teacher_forced_rows(model, batch)
    positions = torch.arange(ids.shape[1])[None]
    cross_kv = model.decoder.cross_kv(context)
    ages = torch.tensor([[0.0, 1.0, 2.0, 0.5, 0.0]]).expand(ids.shape[0], -1)
    logits = torch.tensor([4.0, -6.0, POINTER_PRIOR, 0.0, -2.0])
    with torch.no_grad():
        _, _, before = model.decoder(ids, positions, None, cross_kv, mask, read=True, token_ages=ages)
        model.decoder.first_sight_pointer_bias[-1] = logits  # the earlier layers keep the prior: no change there
        model.decoder.first_sight_pointer_gains[-1, READ_HEAD] = 1.5
        _, _, after, names = model.decoder(ids, positions, None, cross_kv, mask, read=True, token_ages=ages,
                                           names=True)
    first = 1 + model.cfg.combiner.memory_tokens
    tokens = slice(first, first + CLASSES)
    gain = (after[..., tokens] / before[..., tokens]) / (after[..., :1] / before[..., :1])  # against the null token
    expected = torch.exp(1.5 * (F.logsigmoid(logits) - LOG_PRIOR)).expand_as(gain)
    torch.testing.assert_close(gain, expected, atol=1e-4, rtol=1e-4)
    assert names.shape == (model.cfg.decoder.layers, ids.shape[0], ids.shape[1], CLASSES)
    torch.testing.assert_close(names[-1], logits.expand_as(names[-1]))
    assert LOG_PRIOR == pytest.approx(math.log(1 / (1 + math.exp(-POINTER_PRIOR))))


def test_greedy_generation_with_a_pointer_matches_teacher_forcing():
    model = _model(seed=93)
    with torch.no_grad():
        model.decoder.first_sight_pointer.normal_(std=0.5)
        model.decoder.first_sight_pointer_gains.normal_(mean=1.0)
        model.decoder.first_sight_head.bias.fill_(2.0)  # things seen, so their tokens count
    assert_greedy_generation_matches_teacher_forcing(model, streamed_state(model, 5, seed=9), QUESTION)


def test_the_loss_is_the_cross_entropy_of_every_layers_logits_at_the_answer_positions():
    model = _model(seed=94, weight=0.5)
    with torch.no_grad():
        model.decoder.first_sight_pointer.normal_(std=0.3)
    batch = _batch(model)
    with torch.no_grad():
        out = model(batch)
        rows, ids, answer_at, context, mask = teacher_forced_rows(model, batch)
        ages = model.decoder.token_ages(*model._windows(out.hidden, rows[0], batch["ask_snippets"][rows]))
        *_, names = model.decoder(ids, torch.arange(ids.shape[1])[None], None, model.decoder.cross_kv(context),
                                  mask, token_ages=ages, names=True)
    terms = []
    for n, (am, targets) in enumerate(zip(batch["answer_mask"][rows], batch["first_sight_names"][rows])):
        at = answer_at[n][am]
        logits = names[:, n, at]  # [layers, tokens, classes]
        terms.append(F.binary_cross_entropy_with_logits(logits, targets.float().expand_as(logits), reduction="none")
                     .transpose(0, 1).reshape(len(at), -1))
    expected = torch.cat(terms).mean()
    torch.testing.assert_close(out.first_sight_pointer_loss, expected, atol=1e-5, rtol=1e-5)
    unweighted = _model(seed=94)
    unweighted.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(out.loss - 0.5 * out.first_sight_pointer_loss, unweighted(batch).loss)
    with torch.no_grad():
        assert float(model(_batch(model, names=False)).first_sight_pointer_loss) == 0.0


def test_training_on_the_loss_finds_the_named_classes_and_weights_the_others_down():
    model = _model(seed=95, weight=1.0).train()
    batch = _batch(model)
    optimizer = torch.optim.Adam(model.decoder.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        loss = model(batch).first_sight_pointer_loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0], losses
    _, ids, _, context, mask = teacher_forced_rows(model, batch)
    with torch.no_grad():
        *_, names = model.decoder(ids, torch.arange(ids.shape[1])[None], None, model.decoder.cross_kv(context),
                                  mask, token_ages=torch.zeros(ids.shape[0], CLASSES), names=True)
    last = names[-1, 0, -1]  # the first question's last answer position
    assert last[[0, 3]].min() > last[[1, 2, 4]].max()


def test_the_pointer_needs_the_tokens_its_loss_the_pointer_and_old_configs_read_without_it():
    with pytest.raises(ValueError, match="first_sight_tokens"):
        with_decoder(micro_config(), first_sight_classes=CLASSES, first_sight_pointer=True).validate()
    cfg = with_decoder(micro_config(), first_sight_classes=CLASSES, first_sight_tokens=True)
    cfg.loss.first_sight_pointer = 0.5
    with pytest.raises(ValueError, match="set decoder.first_sight_pointer"):
        cfg.validate()
    cfg = with_decoder(micro_config(), first_sight_classes=CLASSES, first_sight_tokens=True)
    data = cfg.to_dict()
    del data["decoder"]["first_sight_pointer"], data["loss"]["first_sight_pointer"]
    old = ModelConfig.from_dict(data)
    assert old.decoder.first_sight_pointer is False and old.loss.first_sight_pointer == 0.0


def test_without_a_pointer_asking_for_its_logits_is_an_error():
    model = _model(seed=96, pointer=False)
    _, ids, _, context, mask = teacher_forced_rows(model, _batch(model, names=False))
    with pytest.raises(ValueError, match="first_sight_pointer"):
        model.decoder(ids, torch.arange(ids.shape[1])[None], None, model.decoder.cross_kv(context), mask,
                      token_ages=torch.zeros(ids.shape[0], CLASSES), names=True)


def test_the_targets_are_the_classes_a_question_names_word_for_word():
    def q(text):
        return SampleQuestion(text=text, answer="x", ask_snippets=1, kind="order")
    names = named_classes([[q("Which came first, the red circle or the blue square?"), q("what color is the square?")],
                           [q("what sound did the green cross make?")]], 3)
    assert names.shape == (2, 3, len(FIRST_SIGHT_CLASSES))

    def named(i, j):
        return [FIRST_SIGHT_CLASSES[c] for c in names[i, j].nonzero().flatten().tolist()]
    assert named(0, 0) == ["red circle", "blue square"]
    assert named(0, 1) == [] and named(1, 0) == ["green cross"] and named(1, 1) == [] and named(0, 2) == []
    sound = FIRST_SIGHT_CLASSES[-1]
    assert named_classes([[q(f"which came first, the {sound} or the red crosses?")]], 1)[0, 0].nonzero().flatten(
    ).tolist() == [len(FIRST_SIGHT_CLASSES) - 1]


def test_drills_teach_the_pointer_too():
    """The drills name their two classes (drill_names); the pointer loss is the mean of the
    cross-entropy terms of the clip questions' and the drills' answer positions alike."""
    cfg = with_decoder(micro_config(), first_sight_classes=len(FIRST_SIGHT_CLASSES), first_sight_tokens=True,
                       first_sight_pointer=True)
    cfg = dataclasses.replace(cfg, latent=dataclasses.replace(cfg.latent, window=8))
    model = make_model(cfg, seed=97)
    with torch.no_grad():
        model.decoder.first_sight_pointer.normal_(std=0.3)
    drills = draw_drills(3, 8, torch.Generator().manual_seed(2))
    batch = drill_batch(model, drills)
    torch.testing.assert_close(batch["drill_names"], names_in([q for q, _ in drills.asked]))
    assert batch["drill_names"].sum(-1).tolist() == [2, 2, 2]  # "which came first, the A or the B?"
    video, audio = random_clip(cfg, 2, 4, seed=5)
    batch.update(video=video, audio=audio, **model.encode_batch_questions([[(QUESTION, "drum", 4)]] * 2))
    batch["first_sight_names"] = names_in([QUESTION, QUESTION])[:, None]
    with torch.no_grad():
        out = model(batch)
        _, drill_terms = model._drill_pass(batch, torch.device("cpu"))
        del batch["drill_marks"]
        clip_only = model(batch).first_sight_pointer_loss
    a_mask = batch["drill_answer_mask"]
    assert drill_terms.numel() == cfg.decoder.layers * int(a_mask.sum()) * len(FIRST_SIGHT_CLASSES)
    clip_terms = int(batch["answer_mask"].sum()) * cfg.decoder.layers * len(FIRST_SIGHT_CLASSES)
    expected = (clip_only * clip_terms + drill_terms.sum()) / (clip_terms + drill_terms.numel())
    torch.testing.assert_close(out.first_sight_pointer_loss, expected)
