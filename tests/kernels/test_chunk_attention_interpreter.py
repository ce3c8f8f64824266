"""The Triton kernels, run in Triton's CPU interpreter, against the PyTorch reference.

Forward output, log-sum-exp and the gradients of a loss on either or both, over chunk
sizes aligned and not aligned to the blocks (the interpreter tiling is 16/32 rows), chunk = 1
(plain causal), chunk >= N (full attention), windows, streaming queries (N_q < N_k,
q_start > 0), head dims, batch and heads, a strided layout, fp32 and fp16 (the interpreter
has no bf16).
"""

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kernels.tuning import parse_pins

pytest.importorskip("triton")

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("interpreter_worker.py")


def _case(batch=1, heads=2, n_q=48, n_k=None, head_dim=32, chunk=8, window=None, q_start=None,
          dtype="fp32", layout="bhnd", loss="out", grads="qkv", seed=0) -> dict:
    """One interpreter case; `loss` is "out", "lse" or "out+lse", `grads` the inputs that require grad."""
    n_k = n_q if n_k is None else n_k
    q_start = n_k - n_q if q_start is None else q_start
    case = dict(batch=batch, heads=heads, n_q=n_q, n_k=n_k, head_dim=head_dim, chunk=chunk, window=window,
                q_start=q_start, dtype=dtype, layout=layout, loss=loss, grads=grads, seed=seed)
    case["id"] = "-".join(f"{k}={v}" for k, v in case.items() if k != "seed")
    return case


# Chunk sizes against the 16/32 tiling: 1 = causal, 5 and 24 unaligned, 16 and 32 aligned,
# 100 > N = full attention; windows of one chunk, a few chunks, and none.
CASES = [_case(chunk=c, window=w, n_q=n) for c, w, n in itertools.product(
    [1, 5, 16, 24, 100], [None, 1, 3], [48, 37])]
CASES += [
    _case(head_dim=16, chunk=12, window=2, n_q=40),
    _case(head_dim=64, chunk=12, window=2, n_q=40),
    _case(head_dim=128, chunk=8, n_q=33, heads=1),
    _case(batch=3, heads=1, chunk=7, window=2, n_q=29),
    # Streaming: the newest chunk of queries against a longer cache of keys.
    _case(n_q=8, n_k=72, chunk=8, window=4),
    _case(n_q=8, n_k=72, chunk=8),
    _case(n_q=20, n_k=70, chunk=7, window=3),
    _case(n_q=5, n_k=70, chunk=16, window=2),
    # Queries not at the end of the keys: later keys in the query's own chunk are visible.
    _case(n_q=10, n_k=64, q_start=20, chunk=16, window=2),
    _case(layout="bnhd", chunk=6, window=2, n_q=40, heads=3),
    # Chunk and window far beyond the keys: (chunk + window) * chunk once overflowed int32 in
    # the dK/dV pass, which then returned zeros.
    _case(chunk=2**30, n_q=40),
    _case(chunk=2**31 - 1, n_q=40),
    _case(chunk=3, window=10**9, n_q=40),
    _case(chunk=3, window=2**31 - 1, n_q=40),
    _case(dtype="fp16", chunk=8, window=None, n_q=48),
    _case(dtype="fp16", chunk=5, window=2, n_q=37),
    _case(dtype="fp16", chunk=8, window=3, n_q=16, n_k=64, head_dim=64),
    _case(dtype="fp16", chunk=8, window=2, n_q=37, head_dim=16),
    # A loss that uses the log-sum-exp too (its gradient adds to the softmax backward), or only it.
    _case(chunk=5, window=2, n_q=37, loss="out+lse"),
    _case(n_q=20, n_k=70, chunk=7, window=3, loss="out+lse"),
    _case(chunk=16, n_q=48, loss="lse", grads="qk"),  # lse does not depend on v
    _case(dtype="fp16", chunk=8, window=3, n_q=37, loss="out+lse"),
    # Gradients for only some inputs: the backward launches only the passes they need.
    _case(chunk=5, window=2, n_q=37, grads="q"),
    _case(chunk=5, window=2, n_q=37, grads="kv"),
    _case(n_q=20, n_k=70, chunk=7, window=3, grads="k", loss="out+lse"),
    _case(dtype="fp16", chunk=5, window=2, n_q=37, grads="v"),
]
# Tiles pinned through the environment for two of the three tuned kernels; dkdv keeps the default.
PINNED = _case(chunk=24, window=2, n_q=48)
PINNED["pin"] = "fwd:BLOCK_M=32,BLOCK_N=64,num_warps=4,num_stages=3;dq:BLOCK_M=16,BLOCK_N=64,num_warps=4,num_stages=2"
PINNED["id"] += "-pinned"
CASES.append(PINNED)


@pytest.fixture(scope="module")
def interpreter_results() -> dict:
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=os.pathsep.join(
        [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    proc = subprocess.run([sys.executable, str(WORKER)], input=json.dumps(CASES), capture_output=True,
                          text=True, cwd=REPO, env=env, timeout=540)
    assert proc.returncode == 0, f"interpreter worker failed:\n{proc.stderr[-4000:]}"
    return {result["id"]: result for result in json.loads(proc.stdout)}


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_kernel_matches_reference(case, interpreter_results):
    result = interpreter_results[case["id"]]
    assert "error" not in result, result.get("error")
    for name, err in result["kernel"].items():
        scale = max(1.0, result["scale"][name])
        if case["dtype"] == "fp32":
            assert err <= 2e-5 * scale, f"{name}: max error {err:.3g} against the fp32 reference"
        else:
            # Within 2x of PyTorch's own error in the same dtype, plus a few fp16 ulps of slack.
            ref_err = result["reference"][name]
            assert err <= 2 * ref_err + 2e-3 * scale, (
                f"{name}: kernel error {err:.3g} vs fp16 reference error {ref_err:.3g}")


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_backward_launches_only_the_passes_it_needs(case, interpreter_results):
    launches = interpreter_results[case["id"]].get("launches", {})
    want = {"fwd_kernel": 1, "delta_kernel": 1}
    if "k" in case["grads"] or "v" in case["grads"]:
        want["dkdv_kernel"] = 1
    if "q" in case["grads"]:
        want["dq_kernel"] = 1
    assert launches == want


def test_pinned_tiles_replace_the_default_tiling(interpreter_results):
    result = interpreter_results[PINNED["id"]]
    grids = result["grids"]
    # 48 queries: 2 blocks of 32 rows (pinned fwd), 3 of 16 (pinned dq); 48 keys: 2 blocks of 32 (dkdv default).
    assert (grids["fwd_kernel"][0], grids["dq_kernel"][0], grids["dkdv_kernel"][0]) == (2, 3, 2)
    reported, pinned = parse_pins(result["tiles"]), parse_pins(PINNED["pin"])
    assert (reported["fwd"], reported["dq"]) == (pinned["fwd"], pinned["dq"])
    assert (reported["dkdv"]["BLOCK_M"], reported["dkdv"]["BLOCK_N"]) == (16, 32)
