"""Benchmark chunk-causal attention against the alternatives, side by side in one run.

    python -m bench.attention            # CUDA: full matrix, results/attention-<device>.json + .png
    python -m bench.attention --smoke    # CPU or GPU: tiny shapes, reference only (exercises the code)
    python -m bench.attention --patterns combiner --head-dims 64 --seq-lens 4096 16384   # a slice

Training case: the attention patterns the model uses (latent model: chunk 8/16/32, window
8/16; Transformer combiner: chunk 56/130/432, window 4/8/16) and long unwindowed ones, at
B·N = 16k tokens per shape. TFLOP/s of forward, backward and forward+backward with
FlashAttention's convention (forward = 4·B·H·D·visible query-key pairs, backward = 2.5 ×
forward), for our Triton kernel, FlexAttention with the same block mask (one compiled
function for every shape, its compile settings in the report), SDPA with a dense boolean
mask, xformers where installed, and SDPA's flash and cuDNN backends on plain causal
attention of the same length (near-upper bounds, counted with their own causal pairs).

Every method's output and gradients are checked before it is timed: against an fp32
reference on the same inputs, the error may be at most 2x PyTorch's own error in the bench
dtype plus about one ulp. A method that disagrees is not timed; its row carries the error,
a warning goes to stderr, and the run exits with status 1.

Streaming case: one chunk of queries against a cache of 1–64 chunks for many streams;
memory-bound, so latency and achieved GB/s (q, k, v read, out written once) against the
card's bandwidth, next to SDPA without a mask (the same attention when every key is visible).

Needs only torch (and triton for the kernel); matplotlib and xformers are used when present.

One module past ~400 lines on purpose: it is the file carried to a GPU machine and run there
alone, so the methods, the correctness check and the report stay together.
"""

import argparse
import json
import platform
import sys
import time
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F

from kernels import chunk_causal_attention, chunk_causal_attention_reference, chunk_causal_mask

RESULTS_DIR = Path(__file__).resolve().parent / "results"
FLOPS_NOTE = ("FlashAttention convention: forward FLOPs = 4*B*H*D*(visible query-key pairs), backward = 2.5x "
              "forward, fwd+bwd = 3.5x forward; causal bounds use their own causal pair count")
# Peak HBM bandwidth in GB/s by device-name fragment (vendor data sheets).
CARD_BANDWIDTH_GBPS = {"H200": 4800, "H100 SXM": 3350, "H100 80GB HBM3": 3350, "H100 PCIe": 2000,
                       "H100": 3350, "A100-SXM4-80GB": 2039, "A100": 1555, "L40S": 864, "A10": 600}
# (chunk, window) the model runs: the latent model's chunk is its m tokens per snippet, the
# combiner's its n tokens per snippet (model/config.py presets); "long" has no window.
PATTERN_GROUPS = {
    "latent": ((8, 8), (8, 16), (16, 8), (16, 16), (32, 8), (32, 16)),
    "combiner": ((56, 4), (56, 8), (56, 16), (130, 4), (130, 8), (130, 16), (432, 4), (432, 8), (432, 16)),
    "long": ((32, None), (256, None), (1024, None)),
}
TRAINING_METHODS = ("reference", "triton", "flex_attention", "sdpa_dense_mask", "sdpa_flash_causal_bound",
                    "sdpa_cudnn_causal_bound", "xformers_causal_bias")
# About one ulp at 1.0: the slack on top of 2x PyTorch's own error.
ULP = {torch.bfloat16: 8e-3, torch.float16: 1e-3, torch.float32: 1e-5}
FLEX_RECOMPILE_LIMIT = 256


@dataclass
class BenchConfig:
    """What to run; the defaults are the full GPU matrix."""

    tokens: int = 16384  # B·N of every training shape: batch = tokens // N
    heads: int = 8
    seq_lens: tuple[int, ...] = (1024, 2048, 4096, 8192, 16384)
    patterns: tuple[tuple[int, int | None], ...] = sum(PATTERN_GROUPS.values(), ())
    head_dims: tuple[int, ...] = (64, 128)
    methods: tuple[str, ...] = TRAINING_METHODS
    stream_batch: int = 64
    stream_heads: int = 8
    stream_chunk: int = 32
    stream_cache_chunks: tuple[int, ...] = (1, 4, 16, 64)
    dtype: str = "bf16"
    flex_dynamic: bool = True  # one compiled FlexAttention for every shape; False: one per shape
    flex_mode: str = "default"  # torch.compile mode for FlexAttention, e.g. max-autotune-no-cudagraphs


