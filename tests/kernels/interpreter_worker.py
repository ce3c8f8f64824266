"""Runs chunk-causal attention cases through the Triton kernels in Triton's CPU interpreter.

Triton fixes interpreted-versus-compiled when it is first imported, and other test modules
in the same pytest process may import it first, so the interpreter cases run here, in a
fresh process started with TRITON_INTERPRET=1. Input: a JSON list of cases on stdin.
Output: one JSON object per case on stdout with the kernel's and, for fp16, the fp16
reference's largest errors against an fp32 reference (errors are measured, the test judges),
how often each Triton kernel was launched for the case, the grid of its last launch, and
the tiles the backend reports (`chosen_tiles`).
A case's "pin", if any, is set as $STREAMER_ATTENTION_CONFIG while the kernels run.
"""

import json
import os
import sys
from collections import Counter

import torch

from kernels import chunk_causal_attention, chunk_causal_attention_reference
from kernels.triton_backend import chosen_tiles, kernel_module
from kernels.tuning import CONFIG_ENV

DTYPES = {"fp32": torch.float32, "fp16": torch.float16}
KERNELS = ("fwd_kernel", "delta_kernel", "dkdv_kernel", "dq_kernel")
LAUNCHES: Counter = Counter()
GRIDS: dict = {}


class _CountedKernel:
    """Stands in for a module-level kernel object; counts its launches and keeps the last grid."""

    def __init__(self, name: str, kernel) -> None:
        self.name, self.kernel = name, kernel

    def __getitem__(self, grid):
        LAUNCHES[self.name] += 1
        GRIDS[self.name] = list(grid)
        return self.kernel[grid]


def _count_launches() -> None:
    mod = kernel_module()
    for name in KERNELS:
        setattr(mod, name, _CountedKernel(name, getattr(mod, name)))


def _inputs(case: dict) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(case["seed"])
    b, h, n_q, n_k, d = case["batch"], case["heads"], case["n_q"], case["n_k"], case["head_dim"]
    dtype = DTYPES[case["dtype"]]

    def make(n: int) -> torch.Tensor:
        if case.get("layout") == "bnhd":  # [B, N, H, D] storage seen as [B, H, N, D]: strided heads
            return torch.randn(b, n, h, d, generator=gen).to(dtype).transpose(1, 2)
        return torch.randn(b, h, n, d, generator=gen).to(dtype)

    q, k, v = make(n_q), make(n_k), make(n_k)
    grad_out = torch.randn(b, h, n_q, d, generator=gen).to(dtype)
    grad_lse = torch.randn(b, h, n_q, generator=gen)
    return q, k, v, grad_out, grad_lse


def _run(fn, q, k, v, grad_out, grad_lse, case):
    """Forward, then the gradients of the case's loss for the inputs named in case["grads"]."""
    names = [name for name in "qkv" if name in case["grads"]]
    q, k, v = (t.detach().clone().requires_grad_(name in names) for name, t in zip("qkv", (q, k, v)))
    out, lse = fn(q, k, v, case["chunk"], case["window"], case["q_start"], return_lse=True)
    terms = {"out": (out, grad_out), "lse": (lse, grad_lse)}
    outputs, upstream = zip(*(terms[term] for term in case["loss"].split("+")))
    grads = torch.autograd.grad(outputs, [{"q": q, "k": k, "v": v}[name] for name in names], upstream)
    return {"out": out, "lse": lse, **{f"d{name}": g for name, g in zip(names, grads)}}


def _max_errors(got: dict, want: dict) -> dict:
    return {name: (got[name].float() - want[name].float()).abs().max().item() for name in want}


def run_case(case: dict) -> dict:
    q, k, v, grad_out, grad_lse = _inputs(case)
    exact = _run(chunk_causal_attention_reference, q.float(), k.float(), v.float(), grad_out.float(), grad_lse,
                 case)
    triton_fn = lambda *a, **kw: chunk_causal_attention(*a, backend="triton", **kw)  # noqa: E731
    LAUNCHES.clear()
    GRIDS.clear()
    os.environ[CONFIG_ENV] = case.get("pin", "")
    try:
        kernel = _run(triton_fn, q, k, v, grad_out, grad_lse, case)
        tiles = chosen_tiles()
    finally:
        del os.environ[CONFIG_ENV]
    result = {"id": case["id"], "kernel": _max_errors(kernel, exact), "launches": dict(LAUNCHES),
              "grids": dict(GRIDS), "tiles": tiles}
    if case["dtype"] != "fp32":
        result["reference"] = _max_errors(_run(chunk_causal_attention_reference, q, k, v, grad_out, grad_lse,
                                               case), exact)
    result["scale"] = {name: t.abs().max().item() for name, t in exact.items()}
    return result


def _run_or_report(case: dict) -> dict:
    """One case's result, or its error, so that one failing case does not hide the others."""
    try:
        return run_case(case)
    except Exception as exc:
        return {"id": case["id"], "error": f"{type(exc).__name__}: {exc}"}


def main() -> int:
    cases = json.load(sys.stdin)
    _count_launches()
    results = [_run_or_report(case) for case in cases]
    json.dump(results, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
