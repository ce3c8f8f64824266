"""First-sight drills (training.drills): `order` questions over exact first-sight marks, or over the
marks the head makes of a batch's own clips, answered by the decoder from the null token and the
first-sight tokens alone (`StreamerModel.drill_logits`)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from model import StreamerModel
from model_helpers import make_model, micro_config, random_clip, with_decoder
from training.drills import (SHAPE_CLASSES, clip_drill_batch, draw_clip_drills, drill_batch, draw_drills, first_sights,
                             lured)
from training.world.first_sight import ABSENT, FIRST_SIGHT_CLASSES, PRESENT, UNKNOWN
from training.world.vocab import SOUNDS

WINDOW = 8


def _model(seed: int, **decoder) -> StreamerModel:
    cfg = with_decoder(micro_config(), first_sight_classes=len(FIRST_SIGHT_CLASSES), first_sight_tokens=True,
                       **decoder)
    cfg = dataclasses.replace(cfg, latent=dataclasses.replace(cfg.latent, window=WINDOW))
    return make_model(cfg, seed=seed)


def test_a_drill_asks_which_of_two_things_of_one_sort_was_first_seen_longer_ago():
    drills = draw_drills(200, WINDOW, torch.Generator().manual_seed(1))
    assert drills.marks.shape == (200, WINDOW, len(FIRST_SIGHT_CLASSES))
    assert set(drills.marks.unique().tolist()) == {0.0, 1.0} and (drills.marks.sum(1) <= 1).all()
    sorts = set()
    for marks, (question, answer), gap in zip(drills.marks, drills.asked, drills.gaps):
        a, b = question.rsplit(", the ", 1)[1].rstrip("?").split(" or the ")
        age = {name: WINDOW - 1 - int(marks[:, FIRST_SIGHT_CLASSES.index(name)].argmax())
               for name in (a, b) if marks[:, FIRST_SIGHT_CLASSES.index(name)].any()}
        assert len(age) == 2, question  # both named things were seen
        assert answer == max(age, key=age.get) and gap == abs(age[a] - age[b]) > 0
        assert (a in SOUNDS) == (b in SOUNDS) and (a in SHAPE_CLASSES or a in SOUNDS)
        sorts.add(a in SOUNDS)
    assert sorts == {True, False}
    again = draw_drills(200, WINDOW, torch.Generator().manual_seed(1))
    assert again.asked == drills.asked and torch.equal(again.marks, drills.marks)
    with pytest.raises(ValueError, match="at least"):
        draw_drills(1, 3, torch.Generator())


@pytest.mark.parametrize("decoder", [{}, {"first_sight_age_slopes": True, "age_slopes": True}])
def test_drill_logits_are_the_decoders_reading_a_context_whose_tokens_hold_the_marks(decoder):
    """The same logits as a context built by TextDecoder.context, its first-sight tokens replaced by
    the summary of the drill's marks and every other token but the null one masked."""
    model = _model(71, **decoder)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "slopes" in name:
                p.normal_()
    drills = draw_drills(3, WINDOW, torch.Generator().manual_seed(2))
    batch = drill_batch(model, drills)
    q_ids, q_mask = batch["drill_question_ids"], batch["drill_question_mask"]
    a_ids, a_mask = batch["drill_answer_ids"], batch["drill_answer_mask"]
    with torch.no_grad():
        logits = model.drill_logits(drills.marks, q_ids, q_mask, a_ids, a_mask)
        decoder = model.decoder
        cfg = model.cfg
        h = torch.randn(3, WINDOW, cfg.combiner.out_tokens, cfg.latent.dim)
        memory = torch.randn(3, cfg.combiner.memory_tokens, cfg.combiner.dim)
        context, mask = decoder.context(memory, h, torch.ones(3, WINDOW, dtype=torch.bool))
        parts = decoder.context_parts(context.shape[1])
        context[:, parts["tokens"]] = decoder.context_norm(decoder.first_sight_summary(drills.marks))
        mask = mask & (parts["tokens"] | (torch.arange(context.shape[1]) == 0))[None]
        ages = decoder.first_sight_ages(drills.marks) * (WINDOW - 1) if decoder.cfg.decoder.first_sight_age_slopes else None
        ids, answer_at = model._pack_questions(q_ids, q_mask, a_ids, a_mask)
        expected, _ = decoder(ids, torch.arange(ids.shape[1])[None], None, decoder.cross_kv(context), mask,
                              token_ages=ages)
        expected = expected.gather(1, answer_at[..., None].expand(-1, -1, expected.shape[-1]))
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)