SMOKE = BenchConfig(tokens=128, heads=2, seq_lens=(64, 128), patterns=((8, None), (32, 2)), head_dims=(32,),
                    methods=("reference",), stream_batch=4, stream_heads=2, stream_chunk=8, stream_cache_chunks=(1, 4),
                    dtype="fp32")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def visible_pairs(n_q: int, n_k: int, chunk: int, window: int | None = None, q_start: int = 0) -> int:
    """Number of (query, key) pairs the chunk-causal pattern lets through, without building the mask."""
    c = (torch.arange(n_q, dtype=torch.int64) + q_start) // chunk
    hi = torch.clamp((c + 1) * chunk, max=n_k)
    lo = torch.zeros_like(c) if window is None else torch.clamp(c - window + 1, min=0) * chunk
    return int((hi - lo).sum())


def time_ms(fn, device: torch.device, warmup: int = 3, rep_ms: float = 200.0) -> float:
    """Median wall time of fn in milliseconds (CUDA events through triton's do_bench on a GPU)."""
    if device.type == "cuda":
        from triton.testing import do_bench

        return float(do_bench(fn, warmup=25, rep=int(rep_ms), return_mode="median"))
    for _ in range(warmup):
        fn()
    times = []
    deadline = time.perf_counter() + rep_ms / 1000
    while len(times) < 3 or time.perf_counter() < deadline:
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return sorted(times)[len(times) // 2]


# ----------------------------------------------------------------------------- methods


def _causal(q, k, v):
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


def _training_methods(cfg: BenchConfig, n: int, chunk: int, window: int | None, device: torch.device) -> dict:
    """name -> (build(q, k, v) -> callable returning out, the function it computes, pairs for its FLOPs).

    Setup (masks, compilation) happens inside build, so its cost and its failures are
    recorded per method; compile time shows up in first_call_s.
    """
    pairs = visible_pairs(n, n, chunk, window)
    causal_pairs = n * (n + 1) // 2

    def chunked(q, k, v):
        return chunk_causal_attention_reference(q, k, v, chunk, window)

    def dense(q, k, v):
        mask = chunk_causal_mask(n, n, chunk, window, device=device)
        return lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask)

    def causal_bound(backend_name: str):
        def build(q, k, v):
            from torch.nn.attention import SDPBackend, sdpa_kernel

            backend = getattr(SDPBackend, backend_name)

            def run():
                with sdpa_kernel(backend):
                    return _causal(q, k, v)
            return run
        return build

    methods = {
        "reference": (lambda q, k, v: lambda: chunked(q, k, v), chunked, pairs),
        "triton": (lambda q, k, v: lambda: chunk_causal_attention(q, k, v, chunk, window, backend="triton"),
                   chunked, pairs),
        "flex_attention": (_flex_builder(cfg, n, chunk, window, device), chunked, pairs),
        "sdpa_dense_mask": (dense, chunked, pairs),
        "sdpa_flash_causal_bound": (causal_bound("FLASH_ATTENTION"), _causal, causal_pairs),
        "sdpa_cudnn_causal_bound": (causal_bound("CUDNN_ATTENTION"), _causal, causal_pairs),
        "xformers_causal_bias": (_xformers_build, _causal, causal_pairs),
    }
    return {name: methods[name] for name in cfg.methods}


