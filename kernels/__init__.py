"""Attention kernels: chunk-causal attention (Triton on CUDA, PyTorch reference elsewhere)."""

from kernels.dispatch import BACKEND_ENV, BACKENDS, chunk_causal_attention, resolve_backend
from kernels.reference import chunk_causal_attention_reference, chunk_causal_mask

__all__ = [
    "BACKEND_ENV",
    "BACKENDS",
    "chunk_causal_attention",
    "chunk_causal_attention_reference",
    "chunk_causal_mask",
    "resolve_backend",
]