def test_the_forward_pass_adds_the_drills_to_the_text_loss_and_training_lowers_it():
    model = _model(72).train()
    drills = draw_drills(16, WINDOW, torch.Generator().manual_seed(3))
    batch = drill_batch(model, drills)
    cfg = model.cfg
    video, audio = random_clip(cfg, 2, 4, seed=5)
    batch.update(video=video, audio=audio, **model.encode_batch_questions([[("what color is the square?", "red", 2)]] * 2))
    out = model(batch)
    assert out.drill_loss.item() > 0
    torch.testing.assert_close(out.loss, cfg.loss.text * (out.text_loss + out.drill_loss)
                               + cfg.loss.latent * out.latent_loss + cfg.loss.video * out.video_loss
                               + cfg.loss.align * out.align_loss)
    optimizer = torch.optim.AdamW(model.decoder.parameters(), lr=3e-3)
    first = out.drill_loss.item()
    for _ in range(30):
        loss, _ = model._drill_pass(batch, torch.device("cpu"))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert model(batch).drill_loss.item() < 0.5 * first
    assert model({k: v for k, v in batch.items() if not k.startswith("drill_")}).drill_loss.item() == 0.0


def test_drills_need_first_sight_tokens_and_the_models_window():
    model = _model(73)
    drills = draw_drills(2, WINDOW + 1, torch.Generator().manual_seed(4))
    batch = drill_batch(model, drills)
    with pytest.raises(ValueError, match=f"\\[N, {WINDOW}, {len(FIRST_SIGHT_CLASSES)}\\]"):
        model.drill_logits(drills.marks, batch["drill_question_ids"], batch["drill_question_mask"],
                           batch["drill_answer_ids"], batch["drill_answer_mask"])
    plain = make_model(with_decoder(micro_config(), first_sight_classes=len(FIRST_SIGHT_CLASSES)))
    with pytest.raises(ValueError, match="--first-sight-tokens"):
        plain.drill_logits(drills.marks, batch["drill_question_ids"], batch["drill_question_mask"],
                           batch["drill_answer_ids"], batch["drill_answer_mask"])


def _presence(length: int, firsts: dict[str, int], unknown: dict[str, int] = {}) -> torch.Tensor:
    """Presence targets [length, classes]: each named class present from its first snippet on,
    unknown in the snippets `unknown` names, absent elsewhere."""
    presence = torch.full((length, len(FIRST_SIGHT_CLASSES)), ABSENT, dtype=torch.int8)
    for name, first in firsts.items():
        presence[first:, FIRST_SIGHT_CLASSES.index(name)] = PRESENT
    for name, at in unknown.items():
        presence[at, FIRST_SIGHT_CLASSES.index(name)] = UNKNOWN
    return presence


def test_a_clip_drill_names_two_things_of_one_sort_first_surely_seen_in_the_window():
    presence = _presence(10, {"red circle": 1, "blue square": 4, "green triangle": 6, SOUNDS[0]: 2, SOUNDS[1]: 7},
                         unknown={"green triangle": 3})
    # the triangle was unclear before it was present; nothing seen at or after the ask counts
    assert first_sights(presence, 7, WINDOW) == {"red circle": 1, "blue square": 4, SOUNDS[0]: 2}
    # with the window's 3 snippets before snippet 7 (4, 5, 6), the circle and the drum were seen before it
    assert first_sights(presence, 7, 3) == {"blue square": 4}

    batch = torch.stack((presence, _presence(10, {"red circle": 0})))  # the second clip has no pair
    drills = draw_clip_drills(batch, torch.tensor([10, 10]), 50, WINDOW, torch.Generator().manual_seed(5))
    assert len(drills.asked) > 20 and set(drills.rows.tolist()) == {0}
    sorts = set()
    for ask, (question, answer), gap in zip(drills.asks.tolist(), drills.asked, drills.gaps):
        seen = first_sights(presence, ask, WINDOW)
        a, b = question.rsplit(", the ", 1)[1].rstrip("?").split(" or the ")
        assert a in seen and b in seen and (a in SOUNDS) == (b in SOUNDS)
        assert answer == min((a, b), key=seen.get) and gap == abs(seen[a] - seen[b]) > 0
        sorts.add(a in SOUNDS)
    assert sorts == {True, False}
    assert draw_clip_drills(batch[1:], torch.tensor([10]), 5, WINDOW, torch.Generator()).asked == []
    assert clip_drill_batch(make_model(micro_config()), draw_clip_drills(batch[1:], torch.tensor([10]), 5, WINDOW,
                                                                         torch.Generator())) == {}


