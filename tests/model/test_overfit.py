"""A small model memorises a handful of world clips: every part trains, end to end."""

from __future__ import annotations

import time

import torch

from model import MediaSpec, ModelConfig, StreamerModel
from model.config import CombinerConfig, DecoderConfig, EncoderConfig, LatentConfig
from training.world.clip import Clip, WorldConfig


def overfit_config() -> ModelConfig:
    """Tiny's media (64x64, 8 frames) with narrower, shallower parts."""
    return ModelConfig(
        name="overfit",
        media=MediaSpec(height=64, width=64, fps=12.5, frames_per_snippet=8),
        encoder=EncoderConfig(dim=64, layers=1, heads=2, tube_size=16, patch_size=32),
        combiner=CombinerConfig(dim=64, heads=2, out_tokens=4, memory_tokens=8, read_tokens=8, process_layers=1,
                                token_learner_hidden=32),
        latent=LatentConfig(dim=64, layers=1, heads=2, window=4, recon_layers=1),
        decoder=DecoderConfig(dim=96, layers=2, heads=2),
    )


def test_tiny_model_overfits_world_clips_to_exact_match():
    torch.manual_seed(0)
    cfg = overfit_config()
    world = WorldConfig(spec=cfg.media, snippets=(2, 4), questions_per_clip=3)
    clips = [Clip.generate(seed, world) for seed in range(4)]
    model = StreamerModel(cfg)
    snippets = max(c.n_snippets for c in clips)
    video = torch.zeros(len(clips), snippets, 8, 64, 64, 3, dtype=torch.uint8)
    audio = torch.zeros(len(clips), snippets, cfg.media.samples_per_snippet)
    mask = torch.zeros(len(clips), snippets, dtype=torch.bool)
    for i, clip in enumerate(clips):
        video[i, : clip.n_snippets] = torch.from_numpy(clip.video_snippets())
        audio[i, : clip.n_snippets] = torch.from_numpy(clip.audio_snippets())
        mask[i, : clip.n_snippets] = True
    questions = [[(q.text, q.answer, q.ask_snippets) for q in clip.questions] for clip in clips]
    batch = dict(video=video, audio=audio, snippet_mask=mask, **model.encode_batch_questions(questions))

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    start = time.perf_counter()
    for step in range(400):
        out = model(batch)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        if out.accuracy() == 1.0 and out.text_loss.item() < 0.05:
            break
    elapsed = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        final = model(batch)
    assert final.accuracy() == 1.0, f"exact match {final.accuracy():.2f} after {step + 1} steps ({elapsed:.0f} s)"
    # greedy generation through the streaming path gives the same answers
    for i, clip in enumerate(clips[:2]):
        for q in clip.questions:
            state = model.init_state(1)
            for t in range(q.ask_snippets):
                state = model.step(state, video[i : i + 1, t], audio[i : i + 1, t])
            assert "".join(model.answer(state, q.text)) == q.answer, (clip.seed, q.text)
