"""Offline = streaming, causality, batch independence and constant state (ARCHITECTURE.md, "Seams")."""

from __future__ import annotations

import pytest
import torch

from model import ModelConfig

from model_helpers import make_model, micro_config, random_clip

TOL = 1e-4


def _slice(state, rows):
    return {k: v[rows] for k, v in state.items()}


def _cat(*states):
    return {k: torch.cat([s[k] for s in states]) for k in states[0]}


def test_forward_equals_step_by_step_tiny(combiner_kind):
    """Latents h and answer logits at every ask time: whole-clip forward == snippet-by-snippet step."""
    cfg = ModelConfig.from_name("tiny")
    cfg.combiner.kind = combiner_kind
    _check_forward_equals_step_by_step(cfg)


def test_forward_equals_step_by_step_with_gated_memory():
    cfg = ModelConfig.from_name("tiny")
    cfg.combiner.memory_update = "gated"
    model = make_model(cfg)
    with torch.no_grad():  # gates that depend on what they see, as after training
        model.combiner.write_gate.weight.normal_(std=0.5)
    _check_forward_equals_step_by_step(cfg, model)


def _check_forward_equals_step_by_step(cfg: ModelConfig, model=None) -> None:
    model = model or make_model(cfg)
    snippets = 11  # longer than both windows, so the ring buffers wrap
    video, audio = random_clip(cfg, 2, snippets, seed=1)
    questions = [[("what color is the square?", "red", 0), ("how many times did you hear the beep?", "three", 5),
                  ("what sound did the blue circle make?", "whistle", 11)],
                 [("what is happening?", "green cross moving left and red square standing still", 9)]]
    batch = dict(video=video, audio=audio, **model.encode_batch_questions(questions))
    with torch.no_grad():
        out = model(batch)

    state = model.init_state(2)
    for t in range(snippets + 1):
        for b, qs in enumerate(questions):
            for j, (_, _, ask) in enumerate(qs):
                if ask != t:
                    continue
                qmask = batch["question_mask"][b, j]
                amask = batch["answer_mask"][b, j]
                logits = model.answer_logits(_slice(state, slice(b, b + 1)), batch["question_ids"][b, j][qmask],
                                             batch["answer_ids"][b, j][amask])
                assert torch.allclose(logits[0], out.answer_logits[b, j][amask], atol=TOL), (b, j)
        if t == snippets:
            break
        state = model.step(state, video[:, t], audio[:, t])
        slot = t % cfg.latent.window
        assert torch.allclose(state["h_window"][:, slot], out.hidden[:, t], atol=TOL), t
    assert torch.equal(state["t"], torch.full((2,), snippets))


def test_audio_spectrogram_is_independent_of_snippet_cuts():
    """The carried audio tail makes per-snippet log-mel frames equal those of the whole clip."""
    cfg = ModelConfig.from_name("tiny")
    model = make_model(cfg)
    _, audio = random_clip(cfg, 1, 4, seed=3)
    logmel = model.encoder.logmel
    whole = torch.nn.functional.pad(audio.reshape(1, -1), (logmel.context, 0))
    whole_frames = logmel(whole)
    tail = torch.zeros(1, logmel.context)
    pieces = []
    for t in range(4):
        window = torch.cat((tail, audio[:, t]), dim=1)
        pieces.append(logmel(window))
        tail = window[:, -logmel.context:]
    assert torch.allclose(torch.cat(pieces, dim=1), whole_frames, atol=1e-5)


def test_causality_changes_after_ask_time_change_nothing_before(combiner_kind):
    cfg = micro_config(combiner_kind)
    model = make_model(cfg)
    video, audio = random_clip(cfg, 1, 8, seed=4)
    video2, audio2 = video.clone(), audio.clone()
    video2[:, 5:] = 255 - video2[:, 5:]
    audio2[:, 5:] = -audio2[:, 5:] + 0.3
    qs = model.encode_batch_questions([[("what color?", "red", 5), ("what shape?", "cross", 3)]])
    with torch.no_grad():
        a = model(dict(video=video, audio=audio, **qs))
        b = model(dict(video=video2, audio=audio2, **qs))
    assert torch.allclose(a.hidden[:, :5], b.hidden[:, :5], atol=1e-6)
    assert torch.allclose(a.answer_logits, b.answer_logits, atol=1e-6)
    assert not torch.allclose(a.hidden[:, 5:], b.hidden[:, 5:], atol=1e-3)