def test_lured_pairs_have_a_look_alike_of_the_newer_seen_before_both():
    seen = {"blue circle": 0, "red square": 2, "red circle": 5, "green triangle": 7, SOUNDS[0]: 1, SOUNDS[1]: 3}
    assert lured("red square", "red circle", seen)  # the blue circle, a circle, came before both
    assert lured("red circle", "red square", seen)  # either order of naming
    assert not lured("blue circle", "red circle", seen)  # the look-alike is the older one itself
    assert not lured("red square", "green triangle", seen)  # nothing green or a triangle before
    assert not lured(SOUNDS[0], SOUNDS[1], seen)
    presence = _presence(10, {"blue circle": 0, "red square": 2, "red circle": 5, "green triangle": 7})
    lengths = torch.tensor([10])
    plain = draw_clip_drills(presence[None], lengths, 400, WINDOW, torch.Generator().manual_seed(3))
    again = draw_clip_drills(presence[None], lengths, 400, WINDOW, torch.Generator().manual_seed(3), lure_share=0.0)
    assert plain.asked == again.asked  # at 0, the draws are as before the option
    lure = draw_clip_drills(presence[None], lengths, 400, WINDOW, torch.Generator().manual_seed(3), lure_share=1.0)

    def lured_share(drills) -> float:
        """Of the drills asked at snippets 6-8, when the window holds the blue circle and both red
        shapes (the only lured pair), the share that ask about the lured pair."""
        flags = [lured(*q.rsplit(", the ", 1)[1].rstrip("?").split(" or the "), first_sights(presence, ask, WINDOW))
                 for (q, _), ask in zip(drills.asked, drills.asks.tolist()) if 6 <= ask <= 8]
        assert len(flags) > 50
        return sum(flags) / len(flags)

    assert lured_share(lure) == 1.0 and lured_share(plain) < 0.4


def test_clip_drills_read_the_heads_marks_of_their_clips_window():
    model = _model(74).eval()
    cfg = model.cfg
    video, audio = random_clip(cfg, 2, 6, seed=6)
    presence = torch.stack((_presence(6, {"red circle": 0, "blue square": 3}),
                            _presence(6, {SOUNDS[0]: 1, SOUNDS[2]: 2})))
    drills = draw_clip_drills(presence, torch.tensor([6, 6]), 4, WINDOW, torch.Generator().manual_seed(7))
    batch = clip_drill_batch(model, drills)
    batch.update(video=video, audio=audio, **model.encode_batch_questions([[("what color is the square?", "red", 2)]] * 2))
    with torch.no_grad():
        out = model(batch)
        h = out.hidden[drills.rows]
        chunks = drills.asks[:, None] - WINDOW + torch.arange(WINDOW)
        h_valid = chunks >= 0
        marks = model.decoder.first_sight(h[torch.arange(len(h))[:, None], chunks.clamp(min=0)], h_valid)
        logits = model.drill_logits(marks, batch["clip_drill_question_ids"], batch["clip_drill_question_mask"],
                                    batch["clip_drill_answer_ids"], batch["clip_drill_answer_mask"])
        mask = batch["clip_drill_answer_mask"]
        expected = torch.nn.functional.cross_entropy(logits[mask], batch["clip_drill_answer_ids"][mask])
    torch.testing.assert_close(out.clip_drill_loss, expected)
    torch.testing.assert_close(out.loss, cfg.loss.text * (out.text_loss + out.clip_drill_loss)
                               + cfg.loss.latent * out.latent_loss + cfg.loss.video * out.video_loss
                               + cfg.loss.align * out.align_loss)
    # the head's marks are detached: the drills train the decoder, not the head
    model.train()
    model(batch).clip_drill_loss.backward()
    assert model.decoder.first_sight_head.weight.grad is None or not model.decoder.first_sight_head.weight.grad.any()
    assert model.decoder.first_sight_token_class.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="clip_drill_asks"):
        model({**batch, "clip_drill_asks": drills.asks + 6})
