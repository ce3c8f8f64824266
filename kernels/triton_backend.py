"""Launchers and the autograd Function around the Triton chunk-causal kernels.

CUDA tensors get compiled, autotuned kernels. CPU tensors can run the same kernels only
in Triton's interpreter, which a process selects by setting TRITON_INTERPRET=1 before
triton is first imported (Triton fixes the mode then); the tests do so in a subprocess.

Backward: a delta preprocess (rowsum dO·O - dLSE), one dK/dV pass over key blocks and one
dQ pass over query blocks; each pass skips exactly the blocks the forward skips.

Reproducibility: no pass uses atomics (two passes instead of an atomically accumulated dQ),
so the tiles alone fix the summation order: with the same tiles, GPU model and Triton
version, the same inputs give bitwise the same outputs and gradients. Autotuning chooses the
tiles by timing, once per shape bucket and process, so two runs or two DDP ranks may choose
differently and then differ in the last bits. Pinning the tiles in $STREAMER_ATTENTION_CONFIG
(see `kernels.tuning`) makes every run and rank use the same ones.
"""

import contextlib
import importlib.util
import os
from types import ModuleType

import torch

from kernels.arguments import ChunkCausalArgs, rows_fit_int32
from kernels.tuning import TILE_FIELDS, TUNED_KERNELS, format_pins, pinned_tiles, tune_key


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


def _fixed_tiles(name: str) -> dict[str, int] | None:
    """Tiles a launch must use: pinned in the environment, else the interpreter's; None: autotune."""
    pinned = pinned_tiles(name)
    if pinned is not None:
        return pinned
    mod = kernel_module()
    return dict(mod.INTERPRET_TILES[name]) if mod.INTERPRET else None


def _launch(name: str, rows: int, row_block: str, batch_heads: int, *args, **meta) -> None:
    """One program per `row_block` rows and per (batch, head), with fixed or autotuned tiles."""
    mod = kernel_module()
    tiles = _fixed_tiles(name)
    if tiles is None:
        mod.TUNED[name][lambda m: (triton_cdiv(rows, m[row_block]), batch_heads)](*args, **meta)
    else:
        getattr(mod, f"{name}_kernel")[(triton_cdiv(rows, tiles[row_block]), batch_heads)](*args, **meta, **tiles)


def chosen_tiles() -> str:
    """Each kernel's tiles, in $STREAMER_ATTENTION_CONFIG syntax (to report or to pin).

    Fixed tiles where pinned (or interpreted), else those of the kernel's latest autotuned launch.
    """
    mod = kernel_module()
    chosen = {}
    for name in TUNED_KERNELS:
        tiles = _fixed_tiles(name)
        best = getattr(mod.TUNED.get(name), "best_config", None)
        if tiles is None and best is not None:
            tiles = {**best.kwargs, "num_warps": best.num_warps, "num_stages": best.num_stages}
        if tiles is not None:
            chosen[name] = {field: tiles[field] for field in TILE_FIELDS}
    return format_pins(chosen)


def _shape_args(q: torch.Tensor, k: torch.Tensor, args: ChunkCausalArgs) -> tuple:
    """H, N_Q, N_K, Q_START, CHUNK, WINDOW and qk_scale (base 2): the scalars every pass takes."""
    heads, n_q, n_k = q.shape[1], q.shape[2], k.shape[2]
    return heads, n_q, n_k, args.q_start, args.chunk, args.window_chunks(n_k), args.scale * kernel_module().LOG2E


def _tune_args(q: torch.Tensor, k: torch.Tensor, args: ChunkCausalArgs) -> tuple[int, int, int, int]:
    """TUNE_N_Q, TUNE_N_K, TUNE_CHUNK, TUNE_SPAN: the bucketed shape the autotuner keys on."""
    n_k = k.shape[2]
    return tune_key(q.shape[2], n_k, args.chunk, args.window_chunks(n_k))


def triton_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, args: ChunkCausalArgs
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Output [B, H, N_q, D] in q's dtype and fp32 log-sum-exp [B, H, N_q]."""
    batch, heads, n_q, head_dim = q.shape
    out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    lse = torch.empty((batch, heads, n_q), dtype=torch.float32, device=q.device)
    with _launch_context(q):
        _launch("fwd", n_q, "BLOCK_M", batch * heads,
                q, k, v, out, lse, *_strides(q), *_strides(k), *_strides(v), *_strides(out),
                *_shape_args(q, k, args), *_tune_args(q, k, args),
                HEAD_DIM=head_dim, PRECISION=dot_precision(q.dtype))
    return out, lse


def triton_backward(q, k, v, out, lse, grad_out, grad_lse, args: ChunkCausalArgs, need_dq: bool = True,
                    need_dkdv: bool = True):
    """dq, dk, dv for the forward above (lse as it returned); grad_lse may be None.

    A pass that is not needed is not launched, and its gradients come back as None.
    """
    batch, heads, n_q, head_dim = q.shape
    n_k = k.shape[2]
    if grad_out.stride(-1) != 1 or not rows_fit_int32(grad_out):  # contiguous fits: q does
        grad_out = grad_out.contiguous()
    shared = (*_shape_args(q, k, args), args.scale, *_tune_args(q, k, args))
    meta = dict(HEAD_DIM=head_dim, PRECISION=dot_precision(q.dtype))
    dq = dk = dv = None
    with _launch_context(q):
        delta = _delta(out, grad_out, grad_lse)
        if need_dkdv:
            dk = torch.empty(k.shape, dtype=k.dtype, device=k.device)
            dv = torch.empty(v.shape, dtype=v.dtype, device=v.device)
            _launch("dkdv", n_k, "BLOCK_N", batch * heads,
                    q, k, v, grad_out, lse, delta, dk, dv,
                    *_strides(q), *_strides(k), *_strides(v), *_strides(grad_out), *_strides(dk), *_strides(dv),
                    *shared, **meta)
        if need_dq:
            dq = torch.empty(q.shape, dtype=q.dtype, device=q.device)
            _launch("dq", n_q, "BLOCK_M", batch * heads,
                    q, k, v, grad_out, lse, delta, dq,
                    *_strides(q), *_strides(k), *_strides(v), *_strides(grad_out), *_strides(dq),
                    *shared, **meta)
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
