"""Argument checks shared by every chunk-causal attention backend.

Bad arguments are caught here, before any kernel is built, so that a caller gets a
ValueError naming the problem instead of a Triton compile error or a shape error deep
inside PyTorch.
"""

import math
import operator
from dataclasses import dataclass

import torch

TRITON_HEAD_DIMS = (16, 32, 64, 128)  # powers of two (tl.arange), at least 16 (tl.dot's smallest K)
TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_MAX_BLOCK = 256  # the tallest tile a kernel may use: rows past N are addressed too (masked)


@dataclass(frozen=True)
class ChunkCausalArgs:
    """Validated call parameters, normalised: chunk <= N_k, and window None whenever it covers
    every chunk of the keys. Both changes keep the attention pattern and bound the kernels'
    position arithmetic ((chunk index + window) * chunk) by a few N_k, so it cannot overflow int32.
    """

    chunk: int
    window: int | None
    q_start: int
    scale: float

    def window_chunks(self, n_k: int) -> int:
        """The window as a chunk count the kernels can use: 'no window' = more chunks than exist."""
        return self.window if self.window is not None else n_k // self.chunk + 2


def _as_int(value, name: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got a bool ({value})")
    try:
        return operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {type(value).__name__} ({value!r})") from None


def check_arguments(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, chunk, window, q_start, scale
                    ) -> ChunkCausalArgs:
    """Check shapes, dtypes, devices and the chunk parameters; return them normalised."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(f"{name} must have shape [batch, heads, tokens, head_dim], got {tuple(t.shape)}")
        if not t.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got {t.dtype}")
    if k.shape != v.shape:
        raise ValueError(f"k and v must have the same shape, got {tuple(k.shape)} and {tuple(v.shape)}")
    bq, hq, n_q, dq = q.shape
    bk, hk, n_k, dk = k.shape
    if (bq, hq, dq) != (bk, hk, dk):
        raise ValueError(
            f"q {tuple(q.shape)} and k/v {tuple(k.shape)} must agree on batch, heads and head_dim")
    if n_q < 1 or n_k < 1 or dq < 1:
        raise ValueError(f"empty inputs: q {tuple(q.shape)}, k/v {tuple(k.shape)}")
    if n_q > n_k:
        raise ValueError(f"more queries than keys ({n_q} > {n_k}): queries must be the last positions of the keys")
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"q, k, v must share one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if not (q.device == k.device == v.device):
        raise ValueError(f"q, k, v must be on one device, got {q.device}, {k.device}, {v.device}")

    chunk = _as_int(chunk, "chunk")
    if chunk <= 0:
        raise ValueError(f"chunk must be a positive number of tokens, got {chunk}")
    chunk = min(chunk, n_k)  # every position is below n_k: a longer chunk is the same single chunk
    if window is not None:
        window = _as_int(window, "window")
        if window <= 0:
            raise ValueError(f"window must be a positive number of chunks or None (no limit), got {window}")
        if window >= -(-n_k // chunk):  # it reaches back past the first chunk of the keys
            window = None
    q_start = _as_int(q_start, "q_start")
    if q_start < 0 or q_start + n_q > n_k:
        raise ValueError(
            f"q_start={q_start} puts the {n_q} queries at positions {q_start}..{q_start + n_q - 1}, outside the "
            f"{n_k} keys; use q_start = {n_k - n_q} when the queries are the newest positions")
    if scale is None:
        scale = 1.0 / math.sqrt(dq)
    else:
        scale = float(scale)
        if not math.isfinite(scale) or scale <= 0:
            raise ValueError(f"scale must be a positive finite number or None (1/sqrt(head_dim)), got {scale}")
    return ChunkCausalArgs(chunk=chunk, window=window, q_start=q_start, scale=scale)


def triton_unsupported_reason(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> str | None:
    """Why the Triton kernels cannot take these (already checked) tensors, or None if they can."""
    head_dim = q.shape[-1]
    if head_dim not in TRITON_HEAD_DIMS:
        return f"head_dim {head_dim} is not supported by the Triton kernels (supported: {TRITON_HEAD_DIMS})"
    if q.dtype not in TRITON_DTYPES:
        return f"dtype {q.dtype} is not supported by the Triton kernels (supported: fp32, fp16, bf16)"
    if q.device.type != "cuda" and q.dtype == torch.bfloat16:
        return "the Triton CPU interpreter has no bf16 arithmetic; use fp32/fp16 on the CPU or a CUDA device"
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.stride(-1) != 1:
            return (f"{name} has stride {t.stride(-1)} along head_dim; the Triton kernels need head_dim "
                    f"contiguous (call .contiguous() first)")
        if not rows_fit_int32(t):
            return (f"{name} has {t.shape[2]} tokens {t.stride(2)} elements apart, beyond the Triton kernels' "
                    f"int32 row offsets; pass it [B, H, N, D]-contiguous (.contiguous()) or split the call")
    return None


def rows_fit_int32(t: torch.Tensor) -> bool:
    """Whether every row offset inside one (batch, head) of t fits the kernels' int32 arithmetic
    (batch and head offsets are int64)."""
    return (t.shape[2] + _MAX_BLOCK) * t.stride(2) + t.shape[3] < 2**31
