"""Questions answered from the first-sight tokens alone (`--first-sight-only`): for a share of
the questions that name a first-sight class the decoder reads the null token and the first-sight
tokens, not the memory or the snippets' latent tokens."""

from __future__ import annotations

import pytest
import torch

from model import ModelConfig, StreamerModel
from model_helpers import make_model, micro_config, random_clip, teacher_forced_rows, with_decoder
from training.samples import TrainingData, company_questions, cut_windows, read_targets, to_model_batch

CLASSES = 5
QUESTION = "which came first, the red circle or the drum?"


def _model(seed: int) -> StreamerModel:
    cfg = with_decoder(micro_config(), first_sight_classes=CLASSES, first_sight_tokens=True)
    return make_model(cfg, seed=seed).eval()


def _batch(model: StreamerModel, hidden: list[list[bool]]) -> dict[str, torch.Tensor]:
    video, audio = random_clip(model.cfg, 2, 4, seed=9)
    questions = [[(QUESTION, "red circle", 4), ("what color is the square?", "blue", 3)], [(QUESTION, "drum", 2)]]
    batch = dict(video=video, audio=audio, **model.encode_batch_questions(questions))
    batch["first_sight_only"] = torch.tensor(hidden)
    return batch


def _answer_logits(model, batch, hide_by_hand: bool) -> torch.Tensor:
    """Teacher-forced logits of the batch's valid questions, all but the null token and the
    first-sight tokens masked by hand for the marked ones when asked to."""
    rows, ids, answer_at, context, mask = teacher_forced_rows(model, batch)
    if hide_by_hand:
        first = 1 + model.cfg.combiner.memory_tokens
        readable = torch.zeros(mask.shape[1], dtype=torch.bool)
        readable[0] = True
        readable[first:first + CLASSES] = True
        mask = mask.clone()
        mask[batch["first_sight_only"][rows]] &= readable
    logits, _ = model.decoder(ids, torch.arange(ids.shape[1])[None], None, model.decoder.cross_kv(context), mask)
    return logits.gather(1, answer_at[..., None].expand(-1, -1, logits.shape[-1]))


def test_a_marked_question_reads_the_first_sight_tokens_alone_and_the_others_read_all():
    model = _model(seed=81)
    batch = _batch(model, [[True, False], [False, False]])
    with torch.no_grad():
        out = model(batch)
        by_hand = _answer_logits(model, batch, hide_by_hand=True)
        plain = _answer_logits(model, batch, hide_by_hand=False)
    rows = batch["question_valid"].nonzero(as_tuple=True)
    forward = out.answer_logits[rows]
    torch.testing.assert_close(forward, by_hand)
    assert not torch.allclose(forward[0], plain[0])  # the marked question's answer changed
    torch.testing.assert_close(forward[1:], plain[1:])  # the others' did not


def test_a_marked_question_depends_on_neither_the_memory_nor_the_snippets():
    model = _model(seed=82)
    assert model.decoder.memory_tokens > 0
    batch = _batch(model, [[True, True], [True, False]])
    with torch.no_grad():
        before = model(batch).answer_logits
        model.decoder.h_proj.weight.mul_(3.0)  # what the snippets' tokens say, and nothing else
        model.decoder.memory_proj.weight.mul_(3.0)  # what the memory slots say
        after = model(batch).answer_logits
    torch.testing.assert_close(after[batch["question_valid"]], before[batch["question_valid"]])


def test_reading_the_tokens_alone_needs_first_sight_tokens():
    plain = make_model(with_decoder(micro_config(), first_sight_classes=CLASSES), seed=83)
    with pytest.raises(ValueError, match="--first-sight-tokens"):
        plain(_batch(plain, [[True, False], [False, False]]))


def test_only_questions_naming_a_first_sight_class_are_marked_at_about_the_share():
    model = StreamerModel(ModelConfig.from_name("tiny"))
    data = TrainingData.open("world", model.cfg.media, questions_per_clip=8, kind_weights=(("order", 50.0),))
    samples = [data.sample(i, (8, 8)) for i in range(6)]
    batch = to_model_batch(model, samples, first_sight_only=0.5, generator=torch.Generator().manual_seed(0))
    named = read_targets([s["questions"] for s in samples], batch["question_valid"].shape[1]) >= 0
    hidden = batch["first_sight_only"]
    assert int(named.sum()) >= 20
    assert not (hidden & ~named).any()
    assert 0.25 < float(hidden.sum() / named.sum()) < 0.75
    assert "first_sight_reads" not in batch  # no read loss asked for
    everything = to_model_batch(model, samples, first_sight_only=1.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(everything["first_sight_only"], named)


def test_reading_sound_of_leaves_the_order_questions_share_alone():
    """--read-kinds sound_of points the read loss at sound_of questions; --first-sight-only still
    marks only `order` questions."""
    model = StreamerModel(ModelConfig.from_name("tiny"))
    data = TrainingData.open("world", model.cfg.media, questions_per_clip=8,
                             kind_weights=(("order", 10.0), ("sound_of", 10.0)))
    samples = [data.sample(i, (8, 8)) for i in range(6)]
    batch = to_model_batch(model, samples, first_sight_reads=True, first_sight_only=1.0,
                           generator=torch.Generator().manual_seed(0), read_kinds=("sound_of",))
    kinds = [[q.kind for q in s["questions"]] for s in samples]
    reads = batch["first_sight_reads"]
    read_kinds = {kinds[i][j] for i, j in (reads >= 0).nonzero().tolist()}
    marked_kinds = {kinds[i][j] for i, j in batch["first_sight_only"].nonzero().tolist()}
    assert read_kinds == {"sound_of"} and marked_kinds == {"order"}


def test_a_cut_window_reads_its_whole_context():
    batch = {"ask_snippets": torch.full((4, 8), 5), "first_sight_only": torch.ones(4, 8, dtype=torch.bool)}
    out = cut_windows(batch, 0.5, 6, torch.Generator().manual_seed(0))
    cut = out["window_snippets"] < 6
    assert 0 < int(cut.sum()) < 32
    assert torch.equal(out["first_sight_only"], ~cut)


def test_company_only_marks_sound_of_questions_about_a_class_at_about_the_share():
    model = StreamerModel(ModelConfig.from_name("tiny"))
    data = TrainingData.open("world", model.cfg.media, questions_per_clip=8,
                             kind_weights=(("sound_of", 20.0), ("order", 20.0)))
    samples = [data.sample(i, (8, 8)) for i in range(8)]
    questions = [s["questions"] for s in samples]
    batch = to_model_batch(model, samples, company_only=0.5, generator=torch.Generator().manual_seed(0))
    about = company_questions(questions, batch["question_valid"].shape[1])
    kinds = [[q.kind for q in qs] for qs in questions]
    assert all(kinds[i][j] == "sound_of" for i, j in about.nonzero().tolist())
    assert int(about.sum()) >= 20
    hidden = batch["first_sight_only"]
    assert not (hidden & ~about).any()
    assert 0.25 < float(hidden.sum() / about.sum()) < 0.75
    both = to_model_batch(model, samples, first_sight_only=1.0, company_only=1.0,
                          generator=torch.Generator().manual_seed(0))
    named = read_targets(questions, about.shape[1]) >= 0
    assert torch.equal(both["first_sight_only"], named | about)
