"""The compiled Triton kernels on a GPU (skipped without CUDA).

Errors are measured against an fp64 reference on the same (rounded) inputs. fp16/bf16
outputs and gradients must stay within 2x of the error PyTorch's own attention makes in the
same dtype (plus about one ulp). The log-sum-exp is held to what fp32 accumulation gives,
1e-5 relative: the kernel's scores come from exact fp16/bf16 products summed in fp32, so
PyTorch's low-precision lse (rounded scores, errors near 0.1 in bf16) is no yardstick for it.
"""

import itertools

import pytest
import torch

from kernels import chunk_causal_attention, chunk_causal_attention_reference

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

LSE_RTOL = 1e-5
FLOOR = {torch.float16: 1e-3, torch.bfloat16: 8e-3}  # about one ulp at 1.0


def _grads(fn, q, k, v, grad_out, chunk, window, q_start):
    q, k, v = (t.detach().clone().requires_grad_(True) for t in (q, k, v))
    out, lse = fn(q, k, v, chunk, window, q_start, return_lse=True)
    dq, dk, dv = torch.autograd.grad(out, (q, k, v), grad_out)
    return {"out": out, "lse": lse, "dq": dq, "dk": dk, "dv": dv}


def _triton(*args, **kwargs):
    return chunk_causal_attention(*args, backend="triton", **kwargs)


def _errors(got, want):
    return {name: (got[name].double() - want[name]).abs().max().item() for name in want}


def _check(dtype, batch, heads, n_q, n_k, head_dim, chunk, window, q_start=None, seed=0, device="cuda"):
    """Kernel vs fp64 reference; q_start defaults to the newest positions (N_k - N_q)."""
    q_start = n_k - n_q if q_start is None else q_start
    gen = torch.Generator(device=device).manual_seed(seed)
    q = torch.randn(batch, heads, n_q, head_dim, device=device, generator=gen).to(dtype)
    k = torch.randn(batch, heads, n_k, head_dim, device=device, generator=gen).to(dtype)
    v = torch.randn(batch, heads, n_k, head_dim, device=device, generator=gen).to(dtype)
    grad_out = torch.randn(batch, heads, n_q, head_dim, device=device, generator=gen).to(dtype)
    exact = _grads(chunk_causal_attention_reference, q.double(), k.double(), v.double(), grad_out.double(),
                   chunk, window, q_start)
    kernel = _errors(_grads(_triton, q, k, v, grad_out, chunk, window, q_start), exact)
    scale = {name: max(1.0, t.abs().max().item()) for name, t in exact.items()}
    assert kernel.pop("lse") <= LSE_RTOL * scale["lse"], "lse: beyond fp32 accumulation error"
    if dtype == torch.float32:
        for name, err in kernel.items():
            assert err <= 1e-4 * scale[name], f"{name}: {err:.3g}"
        return
    ref = _errors(_grads(chunk_causal_attention_reference, q, k, v, grad_out, chunk, window, q_start), exact)
    for name, err in kernel.items():
        assert err <= 2 * ref[name] + FLOOR[dtype] * scale[name], (
            f"{name}: kernel error {err:.3g} vs PyTorch {dtype} error {ref[name]:.3g}")


@pytest.mark.parametrize("dtype,head_dim,chunk,window,n", [
    (dt, d, c, w, n) for dt, d, (c, w), n in itertools.product(
        [torch.float16, torch.bfloat16], [32, 64, 128],
        [(1, None), (24, None), (64, 4), (100, 2), (4096, None)], [256, 1000])
])
def test_training_shapes(dtype, head_dim, chunk, window, n):
    _check(dtype, 2, 3, n, n, head_dim, chunk, window)


@pytest.mark.parametrize("dtype,chunk,window", [
    (dt, c, w) for dt, (c, w) in itertools.product([torch.float16, torch.bfloat16], [(1, None), (24, None), (64, 4)])
])
def test_head_dim_16(dtype, chunk, window):
    _check(dtype, 2, 3, 300, 300, 16, chunk, window)


@pytest.mark.parametrize("dtype,head_dim,chunk,window,cache_chunks", [
    (dt, d, c, w, m) for dt, d, (c, w), m in itertools.product(
        [torch.float16, torch.bfloat16], [64, 128], [(16, None), (32, 8), (8, 64)], [1, 7, 64])
])
def test_streaming_shapes(dtype, head_dim, chunk, window, cache_chunks):
    _check(dtype, 16, 2, chunk, chunk * cache_chunks, head_dim, chunk, window)


@pytest.mark.parametrize("dtype,chunk,window,n_q,q_start", [
    (dt, c, w, n_q, s) for dt, (c, w), (n_q, s) in itertools.product(
        [torch.float16, torch.bfloat16], [(1, None), (24, None), (64, 4), (100, 2)],
        [(200, 333), (37, 517), (1, 0)])
])
def test_queries_inside_the_keys(dtype, chunk, window, n_q, q_start):
    """Queries neither at the start nor at the end: later keys of their own chunk are visible."""
    _check(dtype, 2, 3, n_q, 1000, 64, chunk, window, q_start)


@pytest.mark.parametrize("chunk,window,n_q,q_start", [
    (1, None, 700, None), (37, 3, 700, None), (512, None, 700, None), (37, 3, 400, 211)])
def test_fp32(chunk, window, n_q, q_start):
    _check(torch.float32, 1, 2, n_q, 700, 64, chunk, window, q_start)


def test_strided_layout_matches_contiguous():
    x = torch.randn(2, 300, 4, 3, 64, device="cuda", dtype=torch.bfloat16)  # [B, N, H, (q,k,v), D]
    q, k, v = (x[..., i, :].transpose(1, 2) for i in range(3))
    strided = chunk_causal_attention(q, k, v, 32, 2, backend="triton")
    contiguous = chunk_causal_attention(q.contiguous(), k.contiguous(), v.contiguous(), 32, 2, backend="triton")
    torch.testing.assert_close(strided, contiguous, atol=0, rtol=0)
