"""Test helpers for the model: a micro config (smaller than tiny, same code paths) and random clips."""

from __future__ import annotations

import dataclasses

import torch

from model import MediaSpec, ModelConfig, StreamerModel
from model.config import CombinerConfig, DecoderConfig, EncoderConfig, LatentConfig


def micro_config(kind: str = "ttm") -> ModelConfig:
    """16x16 frames, 2 frames per snippet: every part of the model, a few thousand parameters."""
    return ModelConfig(
        name="micro",
        media=MediaSpec(height=16, width=16, fps=12.5, frames_per_snippet=2),
        encoder=EncoderConfig(dim=32, layers=1, heads=2, tube_size=8, patch_size=8, n_mels=16,
                              audio_patch_frames=8, audio_patch_mels=16),
        combiner=CombinerConfig(kind=kind, dim=32, heads=2, out_tokens=4, memory_tokens=8, read_tokens=4,
                                process_layers=1, token_learner_hidden=16, layers=2, window=3),
        latent=LatentConfig(dim=32, layers=2, heads=2, window=3, recon_layers=1, recon_frames=1, recon_size=4),
        decoder=DecoderConfig(dim=32, layers=2, heads=2),
    )


def random_clip(cfg: ModelConfig, batch: int, snippets: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """video uint8 [B, T, F, H, W, 3] and audio float32 [B, T, S] of noise."""
    g = torch.Generator().manual_seed(seed)
    m = cfg.media
    video = torch.randint(0, 256, (batch, snippets, m.frames_per_snippet, m.height, m.width, 3),
                          dtype=torch.uint8, generator=g)
    audio = torch.randn(batch, snippets, m.samples_per_snippet, generator=g) * 0.1
    return video, audio


def make_model(cfg: ModelConfig, seed: int = 0) -> StreamerModel:
    torch.manual_seed(seed)
    return StreamerModel(cfg).eval()


def with_decoder(cfg: ModelConfig, **fields) -> ModelConfig:
    """`cfg` with its decoder's `fields` changed (age_slopes=True, length_scale=True, ...)."""
    return dataclasses.replace(cfg, decoder=dataclasses.replace(cfg.decoder, **fields))


def counting_config() -> ModelConfig:
    """`tiny` with the world's first-sight classes and tokens, its sounds heard apart and their plays
    counted (tiny-lean-counting's parts), for studies that read the counter."""
    from training.world.first_sight import FIRST_SIGHT_CLASSES
    from training.world.vocab import SOUNDS
    return with_decoder(ModelConfig.from_name("tiny"), first_sight_classes=len(FIRST_SIGHT_CLASSES),
                        first_sight_tokens=True, first_sight_sounds=len(SOUNDS), first_sight_onsets=True)


def streamed_state(model: StreamerModel, snippets: int, seed: int) -> dict:
    """The state after streaming `snippets` snippets of a random clip, one at a time."""
    video, audio = random_clip(model.cfg, 1, snippets, seed=seed)
    state = model.init_state(1)
    for t in range(snippets):
        state = model.step(state, video[:, t], audio[:, t])
    return state


def assert_greedy_generation_matches_teacher_forcing(model: StreamerModel, state: dict, question: str) -> None:
    """The KV-cached generation loop and the teacher-forced pass compute the same next tokens."""
    tok = model.tokenizer
    generated = list(model._generate(state, model.question_prompt(question), 12, 0.0, None))
    assert 0 < len(generated) <= 12
    logits = model.answer_logits(state, tok.question_ids(question), generated + [tok.end_id])
    assert logits[0].argmax(-1)[: len(generated)].tolist() == generated


def assert_decoder_field_reads_as_off_when_absent(field: str) -> None:
    """A `tiny` config written before the decoder's `field` existed reads it as False and keeps
    its fingerprint; switching the field on changes the fingerprint."""
    cfg = ModelConfig.from_name("tiny")
    data = cfg.to_dict()
    del data["decoder"][field]
    old = ModelConfig.from_dict(data)
    assert getattr(old.decoder, field) is False
    assert old.fingerprint_dict() == cfg.fingerprint_dict() and field not in str(old.fingerprint_dict())
    assert with_decoder(cfg, **{field: True}).fingerprint_dict() != cfg.fingerprint_dict()


def teacher_forced_rows(model: StreamerModel, batch: dict):
    """The decoder's packed rows of a batch's valid questions, their answer positions and their
    context and its mask, as `forward` builds them: (rows, ids, answer_at, context, mask)."""
    rows = batch["question_valid"].nonzero(as_tuple=True)
    _, memories, h = model._clip_latents(batch["video"], batch["audio"])
    w = model.cfg.latent.window
    ask = batch["ask_snippets"][rows]
    chunks = ask[:, None] - w + torch.arange(w)
    context, mask = model.decoder.context(memories[rows[0], ask], h[rows[0][:, None], chunks.clamp(min=0)],
                                          chunks >= 0)
    ids, answer_at = model._pack_questions(batch["question_ids"][rows], batch["question_mask"][rows],
                                           batch["answer_ids"][rows], batch["answer_mask"][rows])
    return rows, ids, answer_at, context, mask