def compiled_flex(dynamic: bool, mode: str):
    """One compiled FlexAttention for the whole run: a compile per shape would exhaust Dynamo's
    recompile limit (8 by default) and then silently run eager and unfused. The limit is raised
    for the shapes a run needs, and hitting it raises instead of falling back."""
    config = torch._dynamo.config
    config.recompile_limit = max(config.recompile_limit, FLEX_RECOMPILE_LIMIT)
    config.accumulated_recompile_limit = max(config.accumulated_recompile_limit, FLEX_RECOMPILE_LIMIT)
    config.fail_on_recompile_limit_hit = True
    # Donated buffers let a compiled backward free its saved tensors, so a second backward over
    # the same graph (the bench times backward with retain_graph=True) raises; an H200 run with
    # torch 2.11 lost every FlexAttention row to that.
    torch._functorch.config.donated_buffer = False
    return _compile_flex(dynamic, mode)


@lru_cache(maxsize=None)
def _compile_flex(dynamic: bool, mode: str):
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=dynamic, mode=None if mode == "default" else mode)


def _flex_builder(cfg: BenchConfig, n: int, chunk: int, window: int | None, device: torch.device):
    def build(q, k, v):
        from torch.nn.attention.flex_attention import create_block_mask

        reach = n if window is None else window  # chunks a query sees back to: all of them without a window

        def mask_mod(b, h, q_idx, kv_idx):
            q_chunk, kv_chunk = q_idx // chunk, kv_idx // chunk
            return (kv_chunk <= q_chunk) & (kv_chunk > q_chunk - reach)

        block_mask = create_block_mask(mask_mod, None, None, n, n, device=device)  # built once per shape
        flex = compiled_flex(cfg.flex_dynamic, cfg.flex_mode)
        return lambda: flex(q, k, v, block_mask=block_mask)
    return build


def _xformers_build(q, k, v):
    """xformers has no chunk-causal bias; the closest it offers is plain causal (LowerTriangularMask)."""
    try:
        import xformers.ops as xops
    except ImportError:
        raise RuntimeError("xformers is not installed") from None
    qx, kx, vx = (t.transpose(1, 2) for t in (q, k, v))  # xformers wants [B, N, H, D]
    return lambda: xops.memory_efficient_attention(qx, kx, vx, attn_bias=xops.LowerTriangularMask()).transpose(1, 2)


# ----------------------------------------------------------------------------- checking


def forward_backward(run, q, k, v, grad) -> dict[str, torch.Tensor]:
    """out and dq, dk, dv of `run` (a callable of no arguments over q, k, v)."""
    out = run()
    dq, dk, dv = torch.autograd.grad(out, (q, k, v), grad)
    return {"out": out.detach(), "dq": dq, "dk": dk, "dv": dv}


def disagreement(got: dict, truth: dict, baseline: dict, dtype: torch.dtype) -> tuple[dict, str | None]:
    """Max errors of `got` against `truth`, and why they are too large (None when they are not).

    Allowed: 2x the error of `baseline` (PyTorch computing the same in `dtype`) plus about one
    ulp of `dtype` at the tensor's scale. NaN is never allowed.
    """
    errors, problem = {}, None
    for name, want in truth.items():
        err = (got[name].float() - want).abs().max().item()
        own = (baseline[name].float() - want).abs().max().item()
        allowed = 2 * own + ULP[dtype] * max(1.0, want.abs().max().item())
        errors[name] = err
        if problem is None and not err <= allowed:
            problem = f"wrong result: {name} max error {err:.3g} > allowed {allowed:.3g} against fp32"
    return errors, problem


class Expected:
    """fp32 truth and PyTorch's own result in the bench dtype for one shape, per computed function."""

    def __init__(self, q, k, v, grad) -> None:
        self.inputs = (q, k, v, grad)
        self.cache: dict = {}

    def __call__(self, fn) -> tuple[dict, dict]:
        if fn not in self.cache:
            q, k, v, grad = self.inputs
            q32, k32, v32 = (t.detach().float().requires_grad_(True) for t in (q, k, v))
            truth = forward_backward(lambda: fn(q32, k32, v32), q32, k32, v32, grad.float())
            baseline = forward_backward(lambda: fn(q, k, v), q, k, v, grad)
            self.cache[fn] = (truth, baseline)
        return self.cache[fn]


