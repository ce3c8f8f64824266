"""The two ways of remembering a stream that the engine's constant state replaces, built from
the same parts, so the memory benchmark compares designs and not implementations.

`FullHistory`: the Transformer combiner and the latent model with no window. Every snippet's
keys and values stay in a cache that grows with the stream, each step attends over all of
it, and an answer cross-attends to every latent so far. The cache is preallocated and
filled in place (no copy per step): the cheapest form of the design, so the comparison
favours the baseline, never the engine.

`Rerun`: keep the media, and at each question run the engine's own model (encoder, TTM
combiner, windowed latent model) over the whole history, then answer.

Both can be set up as they would be after `n` snippets without streaming all of them
(`at_length`): their cost depends on how long the history is, not on what it holds, and
streaming a full-history model for hours takes hours (its cost grows with the square of
the stream's length).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from model import StreamerModel
from model.encoders import audio_windows
from model.layers import Block, rope_angles
from training.world.clip import Clip


class GrowingCache:
    """Keys and values [B, H, capacity, D] of which the first `length` positions are filled."""

    def __init__(self, batch: int, heads: int, head_dim: int, capacity: int, device: torch.device,
                 filled: int = 0) -> None:
        shape = (batch, heads, capacity, head_dim)
        self.k = torch.empty(shape, device=device).uniform_(-1, 1)
        self.v = torch.empty(shape, device=device).uniform_(-1, 1)
        self.length = filled

    def append(self, k: torch.Tensor, v: torch.Tensor) -> None:
        end = self.length + k.shape[2]
        if end > self.k.shape[2]:  # double the capacity: amortised constant cost per position
            grown = max(end, 2 * self.k.shape[2])
            self.k = torch.cat((self.k, self.k.new_empty(*self.k.shape[:2], grown - self.k.shape[2], self.k.shape[3])), 2)
            self.v = torch.cat((self.v, self.v.new_empty(*self.v.shape[:2], grown - self.v.shape[2], self.v.shape[3])), 2)
        self.k[:, :, self.length:end] = k
        self.v[:, :, self.length:end] = v
        self.length = end

    @property
    def nbytes(self) -> int:
        """Bytes of the positions held (spare capacity left out)."""
        batch, heads, _, dim = self.k.shape
        return 2 * batch * heads * self.length * dim * self.k.element_size()


def attend_all(block: Block, x: torch.Tensor, rope, cache: GrowingCache) -> torch.Tensor:
    """A transformer block over one new chunk that sees every earlier chunk (no window)."""
    q, k, v = block.attn.project(block.norm1(x), rope)
    cache.append(k, v)
    out = F.scaled_dot_product_attention(q, cache.k[:, :, : cache.length], cache.v[:, :, : cache.length])
    x = x + block.attn.merge(out)
    return x + block.mlp(block.norm2(x))


@dataclasses.dataclass
class FullHistoryState:
    t: int
    audio_tail: torch.Tensor
    combiner: list[GrowingCache]
    latent: list[GrowingCache]
    h: torch.Tensor  # [B, capacity, m, d]: every latent so far, the first t filled

    @property
    def nbytes(self) -> int:
        held = self.h[:, : self.t]
        return (sum(cache.nbytes for cache in self.combiner + self.latent)
                + self.audio_tail.numel() * self.audio_tail.element_size() + held.numel() * held.element_size())


class FullHistory:
    """A model with the Transformer combiner stepped with unbounded caches (see the module docstring)."""

    def __init__(self, model: StreamerModel) -> None:
        if model.cfg.combiner.kind != "transformer":
            raise ValueError("the full-history baseline is built on a model with the Transformer combiner")
        self.model = model.eval()
        self.device = next(model.parameters()).device

    def at_length(self, snippets: int, spare: int = 4) -> FullHistoryState:
        """The state after `snippets` snippets (values drawn at random), with room for `spare` more."""
        cfg, model = self.model.cfg, self.model
        c, lat = cfg.combiner, cfg.latent
        comb_chunk, lat_chunk = model.combiner.chunk, model.latent.chunk

        def caches(layers, heads, dim, chunk):
            return [GrowingCache(1, heads, dim // heads, (snippets + spare) * chunk, self.device, snippets * chunk)
                    for _ in range(layers)]

        h = torch.empty(1, snippets + spare, lat_chunk, lat.dim, device=self.device).uniform_(-1, 1)
        return FullHistoryState(
            t=snippets,
            audio_tail=torch.zeros(1, model.encoder.logmel.context, device=self.device),
            combiner=caches(c.layers, c.heads, c.dim, comb_chunk),
            latent=caches(lat.layers, lat.heads, lat.dim, lat_chunk),
            h=h,
        )

    @torch.no_grad()
    def step(self, state: FullHistoryState, video: torch.Tensor, audio: torch.Tensor) -> None:
        """Fold one snippet (video uint8 [1, F, H, W, 3], audio [1, S]) into `state`, in place."""
        model = self.model
        comb, lat, c = model.combiner, model.latent, model.cfg.combiner
        windows = torch.cat((state.audio_tail, audio.to(self.device)), dim=1)
        tokens = model.encoder(video.to(self.device), windows)
        x = comb.inp(tokens)
        x = torch.cat((x, comb.queries.expand(x.shape[0], -1, -1)), dim=1)
        positions = state.t * comb.chunk + torch.arange(comb.chunk, device=self.device)
        rope = rope_angles(positions, c.dim // c.heads)
        for block, cache in zip(comb.blocks, state.combiner):
            x = attend_all(block, x, rope, cache)
        x = comb.norm(x)[:, -c.out_tokens:]
        h = lat.inp(x)
        rope = rope_angles(state.t * lat.chunk + torch.arange(lat.chunk, device=self.device),
                           model.cfg.latent.dim // model.cfg.latent.heads)
        for block, cache in zip(lat.blocks, state.latent):
            h = attend_all(block, h, rope, cache)
        if state.t >= state.h.shape[1]:
            state.h = torch.cat((state.h, torch.empty_like(state.h)), dim=1)
        state.h[:, state.t] = lat.norm(h)
        state.audio_tail = windows[:, -model.encoder.logmel.context:]
        state.t += 1

    @torch.no_grad()
    def first_token(self, state: FullHistoryState, question: str) -> int:
        """The first answer token, cross-attending to every latent so far (ages past the
        trained window take the oldest age embedding)."""
        model, decoder = self.model, self.model.decoder
        h = state.h[:, : state.t]
        ages = (state.t - 1 - torch.arange(state.t, device=self.device)).clamp(max=model.cfg.latent.window - 1)
        tokens = (decoder.h_proj(h) + decoder.age_emb[ages] + decoder.h_pos).reshape(1, -1, decoder.cfg.decoder.dim)
        context = decoder.context_norm(torch.cat((decoder.null.expand(1, -1, -1), tokens), dim=1))
        mask = torch.ones(context.shape[:2], dtype=torch.bool, device=self.device)
        return _first_token(model, context, mask, question)


class Rerun:
    """Keep every snippet's media; answer by running the engine's model over all of it."""

    def __init__(self, model: StreamerModel, encode_batch: int = 64) -> None:
        self.model = model.eval()
        self.device = next(model.parameters()).device
        self.encode_batch = encode_batch

    @staticmethod
    def at_length(clip: Clip, snippets: int) -> tuple[np.ndarray, np.ndarray]:
        """The media history of `snippets` snippets (the clip looped): video [T, F, H, W, 3], audio [T, S]."""
        index = np.arange(snippets) % clip.n_snippets
        return clip.video_snippets()[index], clip.audio_snippets()[index]

    @torch.no_grad()
    def first_token(self, video: np.ndarray, audio: np.ndarray, question: str) -> int:
        """Re-run the whole history, then the first answer token: what a question waits for."""
        model = self.model
        t = len(video)
        samples = model.cfg.media.samples_per_snippet
        windows = audio_windows(torch.from_numpy(audio).reshape(1, t * samples), model.encoder.logmel.context,
                                samples)[0]
        tokens = torch.cat([model.encoder(torch.from_numpy(video[i : i + self.encode_batch]).to(self.device),
                                          windows[i : i + self.encode_batch].to(self.device))
                            for i in range(0, t, self.encode_batch)])
        x, memories = model.combiner.clip(tokens[None])
        h = model.latent.clip(x)
        w = model.cfg.latent.window
        chunks = t - w + torch.arange(w, device=self.device)
        h_window = h[:, chunks.clamp(min=0)]
        heard = (model.heard(windows[chunks.clamp(min=0)].to(self.device))[None]
                 if model.cfg.decoder.first_sight_sounds else None)
        context, mask = model.decoder.context(memories[:, -1] if memories is not None else None, h_window,
                                              (chunks >= 0)[None], heard)
        return _first_token(model, context, mask, question,
                            model.decoder.token_ages(h_window, (chunks >= 0)[None], heard))


def _first_token(model: StreamerModel, context: torch.Tensor, mask: torch.Tensor, question: str,
                 token_ages: torch.Tensor | None = None) -> int:
    device = context.device
    ids = torch.tensor([model.question_prompt(question)], device=device)
    positions = torch.arange(ids.shape[1], device=device)[None]
    logits, _ = model.decoder(ids, positions, None, model.decoder.cross_kv(context), mask, token_ages=token_ages)
    return int(logits[0, -1].argmax())

