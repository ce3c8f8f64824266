"""The training forward: losses, gradients to every parameter, question batching."""

from __future__ import annotations

import torch

from model_helpers import make_model, micro_config, random_clip


def test_gradients_reach_every_parameter(combiner_kind):
    cfg = micro_config(combiner_kind)
    model = make_model(cfg).train()
    video, audio = random_clip(cfg, 2, 6, seed=10)
    qs = model.encode_batch_questions([[("what color is the square?", "red", 6), ("what?", "nothing", 0)],
                                       [("which shape made the beep?", "blue circle", 4)]])
    ids, mask = model.phrase_ids(["red square", "a drum", "silence"])
    targets = torch.tensor([[1, 0, -1], [0, 1, 0], [0, 0, 1]] * 4, dtype=torch.int8).view(2, 6, 3)
    out = model(dict(video=video, audio=audio, align_ids=ids, align_mask=mask, align_targets=targets, **qs))
    for name in ("loss", "text_loss", "latent_loss", "video_loss", "align_loss"):
        value = getattr(out, name)
        assert value.dim() == 0 and torch.isfinite(value) and value.item() > 0, name
    out.loss.backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert dead == []


def test_padded_snippets_and_questions_do_not_change_results():
    """A clip padded with extra snippets and extra (invalid) question rows gives the same answers."""
    cfg = micro_config("ttm")
    model = make_model(cfg)
    video, audio = random_clip(cfg, 1, 7, seed=11)
    qs = [("what color?", "red", 3)]
    short = dict(video=video[:, :5], audio=audio[:, :5], **model.encode_batch_questions([qs]))
    long = dict(video=video, audio=audio, snippet_mask=torch.tensor([[True] * 5 + [False] * 2]),
                **model.encode_batch_questions([qs + [], ]))
    other = model.encode_batch_questions([qs, [("a much longer question with more bytes?", "green", 1)] * 2])
    with torch.no_grad():
        a, b = model(short), model(long)
        c = model(dict(video=video.expand(2, -1, -1, -1, -1, -1)[:, :5], audio=audio.expand(2, -1, -1)[:, :5], **other))
    assert torch.allclose(a.answer_logits, b.answer_logits, atol=1e-5)
    assert torch.allclose(a.text_loss, b.text_loss, atol=1e-5)
    la = a.answer_logits.shape[2]
    assert torch.allclose(a.answer_logits[0, 0], c.answer_logits[0, 0, :la], atol=1e-4)
    assert c.question_valid.tolist() == [[True, False], [True, True]]
    assert a.exact_match().shape == (1, 1)


def test_loss_weights_come_from_the_config():
    cfg = micro_config("ttm")
    cfg.loss.latent, cfg.loss.video = 0.0, 0.0
    model = make_model(cfg)
    video, audio = random_clip(cfg, 1, 4, seed=12)
    out = model(dict(video=video, audio=audio, **model.encode_batch_questions([[("what?", "red", 2)]])))
    assert torch.allclose(out.loss, out.text_loss)


def test_clear_errors_on_wrong_inputs():
    cfg = micro_config("ttm")
    model = make_model(cfg)
    video, audio = random_clip(cfg, 1, 3, seed=13)
    state = model.init_state(1)
    import pytest

    with pytest.raises(ValueError, match="video must be uint8"):
        model.step(state, video[:, 0].float(), audio[:, 0])
    with pytest.raises(ValueError, match="audio must be float32"):
        model.step(state, video[:, 0], audio[:, 0, :100])
    with pytest.raises(ValueError, match="state"):
        model.step({"t": state["t"]}, video[:, 0], audio[:, 0])
    with pytest.raises(ValueError, match="ask_snippets"):
        model(dict(video=video, audio=audio, **model.encode_batch_questions([[("what?", "red", 4)]])))
    with pytest.raises(ValueError, match="one stream"):
        list(model.answer(model.init_state(2), "what?"))


def test_a_cut_window_hides_the_older_snippets_from_the_decoder():
    """window_snippets k: the decoder reads the memory and the k most recent snippets of h, no older one."""
    cfg = micro_config("ttm")
    model = make_model(cfg)
    w = cfg.latent.window
    video, audio = random_clip(cfg, 1, 6, seed=14)
    batch = dict(video=video, audio=audio, **model.encode_batch_questions([[("what color?", "red", 6)] * 3]))
    batch["window_snippets"] = torch.tensor([[w, 1, 0]])
    with torch.no_grad():
        _, memories, h = model._clip_latents(video, audio)

        def logits(h_seen):
            return model._question_pass(batch, memories, h_seen, None, torch.device("cpu"))[0][0]

        seen = logits(h)
        older, newest = h.clone(), h.clone()
        older[:, :5] += 1.0  # every snippet but the last
        newest[:, 5] += 1.0
        after_older, after_newest = logits(older), logits(newest)
        whole = model._question_pass({k: v for k, v in batch.items() if k != "window_snippets"},
                                     memories, h, None, torch.device("cpu"))[0][0]
    assert not torch.allclose(after_older[0], seen[0]) and not torch.allclose(after_newest[0], seen[0])
    torch.testing.assert_close(after_older[1], seen[1])  # sees the last snippet only
    assert not torch.allclose(after_newest[1], seen[1])
    torch.testing.assert_close(after_older[2], seen[2])  # the memory alone
    torch.testing.assert_close(after_newest[2], seen[2])
    torch.testing.assert_close(whole[0], seen[0])  # a whole window is no cut
    assert not torch.allclose(seen[2], seen[0])