# ----------------------------------------------------------------------------- training


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _flex_graphs() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def _measure_training(name, build, fn, q, k, v, grad, expected: Expected, device: torch.device) -> dict:
    """Check the method's result, then time forward, backward and both; an error key when it is wrong."""
    graphs = _flex_graphs() if name == "flex_attention" else 0
    start = time.perf_counter()
    run = build(q, k, v)
    got = forward_backward(run, q, k, v, grad)
    _sync(device)
    record = {"first_call_s": time.perf_counter() - start}
    if name == "flex_attention":
        record["graphs_compiled"] = _flex_graphs() - graphs  # 0 when an earlier compilation was reused
    record["max_error"], problem = disagreement(got, *expected(fn), q.dtype)
    if problem is not None:
        return {**record, "error": problem}
    record["fwd_ms"] = time_ms(run, device)
    out = run()
    record["bwd_ms"] = time_ms(lambda: torch.autograd.grad(out, (q, k, v), grad, retain_graph=True), device)
    record["fwd_bwd_ms"] = time_ms(lambda: torch.autograd.grad(run(), (q, k, v), grad), device)
    if name == "triton":
        from kernels.triton_backend import chosen_tiles

        record["tiles"] = chosen_tiles()
    return record


def _error_record(exc: BaseException) -> dict:
    if isinstance(exc, torch.OutOfMemoryError):
        torch.cuda.empty_cache()
        return {"error": "out of memory"}
    return {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"}


def _progress(i: int, total: int, what: str) -> None:
    print(f"[{i}/{total}] {what}", file=sys.stderr, flush=True)


def _warn_if_wrong(row: dict, what: str) -> None:
    if row.get("error", "").startswith("wrong result"):
        print(f"WARNING {row['method']} {what}: {row['error']}", file=sys.stderr, flush=True)


def bench_training(cfg: BenchConfig, device: torch.device, dtype: torch.dtype) -> list[dict]:
    rows = []
    grid = [(d, c, w, n) for d in cfg.head_dims for c, w in cfg.patterns for n in cfg.seq_lens]
    for i, (head_dim, chunk, window, n) in enumerate(grid, 1):
        _progress(i, len(grid), f"training D={head_dim} chunk={chunk} window={window} N={n}")
        batch = max(1, cfg.tokens // n)
        shape = (batch, cfg.heads, n, head_dim)
        q, k, v = (torch.randn(shape, device=device, dtype=dtype, requires_grad=True) for _ in range(3))
        grad = torch.randn(shape, device=device, dtype=dtype)
        expected = Expected(q, k, v, grad)
        for name, (build, fn, pairs) in _training_methods(cfg, n, chunk, window, device).items():
            row = {"case": "training", "method": name, "n": n, "chunk": chunk, "window": window,
                   "head_dim": head_dim, "batch": batch, "heads": cfg.heads, "dtype": cfg.dtype, "pairs": pairs}
            try:
                row.update(_measure_training(name, build, fn, q, k, v, grad, expected, device))
            except Exception as exc:  # OOM or an unsupported backend for this shape: record, go on
                row.update(_error_record(exc))
            if "fwd_ms" in row:
                fwd_flops = 4 * batch * cfg.heads * head_dim * pairs
                row["fwd_tflops"] = fwd_flops / row["fwd_ms"] / 1e9
                row["bwd_tflops"] = 2.5 * fwd_flops / row["bwd_ms"] / 1e9
                row["fwd_bwd_tflops"] = 3.5 * fwd_flops / row["fwd_bwd_ms"] / 1e9
            _warn_if_wrong(row, f"D={head_dim} chunk={chunk} window={window} N={n}")
            rows.append(row)
    return rows


# ----------------------------------------------------------------------------- streaming


def _measure_streaming(fn, q, k, v, q_start: int, truth, baseline, device: torch.device) -> dict:
    """Check the method's output, then time it; an error key when it is wrong."""
    with torch.no_grad():
        errors, problem = disagreement({"out": fn(q, k, v, q_start)}, {"out": truth}, {"out": baseline}, q.dtype)
        if problem is not None:
            return {"max_error": errors, "error": problem}
        return {"max_error": errors, "latency_ms": time_ms(lambda: fn(q, k, v, q_start), device)}


def bench_streaming(cfg: BenchConfig, device: torch.device, dtype: torch.dtype, bandwidth: float | None) -> list[dict]:
    rows = []
    chunk = cfg.stream_chunk
    grid = [(d, m) for d in cfg.head_dims for m in cfg.stream_cache_chunks]
    methods = {"reference": lambda q, k, v, q_start: chunk_causal_attention_reference(q, k, v, chunk, None, q_start),
               "sdpa_no_mask": lambda q, k, v, q_start: F.scaled_dot_product_attention(q, k, v)}
    if "triton" in cfg.methods:
        methods["triton"] = lambda q, k, v, q_start: chunk_causal_attention(q, k, v, chunk, None, q_start,
                                                                            backend="triton")
    for i, (head_dim, cache_chunks) in enumerate(grid, 1):
        _progress(i, len(grid), f"streaming D={head_dim} cache={cache_chunks} chunks")
        n_k = chunk * cache_chunks
        bsz, heads = cfg.stream_batch, cfg.stream_heads
        q = torch.randn(bsz, heads, chunk, head_dim, device=device, dtype=dtype)
        k, v = (torch.randn(bsz, heads, n_k, head_dim, device=device, dtype=dtype) for _ in range(2))
        truth = chunk_causal_attention_reference(q.float(), k.float(), v.float(), chunk, None, n_k - chunk)
        baseline = chunk_causal_attention_reference(q, k, v, chunk, None, n_k - chunk)
        for name, fn in methods.items():
            row = {"case": "streaming", "method": name, "chunk": chunk, "cache_chunks": cache_chunks,
                   "n_q": chunk, "n_k": n_k, "head_dim": head_dim, "batch": bsz, "heads": heads, "dtype": cfg.dtype}
            try:
                row.update(_measure_streaming(fn, q, k, v, n_k - chunk, truth, baseline, device))
            except Exception as exc:
                row.update(_error_record(exc))
            if "latency_ms" in row:
                moved = (2 * q.numel() + k.numel() + v.numel()) * q.element_size()
                row["gbps"] = moved / row["latency_ms"] / 1e6
                if bandwidth:
                    row["fraction_of_bandwidth"] = row["gbps"] / bandwidth
            _warn_if_wrong(row, f"streaming D={head_dim} cache={cache_chunks} chunks")
            rows.append(row)
    return rows


# ----------------------------------------------------------------------------- report


def add_ratios(rows: list[dict]) -> None:
    """Put triton/other speed ratios on each training row of triton and on streaming rows."""
    def key(r):
        return (r["case"], r.get("n", r.get("n_k")), r.get("chunk"), r.get("window"), r["head_dim"])
    ours = {key(r): r for r in rows if r.get("method") == "triton" and "error" not in r}
    for r in rows:
        mine = ours.get(key(r))
        if mine is None or r is mine or "error" in r or "method" not in r:
            continue
        if r["case"] == "training":
            for metric in ("fwd_tflops", "bwd_tflops", "fwd_bwd_tflops"):
                mine.setdefault("ratios", {})[f"{metric}_vs_{r['method']}"] = mine[metric] / r[metric]
        else:
            mine.setdefault("ratios", {})[f"latency_speedup_vs_{r['method']}"] = r["latency_ms"] / mine["latency_ms"]


def plot(rows: list[dict], path: Path, device_name: str) -> bool:
    """TFLOP/s against N, one panel per (head_dim, chunk, window); False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    training = [r for r in rows if r["case"] == "training" and "error" not in r and "method" in r]
    panels = sorted({(r["head_dim"], r["chunk"], r["window"] or 0) for r in training})
    if not panels:
        return False
    cols = min(6, len(panels))
    n_rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(n_rows, cols, figsize=(4.5 * cols, 4 * n_rows), squeeze=False)
    for ax, (head_dim, chunk, window) in zip(axes.flat, panels):
        for method in sorted({r["method"] for r in training}):
            pts = sorted((r["n"], r["fwd_tflops"], r["bwd_tflops"]) for r in training
                         if r["method"] == method and (r["head_dim"], r["chunk"], r["window"] or 0)
                         == (head_dim, chunk, window))
            if pts:
                line, = ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=f"{method} fwd")
                ax.plot([p[0] for p in pts], [p[2] for p in pts], ls="--", color=line.get_color())
        ax.set(xscale="log", xlabel="tokens N", ylabel="TFLOP/s (solid fwd, dashed bwd)",
               title=f"D={head_dim}, chunk={chunk}, window={window or 'none'}")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"chunk-causal attention on {device_name}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def run(cfg: BenchConfig, out_dir: Path, device: torch.device) -> tuple[Path, int]:
    """Write the report; returns its path and the number of rows whose result was wrong."""
    dtype = DTYPES[cfg.dtype]
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    bandwidth = next((bw for frag, bw in CARD_BANDWIDTH_GBPS.items() if frag in device_name), None)
    rows = bench_training(cfg, device, dtype) + bench_streaming(cfg, device, dtype, bandwidth)
    add_ratios(rows)
    slug = "".join(ch if ch.isalnum() else "-" for ch in device_name.lower()).strip("-") or "cpu"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"attention-{slug}.json"
    report = {"device": device_name, "card_bandwidth_gbps": bandwidth, "torch": torch.__version__,
              "triton": _version("triton"), "flops": FLOPS_NOTE, "config": asdict(cfg), "results": rows}
    if "flex_attention" in cfg.methods:
        report["flex_compile"] = {"dynamic": cfg.flex_dynamic, "mode": cfg.flex_mode,
                                  "recompile_limit": torch._dynamo.config.recompile_limit,
                                  "fail_on_recompile_limit_hit": torch._dynamo.config.fail_on_recompile_limit_hit,
                                  "donated_buffer": torch._functorch.config.donated_buffer}
    report["plot"] = str(path.with_suffix(".png").name) if plot(rows, path.with_suffix(".png"), device_name) else None
    path.write_text(json.dumps(report, indent=1))
    return path, sum("error" in r and r["error"].startswith("wrong result") for r in rows)


def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except ImportError:
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, reference only (runs on a CPU)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="folder for the JSON and PNG")
    parser.add_argument("--seq-lens", type=int, nargs="+", help="override the sequence lengths")
    parser.add_argument("--head-dims", type=int, nargs="+", help="override the head dims (default 64 128)")
    parser.add_argument("--patterns", choices=sorted(PATTERN_GROUPS), nargs="+",
                        help="pattern groups to run (default all: " + ", ".join(
                            f"{g} {PATTERN_GROUPS[g]}" for g in PATTERN_GROUPS) + ")")
    parser.add_argument("--methods", choices=TRAINING_METHODS, nargs="+", help="training methods (default all)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), help="override the dtype (default bf16)")
    parser.add_argument("--flex-static", action="store_true",
                        help="compile FlexAttention per shape (static shapes) instead of once with dynamic shapes")
    parser.add_argument("--flex-mode", choices=("default", "max-autotune-no-cudagraphs"),
                        help="torch.compile mode for FlexAttention (default: default)")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type != "cuda" and not args.smoke:
        raise SystemExit("the full benchmark needs a CUDA device; use --smoke on a CPU")
    cfg = SMOKE if args.smoke else BenchConfig()
    overrides = {"seq_lens": args.seq_lens, "head_dims": args.head_dims, "methods": args.methods,
                 "dtype": args.dtype, "flex_mode": args.flex_mode,
                 "patterns": args.patterns and sum((PATTERN_GROUPS[g] for g in args.patterns), ())}
    cfg = replace(cfg, **{name: tuple(value) if isinstance(value, list) else value
                          for name, value in overrides.items() if value})
    if args.flex_static:
        cfg = replace(cfg, flex_dynamic=False)
    path, wrong = run(cfg, args.out, device)
    print(f"wrong results in {wrong} rows; " if wrong else "", end="")
    print(f"wrote {path} ({FLOPS_NOTE})")
    return 1 if wrong else 0


if __name__ == "__main__":
    raise SystemExit(main())
