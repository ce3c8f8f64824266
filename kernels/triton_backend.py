"""Launchers and the autograd Function around the Triton chunk-causal kernels.

CUDA tensors get compiled, autotuned kernels. CPU tensors can run the same kernels only
in Triton's interpreter, which a process selects by setting TRITON_INTERPRET=1 before
triton is first imported (Triton fixes the mode then); the tests do so in a subprocess.

Backward: a delta preprocess (rowsum dO·O), one dK/dV pass over key blocks and one dQ
pass over query blocks. Two passes instead of atomically accumulated dQ keep the result
deterministic and avoid fp32 atomics; each pass skips exactly the blocks the forward skips.
"""

import contextlib
import importlib.util
import os
from types import ModuleType

import torch

from kernels.arguments import ChunkCausalArgs


def triton_installed() -> bool:
    return importlib.util.find_spec("triton") is not None


def kernel_module() -> ModuleType:
    """The kernel module, imported on first use so that `import kernels` never needs triton."""
    return importlib.import_module("kernels.triton_chunk_attention")


def interpreter_active() -> bool:
    """Whether this process runs Triton kernels in the CPU interpreter (fixed when triton is imported)."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "on", "yes")


def _launch_context(t: torch.Tensor):
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


def _strides(t: torch.Tensor) -> tuple[int, int, int]:
    return t.stride(0), t.stride(1), t.stride(2)


def dot_precision(dtype: torch.dtype) -> str | None:
    """tl.dot's input precision: for fp32 what torch.matmul would use, decided as FlexAttention does.

    torch's default ("highest") gives exact "ieee" products; "high"/"medium" (or the backend's
    fp32_precision = "tf32") allow TF32 tensor cores. ROCm gets "ieee" like FlexAttention.
    fp16/bf16 products are exact in the fp32 accumulator, so they keep Triton's default (None).
    """
    if dtype != torch.float32:
        return None
    backend = torch.backends.cuda.matmul.fp32_precision
    exact = backend == "ieee" if backend != "none" else torch.get_float32_matmul_precision() == "highest"
    return "ieee" if exact or torch.version.hip else "tf32"


def triton_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, args: ChunkCausalArgs
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Output [B, H, N_q, D] in q's dtype and fp32 log-sum-exp [B, H, N_q]."""
    mod = kernel_module()
    batch, heads, n_q, head_dim = q.shape
    n_k = k.shape[2]
    out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    lse = torch.empty((batch, heads, n_q), dtype=torch.float32, device=q.device)
    fixed = mod.INTERPRET_FWD if mod.INTERPRET else {}
    grid = lambda meta: (triton_cdiv(n_q, meta["BLOCK_M"]), batch * heads)  # noqa: E731
    with _launch_context(q):
        mod.fwd_kernel[grid](
            q, k, v, out, lse, *_strides(q), *_strides(k), *_strides(v), *_strides(out),
            heads, n_q, n_k, args.q_start, args.chunk, args.window_chunks(n_k), args.scale * mod.LOG2E,
            HEAD_DIM=head_dim, PRECISION=dot_precision(q.dtype), **fixed)
    return out, lse


def triton_backward(q, k, v, out, lse, grad_out, grad_lse, args: ChunkCausalArgs, need_dq: bool = True,
                    need_dkdv: bool = True):
    """dq, dk, dv for the forward above (lse as it returned); grad_lse may be None.

    A pass that is not needed is not launched, and its gradients come back as None.
    """
    mod = kernel_module()
    batch, heads, n_q, head_dim = q.shape
    n_k = k.shape[2]
    if grad_out.stride(-1) != 1:
        grad_out = grad_out.contiguous()
    shared = (heads, n_q, n_k, args.q_start, args.chunk, args.window_chunks(n_k), args.scale * mod.LOG2E,
              args.scale)
    meta = dict(HEAD_DIM=head_dim, PRECISION=dot_precision(q.dtype))
    dq = dk = dv = None
    with _launch_context(q):
        delta = _delta(out, grad_out, grad_lse)
        if need_dkdv:
            dk = torch.empty(k.shape, dtype=k.dtype, device=k.device)
            dv = torch.empty(v.shape, dtype=v.dtype, device=v.device)
            fixed = mod.INTERPRET_DKDV if mod.INTERPRET else {}
            mod.dkdv_kernel[lambda m: (triton_cdiv(n_k, m["BLOCK_N"]), batch * heads)](
                q, k, v, grad_out, lse, delta, dk, dv,
                *_strides(q), *_strides(k), *_strides(v), *_strides(grad_out), *_strides(dk), *_strides(dv),
                *shared, **meta, **fixed)
        if need_dq:
            dq = torch.empty(q.shape, dtype=q.dtype, device=q.device)
            fixed = mod.INTERPRET_DQ if mod.INTERPRET else {}
            mod.dq_kernel[lambda m: (triton_cdiv(n_q, m["BLOCK_M"]), batch * heads)](
                q, k, v, grad_out, lse, delta, dq,
                *_strides(q), *_strides(k), *_strides(v), *_strides(grad_out), *_strides(dq),
                *shared, **meta, **fixed)
    return dq, dk, dv


def _delta(out: torch.Tensor, grad_out: torch.Tensor, grad_lse: torch.Tensor | None) -> torch.Tensor:
    """The fp32 row term rowsum(dO·O) - dLSE [B, H, N_q] that both gradient passes read."""
    mod = kernel_module()
    batch, heads, n_q, head_dim = out.shape
    if grad_lse is not None:
        grad_lse = grad_lse.float().contiguous()
    delta = torch.empty((batch, heads, n_q), dtype=torch.float32, device=out.device)
    mod.delta_kernel[(triton_cdiv(n_q, mod.DELTA_BLOCK_M), batch * heads)](
        out, grad_out, grad_lse, delta, *_strides(out), *_strides(grad_out), heads, n_q,
        HEAD_DIM=head_dim, BLOCK_M=mod.DELTA_BLOCK_M, HAS_DLSE=grad_lse is not None)
    return delta


def triton_cdiv(a: int, b: int) -> int:
    return -(-a // b)


class ChunkCausalAttentionFunction(torch.autograd.Function):
    """(q, k, v) -> (out, lse) with the Triton kernels; both outputs are differentiable.

    Gradients are not materialised: an unused lse costs nothing in the backward. Only the
    passes that the inputs requiring grad need are launched (dK and dV come from one pass).
    """

    @staticmethod
    def forward(ctx, q, k, v, args: ChunkCausalArgs):
        out, lse = triton_forward(q, k, v, args)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.args = args
        ctx.set_materialize_grads(False)
        return out, lse

    @staticmethod
    def backward(ctx, grad_out, grad_lse):
        q, k, v, out, lse = ctx.saved_tensors
        if grad_out is None:  # a loss of lse alone
            grad_out = torch.zeros_like(out)
        need_q, need_k, need_v = ctx.needs_input_grad[:3]
        dq, dk, dv = triton_backward(q, k, v, out, lse, grad_out, grad_lse, ctx.args, need_dq=need_q,
                                     need_dkdv=need_k or need_v)
        return dq, dk if need_k else None, dv if need_v else None, None
