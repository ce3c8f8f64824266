"""The PyTorch reference and the dispatcher: semantics, gradients, backend choice, errors."""

import math

import pytest
import torch
import torch.nn.functional as F

from kernels import BACKEND_ENV, chunk_causal_attention, chunk_causal_attention_reference, chunk_causal_mask
from kernels.arguments import check_arguments


def _naive(q, k, v, chunk, window, q_start, scale=None):
    """Attention written out position by position from the definition, in fp64."""
    b, h, n_q, d = q.shape
    n_k = k.shape[2]
    scale = 1 / math.sqrt(d) if scale is None else scale
    out = torch.zeros(b, h, n_q, d, dtype=torch.float64)
    lse = torch.zeros(b, h, n_q, dtype=torch.float64)
    for i in range(n_q):
        c = (q_start + i) // chunk
        keys = [j for j in range(n_k) if j // chunk <= c and (window is None or j // chunk > c - window)]
        s = torch.einsum("bhd,bhnd->bhn", q[:, :, i].double(), k[:, :, keys].double()) * scale
        out[:, :, i] = torch.einsum("bhn,bhnd->bhd", s.softmax(-1), v[:, :, keys].double())
        lse[:, :, i] = s.logsumexp(-1)
    return out, lse


def _qkv(b=2, h=3, n_q=19, n_k=19, d=8, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(b, h, n_q, d, generator=gen, dtype=dtype),
            torch.randn(b, h, n_k, d, generator=gen, dtype=dtype),
            torch.randn(b, h, n_k, d, generator=gen, dtype=dtype))


@pytest.mark.parametrize("chunk,window,n_q,n_k", [
    (1, None, 19, 19), (4, None, 19, 19), (4, 2, 19, 19), (5, 1, 19, 19), (32, None, 19, 19),
    (4, 3, 6, 23), (3, None, 1, 23),
])
def test_reference_matches_definition(chunk, window, n_q, n_k):
    q, k, v = _qkv(n_q=n_q, n_k=n_k)
    out, lse = chunk_causal_attention_reference(q, k, v, chunk, window, n_k - n_q, return_lse=True)
    want_out, want_lse = _naive(q, k, v, chunk, window, n_k - n_q)
    torch.testing.assert_close(out.double(), want_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lse.double(), want_lse, atol=1e-5, rtol=1e-5)


def test_reference_lse_is_exact_for_fp64_inputs():
    """The GPU tests hold the kernel's lse to 1e-5 relative against this fp64 reference."""
    q, k, v = (t.double() for t in _qkv(n_q=6, n_k=23))
    _, lse = chunk_causal_attention_reference(q, k, v, 4, 3, 17, return_lse=True)
    assert lse.dtype == torch.float64
    torch.testing.assert_close(lse, _naive(q, k, v, 4, 3, 17)[1], atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("chunk,window,want_chunk,want_window", [
    (2**40, None, 19, None), (2**40, 2**40, 19, None), (3, 2**40, 3, None), (3, 7, 3, None), (3, 6, 3, 6),
])
def test_huge_chunk_and_window_are_normalised_to_the_same_pattern(chunk, window, want_chunk, want_window):
    q, k, v = _qkv(n_q=7, n_k=19)  # chunk 3: seven key chunks, so window 7 reaches chunk 0 from chunk 6
    args = check_arguments(q, k, v, chunk, window, 12, None)
    assert (args.chunk, args.window) == (want_chunk, want_window)
    out = chunk_causal_attention_reference(q, k, v, chunk, window, 12)
    torch.testing.assert_close(out.double(), _naive(q, k, v, chunk, window, 12)[0], atol=1e-5, rtol=1e-5)


def test_chunk_one_is_causal_and_large_chunk_is_full_attention():
    q, k, v = _qkv()
    causal = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(chunk_causal_attention(q, k, v, chunk=1), causal)
    torch.testing.assert_close(chunk_causal_attention(q, k, v, chunk=19), F.scaled_dot_product_attention(q, k, v))


def test_mask_sees_own_chunk_and_window():
    mask = chunk_causal_mask(8, 8, chunk=2, window=2)
    # Position 5 is in chunk 2: it sees chunks 1 and 2 (keys 2..5), including the later key 5.
    assert mask[5].nonzero().flatten().tolist() == [2, 3, 4, 5]
    assert mask[4].nonzero().flatten().tolist() == [2, 3, 4, 5]
    streaming = chunk_causal_mask(2, 8, chunk=2, window=None, q_start=6)
    assert streaming.all()


def test_reference_gradients_match_finite_differences():
    q, k, v = (t.double().requires_grad_(True) for t in _qkv(b=1, h=2, n_q=7, n_k=11, d=4))
    assert torch.autograd.gradcheck(
        lambda q, k, v: chunk_causal_attention_reference(q, k, v, chunk=3, window=2, q_start=4), (q, k, v))


def test_auto_backend_on_cpu_uses_reference_and_supports_autograd():
    q, k, v = (t.requires_grad_(True) for t in _qkv(d=48))  # a head dim the Triton kernels do not take
    out = chunk_causal_attention(q, k, v, chunk=4, window=2)
    out.sum().backward()
    assert out.dtype == q.dtype and out.shape == q.shape
    assert all(t.grad is not None and torch.isfinite(t.grad).all() for t in (q, k, v))


def test_environment_variable_selects_backend(monkeypatch):
    q, k, v = _qkv(d=32)
    monkeypatch.setenv(BACKEND_ENV, "reference")
    torch.testing.assert_close(chunk_causal_attention(q, k, v, 4), chunk_causal_attention_reference(q, k, v, 4))
    monkeypatch.setenv(BACKEND_ENV, "fastest")
    with pytest.raises(ValueError, match=BACKEND_ENV):
        chunk_causal_attention(q, k, v, 4)


def test_triton_on_cpu_without_interpreter_is_refused(monkeypatch):
    pytest.importorskip("triton")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    q, k, v = _qkv(d=32)
    with pytest.raises(ValueError, match="TRITON_INTERPRET"):
        chunk_causal_attention(q, k, v, 4, backend="triton")


def _bad_calls():
    q, k, v = _qkv(d=32)
    return {
        "k and v must have the same shape": lambda: chunk_causal_attention(q, k, v[:, :, :5], 4),
        "agree on batch": lambda: chunk_causal_attention(q, k[:1], v[:1], 4),
        "more queries than keys": lambda: chunk_causal_attention(q, k[:, :, :5], v[:, :, :5], 4),
        "shape \\[batch, heads, tokens, head_dim\\]": lambda: chunk_causal_attention(q[0], k[0], v[0], 4),
        "chunk must be a positive": lambda: chunk_causal_attention(q, k, v, 0),
        "chunk must be an integer": lambda: chunk_causal_attention(q, k, v, 2.5),
        "window must be a positive": lambda: chunk_causal_attention(q, k, v, 4, window=0),
        "q_start": lambda: chunk_causal_attention(q, k, v, 4, q_start=3),
        "one dtype": lambda: chunk_causal_attention(q, k.double(), v, 4),
        "floating-point": lambda: chunk_causal_attention(q.long(), k, v, 4),
        "scale must be": lambda: chunk_causal_attention(q, k, v, 4, scale=-1.0),
        "backend argument": lambda: chunk_causal_attention(q, k, v, 4, backend="cuda"),
    }


@pytest.mark.parametrize("message", list(_bad_calls()))
def test_bad_arguments_raise_value_error(message):
    with pytest.raises(ValueError, match=message):
        _bad_calls()[message]()


def test_triton_refuses_offsets_beyond_int32():
    """Row offsets (position x row stride) are int32 in the kernels; larger ones would wrap."""
    from kernels.arguments import triton_unsupported_reason

    fits = torch.empty(1, 2, 2**21, 64, device="meta")
    assert triton_unsupported_reason(fits, fits, fits) is None
    # [B, N, H, D] storage seen as [B, H, N, D]: the row stride is H * D = 4096.
    long = torch.empty(1, 2**20, 64, 64, device="meta").transpose(1, 2)
    assert "int32" in triton_unsupported_reason(long, long, long)


@pytest.mark.parametrize("message,make", [
    ("head_dim 48", lambda: _qkv(d=48)),
    ("no bf16", lambda: _qkv(d=32, dtype=torch.bfloat16)),
    ("stride", lambda: tuple(t.transpose(-1, -2).contiguous().transpose(-1, -2) for t in _qkv(d=32, n_k=32, n_q=32))),
])
def test_triton_backend_refuses_what_it_cannot_run(message, make, monkeypatch):
    pytest.importorskip("triton")
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # so the refusal is about the inputs, not the device
    q, k, v = make()
    with pytest.raises(ValueError, match=message):
        chunk_causal_attention(q, k, v, 4, backend="triton")
