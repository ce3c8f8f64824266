"""Latent causal model: a transformer over the m tokens of each snippet with chunk-causal
attention limited to the last W chunks. Streaming keeps a ring-buffer KV cache of W
chunks per layer (per-stream validity, so streams at different times share a batch).

Two heads train it, as in the paper: the next chunk's latents (latent reconstruction)
and a downsampled next snippet (video reconstruction, through a small transformer)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.config import ModelConfig
from model.layers import Block, ring_validity, rope_angles
from model.state import State, StateSpec


class LatentModel(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        lc = cfg.latent
        self.cfg = cfg
        self.chunk = cfg.combiner.out_tokens
        self.inp = nn.Linear(cfg.combiner.dim, lc.dim)
        self.blocks = nn.ModuleList(Block(lc.dim, lc.heads, lc.mlp_ratio) for _ in range(lc.layers))
        self.norm = nn.LayerNorm(lc.dim)
        # heads
        self.predict_latent = nn.Linear(lc.dim, cfg.combiner.dim)
        self.recon_blocks = nn.ModuleList(Block(lc.dim, lc.heads, lc.mlp_ratio) for _ in range(lc.recon_layers))
        self.recon_norm = nn.LayerNorm(lc.dim)
        self.recon_out = nn.Linear(lc.dim, lc.recon_frames * lc.recon_size**2 * 3)

    def state_spec(self, batch_size: int) -> StateSpec:
        lc = self.cfg.latent
        kv = (batch_size, lc.layers, lc.heads, lc.window * self.chunk, lc.dim // lc.heads)
        return {
            "latent_k": (kv, torch.float32),
            "latent_v": (kv, torch.float32),
            "h_window": ((batch_size, lc.window, self.chunk, lc.dim), torch.float32),
        }

    def clip(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, T, m, dc] -> h [B, T, m, d]."""
        b, t, m, _ = x.shape
        lc = self.cfg.latent
        h = self.inp(x).reshape(b, t * m, lc.dim)
        rope = rope_angles(torch.arange(t * m, device=x.device), lc.dim // lc.heads)
        for block in self.blocks:
            h = block.chunk_causal(h, m, lc.window, rope)
        return self.norm(h).view(b, t, m, lc.dim)

    def step(self, state: State, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, State]:
        """x [B, m, dc] of snippet t [B] -> h [B, m, d] and the updated ring buffers."""
        lc = self.cfg.latent
        m = self.chunk
        h = self.inp(x)
        rope = rope_angles(t[:, None] * m + torch.arange(m, device=x.device), lc.dim // lc.heads)
        slot = torch.remainder(t, lc.window)
        valid = ring_validity(t, lc.window, m)
        ks, vs = [], []
        for i, block in enumerate(self.blocks):
            h, k, v = block.ring_step(h, rope, state["latent_k"][:, i], state["latent_v"][:, i], slot, valid)
            ks.append(k)
            vs.append(v)
        h = self.norm(h)
        rows = torch.arange(h.shape[0], device=h.device)
        h_window = state["h_window"].clone()
        h_window[rows, slot] = h
        return h, {"latent_k": torch.stack(ks, 1), "latent_v": torch.stack(vs, 1), "h_window": h_window}

    def reconstruct(self, h: torch.Tensor) -> torch.Tensor:
        """h [N, m, d] -> predicted downsampled next snippet [N, recon_frames, size, size, 3] (pixels in [-0.5, 0.5])."""
        lc = self.cfg.latent
        for block in self.recon_blocks:
            h = block(h)
        out = self.recon_out(self.recon_norm(h).mean(dim=1))
        return out.view(-1, lc.recon_frames, lc.recon_size, lc.recon_size, 3)

    def video_target(self, video: torch.Tensor) -> torch.Tensor:
        """uint8 [N, F, H, W, 3] -> [N, recon_frames, size, size, 3]: mean over frame groups, area pooling."""
        lc = self.cfg.latent
        n, f, hgt, wid, _ = video.shape
        x = video.float() / 255.0 - 0.5
        x = x.view(n, lc.recon_frames, f // lc.recon_frames, hgt, wid, 3).mean(dim=2)
        x = x.permute(0, 1, 4, 2, 3).reshape(n * lc.recon_frames, 3, hgt, wid)
        x = F.adaptive_avg_pool2d(x, lc.recon_size)
        return x.view(n, lc.recon_frames, 3, lc.recon_size, lc.recon_size).permute(0, 1, 3, 4, 2)
