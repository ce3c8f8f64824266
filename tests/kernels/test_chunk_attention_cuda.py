"""The compiled Triton kernels on a GPU (skipped without CUDA).

Low-precision tolerance: against an fp32 reference on the same inputs, the kernel's error
must stay within 2x of the error PyTorch's own attention makes in the same dtype.
"""

import itertools

import pytest
import torch

from kernels import chunk_causal_attention, chunk_causal_attention_reference

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def _grads(fn, q, k, v, grad_out, chunk, window, q_start):
    q, k, v = (t.detach().clone().requires_grad_(True) for t in (q, k, v))
    out, lse = fn(q, k, v, chunk, window, q_start, return_lse=True)
    dq, dk, dv = torch.autograd.grad(out, (q, k, v), grad_out)
    return {"out": out, "lse": lse, "dq": dq, "dk": dk, "dv": dv}


def _triton(*args, **kwargs):
    return chunk_causal_attention(*args, backend="triton", **kwargs)


def _errors(got, want):
    return {name: (got[name].float() - want[name].float()).abs().max().item() for name in want}


def _check(dtype, batch, heads, n_q, n_k, head_dim, chunk, window, seed=0):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    q = torch.randn(batch, heads, n_q, head_dim, device="cuda", generator=gen).to(dtype)
    k = torch.randn(batch, heads, n_k, head_dim, device="cuda", generator=gen).to(dtype)
    v = torch.randn(batch, heads, n_k, head_dim, device="cuda", generator=gen).to(dtype)
    grad_out = torch.randn(batch, heads, n_q, head_dim, device="cuda", generator=gen).to(dtype)
    q_start = n_k - n_q
    exact = _grads(chunk_causal_attention_reference, q.float(), k.float(), v.float(), grad_out.float(),
                   chunk, window, q_start)
    kernel = _errors(_grads(_triton, q, k, v, grad_out, chunk, window, q_start), exact)
    if dtype == torch.float32:
        for name, err in kernel.items():
            assert err <= 1e-4 * max(1.0, exact[name].abs().max().item()), f"{name}: {err:.3g}"
        return
    ref = _errors(_grads(chunk_causal_attention_reference, q, k, v, grad_out, chunk, window, q_start), exact)
    for name, err in kernel.items():
        floor = 1e-3 if dtype == torch.float16 else 8e-3
        assert err <= 2 * ref[name] + floor * max(1.0, exact[name].abs().max().item()), (
            f"{name}: kernel error {err:.3g} vs PyTorch {dtype} error {ref[name]:.3g}")


@pytest.mark.parametrize("dtype,head_dim,chunk,window,n", [
    (dt, d, c, w, n) for dt, d, (c, w), n in itertools.product(
        [torch.float16, torch.bfloat16], [32, 64, 128],
        [(1, None), (24, None), (64, 4), (100, 2), (4096, None)], [256, 1000])
])
def test_training_shapes(dtype, head_dim, chunk, window, n):
    _check(dtype, 2, 3, n, n, head_dim, chunk, window)


@pytest.mark.parametrize("dtype,head_dim,chunk,window,cache_chunks", [
    (dt, d, c, w, m) for dt, d, (c, w), m in itertools.product(
        [torch.float16, torch.bfloat16], [64, 128], [(16, None), (32, 8), (8, 64)], [1, 7, 64])
])
def test_streaming_shapes(dtype, head_dim, chunk, window, cache_chunks):
    _check(dtype, 16, 2, chunk, chunk * cache_chunks, head_dim, chunk, window)


@pytest.mark.parametrize("chunk,window", [(1, None), (37, 3), (512, None)])
def test_fp32(chunk, window):
    _check(torch.float32, 1, 2, 700, 700, 64, chunk, window)


def test_strided_layout_matches_contiguous():
    x = torch.randn(2, 300, 4, 3, 64, device="cuda", dtype=torch.bfloat16)  # [B, N, H, (q,k,v), D]
    q, k, v = (x[..., i, :].transpose(1, 2) for i in range(3))
    strided = chunk_causal_attention(q, k, v, 32, 2, backend="triton")
    contiguous = chunk_causal_attention(q.contiguous(), k.contiguous(), v.contiguous(), 32, 2, backend="triton")
    torch.testing.assert_close(strided, contiguous, atol=0, rtol=0)
