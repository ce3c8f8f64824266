"""`chunk_causal_attention`: one entry point, Triton on CUDA, the PyTorch reference elsewhere.

The backend is chosen per call: the `backend` argument, else the STREAMER_ATTENTION_BACKEND
environment variable, else "auto". "auto" uses Triton for CUDA tensors it supports and the
reference for everything else (CPU tensors, other head dims). "triton" forces the kernels
(on CPU tensors they run under Triton's interpreter, slowly: meant for tests) and raises
ValueError when they cannot take the inputs. "reference" forces plain PyTorch.
"""

import os

import torch

from kernels.arguments import check_arguments, triton_unsupported_reason
from kernels.reference import chunk_causal_attention_reference

BACKEND_ENV = "STREAMER_ATTENTION_BACKEND"
BACKENDS = ("auto", "triton", "reference")


def resolve_backend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: str | None = None) -> str:
    """'triton' or 'reference' for these (already validated) tensors."""
    choice = backend if backend is not None else os.environ.get(BACKEND_ENV, "auto")
    choice = choice.strip().lower()
    if choice not in BACKENDS:
        source = "backend argument" if backend is not None else f"${BACKEND_ENV}"
        raise ValueError(f"{source} must be one of {BACKENDS}, got {choice!r}")
    if choice == "reference":
        return "reference"
    from kernels.triton_backend import interpreter_active, triton_installed

    reason = triton_unsupported_reason(q, k, v)
    if choice == "auto":
        return "triton" if q.is_cuda and triton_installed() and reason is None else "reference"
    if not triton_installed():
        raise ValueError("backend 'triton' was requested but triton is not installed (pip install triton)")
    if reason is None and not q.is_cuda and not interpreter_active():
        reason = ("the Triton kernels run on CPU tensors only in Triton's interpreter: set TRITON_INTERPRET=1 "
                  "before the first import of triton, or pass CUDA tensors")
    if reason is not None:
        raise ValueError(f"backend 'triton' cannot run this call: {reason}")
    return "triton"


def chunk_causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, chunk: int,
                           window: int | None = None, q_start: int = 0, scale: float | None = None, *,
                           return_lse: bool = False, backend: str | None = None):
    """Chunk-causal attention over q, k, v of shape [B, H, N, D] (N_q <= N_k).

    Query i has position q_start + i and chunk c = (q_start + i) // chunk; it attends to
    every key j with c - window < j // chunk <= c (all earlier chunks when window is None),
    which is full attention inside its own chunk. scale defaults to 1/sqrt(D).
    Returns out (q's dtype, [B, H, N_q, D]); with return_lse=True returns (out, lse), lse
    the fp32 (fp64 for fp64 inputs) natural-log log-sum-exp of each query's visible scores,
    [B, H, N_q]. Both are differentiable in q, k, v on every backend.
    """
    args = check_arguments(q, k, v, chunk, window, q_start, scale)
    if resolve_backend(q, k, v, backend) == "reference":
        return chunk_causal_attention_reference(q, k, v, args.chunk, args.window, args.q_start, args.scale,
                                                return_lse=return_lse)
    from kernels.triton_backend import ChunkCausalAttentionFunction

    out, lse = ChunkCausalAttentionFunction.apply(q, k, v, args)
    return (out, lse) if return_lse else out
