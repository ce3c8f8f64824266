"""The first-sight read loss: while an answer that names a first-sight class is written, the
READ_HEAD of the decoder's last layer is pointed at that class's token. Its weights are the ones
the forward applies, the loss is −log of them on the token, it teaches the head to find the
token, and the targets come from the questions' kinds and answers. The first-sight age slopes
add a learned multiple of each token's first-sight age to its score."""

from __future__ import annotations

import pytest
import torch

from model import ModelConfig
from model.decoder import READ_HEAD
from model_helpers import (
    assert_greedy_generation_matches_teacher_forcing,
    make_model,
    micro_config,
    random_clip,
    streamed_state,
    teacher_forced_rows,
    with_decoder,
)
from training.config import TrainingError
from training.data import SampleQuestion
from training.samples import cut_windows, read_targets
from training.world.first_sight import FIRST_SIGHT_CLASSES

CLASSES = 5
QUESTION = "which came first, the red circle or the drum?"


def _model(seed: int, weight: float = 1.0):
    cfg = with_decoder(micro_config(), first_sight_classes=CLASSES, first_sight_tokens=True,
                       age_slopes=True, length_scale=True)
    cfg.loss.first_sight_read = weight
    cfg.validate()
    return make_model(cfg, seed=seed)


def _batch(model, reads: list[list[int]]):
    video, audio = random_clip(model.cfg, 2, 4, seed=5)
    questions = [[(QUESTION, "red circle", 4), ("what color is the square?", "blue", 3)],
                 [(QUESTION, "drum", 2)]]
    batch = dict(video=video, audio=audio, **model.encode_batch_questions(questions))
    batch["first_sight_reads"] = torch.tensor(reads)
    return batch


def test_the_read_weights_are_the_last_layers_read_head_and_leave_the_logits_alone():
    model = _model(seed=71)
    batch = _batch(model, [[0, -1], [3, -1]])
    _, ids, _, context, mask = teacher_forced_rows(model, batch)
    positions = torch.arange(ids.shape[1])[None]
    cross_kv = model.decoder.cross_kv(context)
    with torch.no_grad():
        plain, _ = model.decoder(ids, positions, None, cross_kv, mask)
        logits, _, weights = model.decoder(ids, positions, None, cross_kv, mask, read=True)
    torch.testing.assert_close(logits, plain)
    assert weights.shape == (ids.shape[0], ids.shape[1], mask.shape[1])
    torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:2]))
    # by hand: the last block's cross-attention input is norm2 of the stream after its self-attention
    captured = {}
    last = model.decoder.blocks[-1]
    handle = last.cross.register_forward_hook(lambda m, args, out: captured.update(args=args))
    with torch.no_grad():
        model.decoder(ids, positions, None, cross_kv, mask)
    handle.remove()
    x, k, _v, ctx_mask, bias, scale = captured["args"]
    torch.testing.assert_close(weights, last.cross.weights(x, k, ctx_mask, bias, scale)[:, READ_HEAD])


def test_the_loss_is_minus_log_the_weight_on_the_answers_token_over_its_answer_positions():
    model = _model(seed=72)
    batch = _batch(model, [[1, -1], [4, -1]])
    with torch.no_grad():
        out = model(batch)
        rows, ids, answer_at, context, mask = teacher_forced_rows(model, batch)
        _, _, weights = model.decoder(ids, torch.arange(ids.shape[1])[None], None, model.decoder.cross_kv(context),
                                      mask, read=True)
    first = 1 + model.cfg.combiner.memory_tokens
    terms = []
    for n, (target, am) in enumerate(zip(batch["first_sight_reads"][rows], batch["answer_mask"][rows])):
        if target < 0:
            continue
        positions = answer_at[n][am]
        terms.append(-torch.log(weights[n, positions, first + target]))
    expected = torch.cat(terms).mean()
    assert len(terms) == 2
    torch.testing.assert_close(out.first_sight_read_loss, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.loss - out.first_sight_read_loss,
                               _model(seed=72, weight=0.0)(batch).loss.detach(), atol=1e-5, rtol=1e-5)


def test_without_targets_the_loss_is_zero():
    model = _model(seed=73)
    batch = _batch(model, [[-1, -1], [-1, -1]])
    with torch.no_grad():
        assert float(model(batch).first_sight_read_loss) == 0.0
        del batch["first_sight_reads"]
        assert float(model(batch).first_sight_read_loss) == 0.0


def test_training_on_the_loss_points_the_head_at_the_token():
    model = _model(seed=74).train()
    batch = _batch(model, [[2, -1], [0, -1]])
    optimizer = torch.optim.Adam(model.decoder.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = model(batch).first_sight_read_loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0], losses


def test_reads_need_first_sight_tokens():
    plain = make_model(with_decoder(micro_config(), first_sight_classes=CLASSES), seed=75)
    with pytest.raises(ValueError, match="--first-sight-tokens"):
        plain(_batch(plain, [[0, -1], [1, -1]]))
    cfg = with_decoder(micro_config(), first_sight_classes=CLASSES)
    cfg.loss.first_sight_read = 0.1
    with pytest.raises(ValueError, match="decoder.first_sight_tokens"):
        cfg.validate()


def test_an_old_config_reads_with_no_read_loss_and_keeps_its_fingerprint():
    cfg = ModelConfig.from_name("tiny")
    data = cfg.to_dict()
    del data["loss"]["first_sight_read"]
    old = ModelConfig.from_dict(data)
    assert old.loss.first_sight_read == 0.0 and old.fingerprint_dict() == cfg.fingerprint_dict()
    assert "first_sight_read" not in str(old.fingerprint_dict())