def test_batch_independence_with_join_and_leave(combiner_kind):
    """A stream's state evolves the same alone or in a batch, whoever joins or leaves."""
    cfg = micro_config(combiner_kind)
    model = make_model(cfg)
    video, audio = random_clip(cfg, 3, 9, seed=5)
    alone = model.init_state(1)
    for t in range(9):
        alone = model.step(alone, video[:1, t], audio[:1, t])

    batch = model.init_state(2)  # streams 0 and 1 from the start
    for t in range(4):
        batch = model.step(batch, video[:2, t], audio[:2, t])
    # stream 2 joins at t=4 (its own t = 0), stream 1 leaves at t=6
    batch = _cat(batch, model.init_state(1))
    joined_at = 4
    for t in range(4, 9):
        if t == 6:
            batch = _slice(batch, [0, 2])
        rows = [0, 1, 2] if t < 6 else [0, 2]
        own_t = [t if r < 2 else t - joined_at for r in rows]
        v = torch.stack([video[r, ti] for r, ti in zip(rows, own_t)])
        a = torch.stack([audio[r, ti] for r, ti in zip(rows, own_t)])
        batch = model.step(batch, v, a)
    assert batch["t"].tolist() == [9, 5]
    for name in alone:
        assert torch.allclose(batch[name][:1], alone[name], atol=1e-5), name
    q, ans = model.tokenizer.question_ids("what?"), model.tokenizer.answer_ids("red")
    assert torch.allclose(model.answer_logits(_slice(batch, slice(0, 1)), q, ans), model.answer_logits(alone, q, ans),
                          atol=1e-5)


def test_state_is_constant_and_well_behaved_far_into_a_stream(combiner_kind):
    """Shapes and bytes never change; at t = 10^6 outputs stay finite (bounded positions)."""
    cfg = micro_config(combiner_kind)
    model = make_model(cfg)
    video, audio = random_clip(cfg, 1, 12, seed=6)
    state = model.init_state(1)
    spec = model.state_spec(1)
    for t in range(10):
        state = model.step(state, video[:, t], audio[:, t])
    after_10 = {k: (tuple(v.shape), v.dtype) for k, v in state.items()}
    assert after_10 == spec
    state["t"] = torch.tensor([1_000_000])
    for t in range(10, 12):
        state = model.step(state, video[:, t], audio[:, t])
    assert {k: (tuple(v.shape), v.dtype) for k, v in state.items()} == spec
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    assert model.state_nbytes(1) == sum(v.numel() * v.element_size() for v in state.values())


@pytest.mark.slow
def test_state_bytes_identical_after_10_and_10000_steps():
    cfg = micro_config("ttm")
    model = make_model(cfg)
    video, audio = random_clip(cfg, 1, 1, seed=7)
    state = model.init_state(1)
    sizes = {}
    for t in range(1, 10_001):
        state = model.step(state, video[:, 0], audio[:, 0])
        if t in (10, 10_000):
            sizes[t] = {k: (tuple(v.shape), v.dtype, v.numel() * v.element_size()) for k, v in state.items()}
    assert sizes[10] == sizes[10_000]
    assert int(state["t"]) == 10_000
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    assert max(float(v.abs().max()) for k, v in state.items() if k == "memory") < 100.0


def test_step_does_not_mutate_its_inputs(combiner_kind):
    cfg = micro_config(combiner_kind)
    model = make_model(cfg)
    video, audio = random_clip(cfg, 2, 5, seed=8)
    state = model.init_state(2)
    for t in range(4):
        state = model.step(state, video[:, t], audio[:, t])
    before = {k: v.clone() for k, v in state.items()}
    v, a = video[:, 4].clone(), audio[:, 4].clone()
    model.step(state, v, a)
    assert all(torch.equal(before[k], state[k]) for k in state)
    assert torch.equal(v, video[:, 4]) and torch.equal(a, audio[:, 4])
