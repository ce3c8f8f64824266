"""Building blocks shared by every part of the model: norms, MLP, rotary positions,
attention in its three uses (full, chunk-causal over a clip, streaming over a ring
buffer), cross-attention and TokenLearner.

Rotary angles are computed in float64 from integer positions and only then cast, so a
stream that has run for 10,000+ snippets gets the same (relative) attention as one that
has just started: attention depends only on position differences, and the absolute
index never loses precision.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

import kernels


class MLP(nn.Module):
    def __init__(self, dim: int, ratio: float, out_dim: int | None = None) -> None:
        super().__init__()
        hidden = int(dim * ratio)
        self.fc = nn.Linear(dim, hidden)
        self.proj = nn.Linear(hidden, out_dim or dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(x)))


def rope_angles(positions: torch.Tensor, head_dim: int, base: float = 10_000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of shape [..., N, head_dim/2] for integer `positions` [..., N] (float64 inside)."""
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64, device=positions.device) / head_dim)
    angles = positions.to(torch.float64)[..., None] * inv_freq
    return torch.cos(angles).float(), torch.sin(angles).float()


def apply_rope(x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Rotate pairs of channels of x [B, H, N, D]; cos/sin are [N, D/2] or [B, N, D/2]."""
    cos, sin = rope
    if cos.dim() == 3:
        cos, sin = cos[:, None], sin[:, None]
    x1, x2 = x[..., 0::2], x[..., 1::2]
    out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
    return out.flatten(-2).to(x.dtype)


class SelfAttention(nn.Module):
    """Multi-head self-attention; how keys are chosen is the caller's choice of method."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)

    def project(self, x: torch.Tensor, rope=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, n, _ = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if rope is not None:
            q, k = apply_rope(q, rope), apply_rope(k, rope)
        return q, k, v

    def merge(self, out: torch.Tensor) -> torch.Tensor:
        b, h, n, d = out.shape
        return self.proj(out.transpose(1, 2).reshape(b, n, h * d))

    def full(self, x: torch.Tensor, rope=None, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Every token sees every other (or those `mask` [B, 1|N, N] allows)."""
        q, k, v = self.project(x, rope)
        if mask is not None and mask.dim() == 3:
            mask = mask[:, None]
        return self.merge(F.scaled_dot_product_attention(q, k, v, attn_mask=mask))

    def chunk_causal(self, x: torch.Tensor, chunk: int, window: int | None, rope) -> torch.Tensor:
        """A whole clip at once: a token sees its own chunk and the `window - 1` before it."""
        q, k, v = self.project(x, rope)
        return self.merge(kernels.chunk_causal_attention(q, k, v, chunk, window=window))

    def ring_step(
        self, x: torch.Tensor, rope, cache_k: torch.Tensor, cache_v: torch.Tensor, slot: torch.Tensor,
        key_valid: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One chunk of a stream: write its keys/values into ring slot `slot` [B] (per stream),
        then attend over the ring with `key_valid` [B, slots*chunk]. Returns (out, k, v)."""
        q, k, v = self.project(x, rope)
        cache_k = ring_write(cache_k, k, slot)
        cache_v = ring_write(cache_v, v, slot)
        mask = key_valid[:, None, None, :]
        out = F.scaled_dot_product_attention(q, cache_k, cache_v, attn_mask=mask)
        return self.merge(out), cache_k, cache_v


def ring_write(cache: torch.Tensor, new: torch.Tensor, slot: torch.Tensor) -> torch.Tensor:
    """Functional write of `new` [B, H, C, D] into `cache` [B, H, S*C, D] at chunk slot[b]."""
    b, h, c, d = new.shape
    index = (slot[:, None] * c + torch.arange(c, device=new.device))[:, None, :, None].expand(b, h, c, d)
    return cache.scatter(2, index, new)


def ring_validity(t: torch.Tensor, slots: int, chunk: int) -> torch.Tensor:
    """Which ring entries hold a real chunk once chunk `t` [B] has been written: bool [B, slots*chunk]."""
    s = torch.arange(slots, device=t.device)
    held_chunk = t[:, None] - torch.remainder(t[:, None] - s, slots)
    return (held_chunk >= 0).repeat_interleave(chunk, dim=1)


class CrossAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.q = nn.Linear(dim, dim, bias=False)
        self.kv = nn.Linear(dim, 2 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)

    def context_kv(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, n, _ = context.shape
        k, v = self.kv(context).view(b, n, 2, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return k, v

    def _queries(self, x: torch.Tensor, query_scale: torch.Tensor | None) -> torch.Tensor:
        """[B, heads, N, head_dim] queries of x [B, N, dim], times `query_scale` [B, heads] if given."""
        b, n, _ = x.shape
        q = self.q(x).view(b, n, self.heads, self.head_dim).transpose(1, 2)
        if query_scale is not None:
            q = q * query_scale[:, :, None, None].to(q.dtype)
        return q

    def forward(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, context_mask: torch.Tensor,
                bias: torch.Tensor | None = None, query_scale: torch.Tensor | None = None) -> torch.Tensor:
        """context_mask bool [B, Nc]; bias [heads, Nc] or [B, heads, Nc] added to every query's
        scores, [B, heads, N, Nc] to each query's own, or None; query_scale [B, heads] multiplying
        every query's scores, or None."""
        b, n, _ = x.shape
        q = self._queries(x, query_scale)
        mask = context_mask[:, None, None, :]
        if bias is not None:
            mask = per_query_bias(bias).masked_fill(~mask, float("-inf")).to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(out.transpose(1, 2).reshape(b, n, -1))

    def weights(self, x: torch.Tensor, k: torch.Tensor, context_mask: torch.Tensor,
                bias: torch.Tensor | None = None, query_scale: torch.Tensor | None = None) -> torch.Tensor:
        """[B, heads, N, Nc]: the softmax weights `forward` gives each context token, for
        experiments that ask what the decoder reads (forward itself uses the fused kernel)."""
        scores = self._queries(x, query_scale) @ k.transpose(-1, -2) / math.sqrt(self.head_dim)
        if bias is not None:
            scores = scores + per_query_bias(bias)
        return scores.masked_fill(~context_mask[:, None, None, :], float("-inf")).softmax(-1)


def per_query_bias(bias: torch.Tensor) -> torch.Tensor:
    """A score bias [heads, Nc] shared by every row, [B, heads, Nc] shared by a row's queries or
    [B, heads, N, Nc], as [B or 1, heads, N or 1, Nc]."""
    if bias.dim() == 2:
        return bias[None, :, None]
    return bias[:, :, None] if bias.dim() == 3 else bias


class Block(nn.Module):
    """Pre-norm transformer block; attention mode is chosen by the method called."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, mlp_ratio)

    def forward(self, x: torch.Tensor, rope=None, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn.full(self.norm1(x), rope, mask)
        return x + self.mlp(self.norm2(x))

    def chunk_causal(self, x: torch.Tensor, chunk: int, window: int | None, rope) -> torch.Tensor:
        x = x + self.attn.chunk_causal(self.norm1(x), chunk, window, rope)
        return x + self.mlp(self.norm2(x))

    def ring_step(self, x, rope, cache_k, cache_v, slot, key_valid):
        out, cache_k, cache_v = self.attn.ring_step(self.norm1(x), rope, cache_k, cache_v, slot, key_valid)
        x = x + out
        return x + self.mlp(self.norm2(x)), cache_k, cache_v


class TokenLearner(nn.Module):
    """TokenLearner v1.1: an MLP scores every input token for each of `tokens` outputs;
    a softmax over positions turns the scores into pooling weights. The outputs are convex
    combinations of (normalised) inputs, so repeated pooling — the TTM memory — stays bounded."""

    def __init__(self, dim: int, tokens: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.score = MLP(dim, hidden / dim, out_dim=tokens)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        weights = torch.softmax(self.score(x).transpose(1, 2), dim=-1)  # [B, tokens, N]
        return weights @ x


def init_weights(module: nn.Module, std: float) -> None:
    """GPT-2 style: normal(0, std) linears and embeddings, zero biases, unit norms, residual
    output projections scaled down by depth. TokenLearner scorers get fan-in scaling instead:
    with std 0.02 their scores start near zero, every pooled token is the same mean, and the
    read/write/output bottlenecks pass almost nothing until they slowly break the symmetry."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=std)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    residual_std = std / math.sqrt(2 * max(1, _count_blocks(module)))
    for name, p in module.named_parameters():
        if name.endswith(("attn.proj.weight", "cross.proj.weight", "mlp.proj.weight")):
            nn.init.normal_(p, std=residual_std)
    for m in module.modules():
        if isinstance(m, TokenLearner):
            for linear in (m.score.fc, m.score.proj):
                nn.init.normal_(linear.weight, std=1.0 / math.sqrt(linear.in_features))


def _count_blocks(module: nn.Module) -> int:
    return sum(1 for m in module.modules() if isinstance(m, Block)) or 1