def test_targets_are_the_class_an_order_answer_names():
    questions = [[SampleQuestion(QUESTION, "red circle", 4, "order"),
                  SampleQuestion("which shape made the drum sound?", "red circle", 4, "who_made"),
                  SampleQuestion(QUESTION, "a teal circle", 4, "order")],  # off-palette: no class
                 [SampleQuestion("which came first, the bell or the drum?", "drum", 2, "order")]]
    targets = read_targets(questions, 4)
    assert targets.tolist() == [[FIRST_SIGHT_CLASSES.index("red circle"), -1, -1, -1],
                                [FIRST_SIGHT_CLASSES.index("drum"), -1, -1, -1]]


def test_the_other_kinds_targets_are_the_class_their_question_names():
    questions = [[SampleQuestion("what sound did the red circle make?", "drum", 4, "sound_of"),
                  SampleQuestion("what sound did the teal circle make?", "bell", 4, "sound_of"),  # off-palette
                  SampleQuestion(QUESTION, "red circle", 4, "order")]]
    circle = FIRST_SIGHT_CLASSES.index("red circle")
    assert read_targets(questions, 3).tolist() == [[-1, -1, circle]]  # order alone by default
    assert read_targets(questions, 3, ("sound_of",)).tolist() == [[circle, -1, -1]]
    assert read_targets(questions, 3, ("order", "sound_of")).tolist() == [[circle, -1, circle]]
    counted = [[SampleQuestion("how many times did you hear the drum?", "two", 4, "count_sound"),
                SampleQuestion("which shape made the drum sound?", "red circle", 4, "who_made"),
                SampleQuestion("how many shapes are there?", "two", 4, "count_now")]]
    drum = FIRST_SIGHT_CLASSES.index("drum")
    assert read_targets(counted, 3, ("count_sound", "who_made")).tolist() == [[drum, drum, -1]]
    assert read_targets(counted, 3, ("count_sound",)).tolist() == [[drum, -1, -1]]
    with pytest.raises(TrainingError, match="count_now"):
        read_targets(questions, 3, ("count_now",))


def test_a_cut_window_drops_the_questions_read_target():
    batch = {"ask_snippets": torch.full((4, 8), 5), "first_sight_reads": torch.arange(32).view(4, 8)}
    out = cut_windows(batch, 0.5, 6, torch.Generator().manual_seed(0))
    cut = out["window_snippets"] < 6
    assert 0 < int(cut.sum()) < 32
    assert (out["first_sight_reads"][cut] == -1).all()
    assert torch.equal(out["first_sight_reads"][~cut], batch["first_sight_reads"][~cut])


def _with_token_slopes(seed: int):
    cfg = with_decoder(micro_config(), first_sight_classes=CLASSES, first_sight_tokens=True, age_slopes=True,
                       length_scale=True, first_sight_age_slopes=True)
    return make_model(cfg, seed=seed)


def test_zero_first_sight_age_slopes_leave_the_answers_as_they_were():
    plain, sloped = _model(seed=76), _with_token_slopes(seed=76)
    missing, unexpected = sloped.load_state_dict(plain.state_dict(), strict=False)
    assert missing == ["decoder.first_sight_age_slopes"] and not unexpected
    batch = _batch(plain, [[0, -1], [3, -1]])
    with torch.no_grad():
        torch.testing.assert_close(sloped(batch).answer_logits, plain(batch).answer_logits)


def test_a_first_sight_age_slope_weights_each_token_up_by_its_age():
    model = _with_token_slopes(seed=77)
    batch = _batch(model, [[0, -1], [3, -1]])
    _, ids, _, context, mask = teacher_forced_rows(model, batch)
    _, _, h = model._clip_latents(batch["video"], batch["audio"])
    positions = torch.arange(ids.shape[1])[None]
    cross_kv = model.decoder.cross_kv(context)
    ages = torch.tensor([[0.0, 1.0, 2.0, 0.5, 0.0]]).expand(ids.shape[0], -1)
    with torch.no_grad():
        _, _, before = model.decoder(ids, positions, None, cross_kv, mask, read=True, token_ages=ages)
        model.decoder.first_sight_age_slopes[-1, READ_HEAD] = 0.25  # one score per snippet of age
        _, _, after = model.decoder(ids, positions, None, cross_kv, mask, read=True, token_ages=ages)
    first = 1 + model.cfg.combiner.memory_tokens
    tokens = slice(first, first + CLASSES)
    gain = (after[..., tokens] / before[..., tokens]) / (after[..., :1] / before[..., :1])  # against the null token
    torch.testing.assert_close(gain, torch.exp(ages)[:, None, :].expand_as(gain), atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="token_ages"):
        model.decoder(ids, positions, None, cross_kv, mask)
    assert model.decoder.token_ages(h[:, :3], torch.ones(2, 3, dtype=torch.bool)).shape == (2, CLASSES)


def test_greedy_generation_with_first_sight_age_slopes_matches_teacher_forcing():
    model = _with_token_slopes(seed=78)
    with torch.no_grad():
        model.decoder.first_sight_age_slopes.normal_()
        model.decoder.first_sight_head.bias.fill_(2.0)  # things seen, so the ages differ
    assert_greedy_generation_matches_teacher_forcing(model, streamed_state(model, 5, seed=9), QUESTION)


def test_first_sight_age_slopes_need_the_tokens_and_old_configs_read_without_them():
    with pytest.raises(ValueError, match="decoder.first_sight_tokens"):
        with_decoder(micro_config(), first_sight_classes=CLASSES, first_sight_age_slopes=True)
    cfg = ModelConfig.from_name("tiny")
    data = cfg.to_dict()
    del data["decoder"]["first_sight_age_slopes"]
    old = ModelConfig.from_dict(data)
    assert old.decoder.first_sight_age_slopes is False and old.fingerprint_dict() == cfg.fingerprint_dict()
