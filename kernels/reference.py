"""Chunk-causal attention in plain PyTorch: the ground truth for tests and the CPU path.

SDPA with an explicit boolean mask. The mask is [N_q, N_k] and broadcast over batch and
heads, so nothing larger than PyTorch's own attention needs is materialised; it is cached
per shape because a streaming model asks for the same one every step.
"""

from functools import lru_cache

import torch
import torch.nn.functional as F

from kernels.arguments import check_arguments


@lru_cache(maxsize=64)
def _cached_mask(n_q: int, n_k: int, chunk: int, window: int | None, q_start: int,
                 device: torch.device) -> torch.Tensor:
    q_chunk = (torch.arange(n_q, device=device) + q_start) // chunk
    k_chunk = torch.arange(n_k, device=device) // chunk
    visible = k_chunk[None, :] <= q_chunk[:, None]
    if window is not None:
        visible &= k_chunk[None, :] > q_chunk[:, None] - window
    return visible


def chunk_causal_mask(n_q: int, n_k: int, chunk: int, window: int | None = None, q_start: int = 0,
                      device: torch.device | str | None = None) -> torch.Tensor:
    """Boolean [n_q, n_k] mask: True where query i (position q_start + i) may see key j."""
    return _cached_mask(n_q, n_k, chunk, window, q_start, torch.device(device or "cpu"))


def chunk_causal_attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, chunk: int,
                                     window: int | None = None, q_start: int = 0, scale: float | None = None,
                                     return_lse: bool = False):
    """Same contract as `kernels.chunk_causal_attention`; differentiable through PyTorch autograd.

    With return_lse=True returns (out, lse), lse the [B, H, N_q] log-sum-exp of the scaled,
    masked scores (natural log), in fp32, or fp64 for fp64 inputs (an exact reference).
    """
    args = check_arguments(q, k, v, chunk, window, q_start, scale)
    mask = chunk_causal_mask(q.shape[2], k.shape[2], args.chunk, args.window, args.q_start, q.device)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=args.scale)
    if not return_lse:
        return out
    scores = torch.matmul(q, k.transpose(-1, -2)).to(torch.promote_types(q.dtype, torch.float32)) * args.scale
    lse = torch.logsumexp(scores.masked_fill(~mask, float("-inf")), dim=-1)
    return out, lse
