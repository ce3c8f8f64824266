"""Benchmark chunk-causal attention against the alternatives, side by side in one run.

    python -m bench.attention            # CUDA: full matrix, results/attention-<device>.json + .png
    python -m bench.attention --smoke    # CPU or GPU: tiny shapes, reference only (exercises the code)

Training case: TFLOP/s of forward, backward and forward+backward with FlashAttention's
convention (forward = 4·B·H·D·visible query-key pairs, backward = 2.5 × forward), for our
Triton kernel, FlexAttention with the same block mask (compiled once, compile time
reported separately), SDPA with a dense boolean mask, xformers where installed, and SDPA's
flash and cuDNN backends on plain causal attention of the same length (near-upper bounds,
counted with their own causal pairs). Streaming case: one chunk of queries against a cache
of 1–64 chunks for many streams; memory-bound, so latency and achieved GB/s (q, k, v read,
out written once) against the card's bandwidth, next to SDPA without a mask.
"""

import argparse
import json
import platform
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from kernels import chunk_causal_attention, chunk_causal_attention_reference, chunk_causal_mask

RESULTS_DIR = Path(__file__).resolve().parent / "results"
FLOPS_NOTE = ("FlashAttention convention: forward FLOPs = 4*B*H*D*(visible query-key pairs), backward = 2.5x "
              "forward, fwd+bwd = 3.5x forward; causal bounds use their own causal pair count")
# Peak HBM bandwidth in GB/s by device-name fragment (vendor data sheets).
CARD_BANDWIDTH_GBPS = {"H200": 4800, "H100 SXM": 3350, "H100 80GB HBM3": 3350, "H100 PCIe": 2000,
                       "H100": 3350, "A100-SXM4-80GB": 2039, "A100": 1555, "L40S": 864, "A10": 600}


@dataclass
class BenchConfig:
    """What to run; the defaults are the full GPU matrix."""

    batch: int = 2
    heads: int = 8
    seq_lens: tuple[int, ...] = (1024, 2048, 4096, 8192, 16384, 32768)
    chunks: tuple[int, ...] = (32, 256, 1024)
    head_dims: tuple[int, ...] = (64, 128)
    stream_batch: int = 64
    stream_heads: int = 8
    stream_chunk: int = 32
    stream_cache_chunks: tuple[int, ...] = (1, 4, 16, 64)
    dtype: str = "bf16"
    reference_only: bool = False


SMOKE = BenchConfig(batch=1, heads=2, seq_lens=(64, 128), chunks=(8, 32), head_dims=(32,), stream_batch=4,
                    stream_heads=2, stream_chunk=8, stream_cache_chunks=(1, 4), dtype="fp32", reference_only=True)
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


def _training_methods(cfg: BenchConfig, n: int, chunk: int, device: torch.device):
    """name -> (build(q, k, v) -> callable returning out, pairs counted for its FLOPs).

    Setup (masks, compilation) happens inside build, so its cost and its failures are
    recorded per method; compile time shows up as first_call_s.
    """
    pairs = visible_pairs(n, n, chunk)
    causal_pairs = n * (n + 1) // 2
    methods = {"reference": (lambda q, k, v: lambda: chunk_causal_attention_reference(q, k, v, chunk), pairs)}
    if cfg.reference_only:
        return methods
    from torch.nn.attention import SDPBackend, sdpa_kernel

    def dense(q, k, v):
        mask = chunk_causal_mask(n, n, chunk, device=device)
        return lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask)

    def causal(backend):
        def build(q, k, v):
            def run():
                with sdpa_kernel(backend):
                    return F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return run
        return build

    methods["triton"] = (lambda q, k, v: lambda: chunk_causal_attention(q, k, v, chunk, backend="triton"), pairs)
    methods["flex_attention"] = (_flex_builder(n, chunk, device), pairs)
    methods["sdpa_dense_mask"] = (dense, pairs)
    methods["sdpa_flash_causal_bound"] = (causal(SDPBackend.FLASH_ATTENTION), causal_pairs)
    methods["sdpa_cudnn_causal_bound"] = (causal(SDPBackend.CUDNN_ATTENTION), causal_pairs)
    methods["xformers_causal_bias"] = (_xformers_build, causal_pairs)
    return methods


def _flex_builder(n: int, chunk: int, device: torch.device):
    def build(q, k, v):
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        def mask_mod(b, h, q_idx, kv_idx):
            return kv_idx // chunk <= q_idx // chunk

        block_mask = create_block_mask(mask_mod, None, None, n, n, device=device)  # built once per shape
        compiled = torch.compile(flex_attention, dynamic=False)
        return lambda: compiled(q, k, v, block_mask=block_mask)
    return build


def _xformers_build(q, k, v):
    """xformers has no chunk-causal bias; the closest it offers is plain causal (LowerTriangularMask)."""
    try:
        import xformers.ops as xops
    except ImportError:
        raise RuntimeError("xformers is not installed") from None
    qx, kx, vx = (t.transpose(1, 2) for t in (q, k, v))  # xformers wants [B, N, H, D]
    return lambda: xops.memory_efficient_attention(qx, kx, vx, attn_bias=xops.LowerTriangularMask()).transpose(1, 2)


def _measure_training(build, q, k, v, device: torch.device) -> dict:
    start = time.perf_counter()
    run = build(q, k, v)
    out = run()
    if device.type == "cuda":
        torch.cuda.synchronize()
    first_call_s = time.perf_counter() - start
    grad = torch.randn_like(out)
    fwd = time_ms(run, device)
    out = run()
    bwd = time_ms(lambda: torch.autograd.grad(out, (q, k, v), grad, retain_graph=True), device)
    both = time_ms(lambda: torch.autograd.grad(run(), (q, k, v), grad), device)
    return {"first_call_s": first_call_s, "fwd_ms": fwd, "bwd_ms": bwd, "fwd_bwd_ms": both}


def _error_record(exc: BaseException) -> dict:
    if isinstance(exc, torch.OutOfMemoryError):
        torch.cuda.empty_cache()
        return {"error": "out of memory"}
    return {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"}


def bench_training(cfg: BenchConfig, device: torch.device, dtype: torch.dtype) -> list[dict]:
    rows = []
    grid = [(d, c, n) for d in cfg.head_dims for c in cfg.chunks for n in cfg.seq_lens]
    for head_dim, chunk, n in tqdm(grid, desc="training shapes", unit="shape"):
        for name, (build, pairs) in _training_methods(cfg, n, chunk, device).items():
            row = {"case": "training", "method": name, "n": n, "chunk": chunk, "head_dim": head_dim,
                   "batch": cfg.batch, "heads": cfg.heads, "dtype": cfg.dtype, "pairs": pairs}
            try:
                shape = (cfg.batch, cfg.heads, n, head_dim)
                q, k, v = (torch.randn(shape, device=device, dtype=dtype, requires_grad=True) for _ in range(3))
                row.update(_measure_training(build, q, k, v, device))
                fwd_flops = 4 * cfg.batch * cfg.heads * head_dim * pairs
                row["fwd_tflops"] = fwd_flops / row["fwd_ms"] / 1e9
                row["bwd_tflops"] = 2.5 * fwd_flops / row["bwd_ms"] / 1e9
                row["fwd_bwd_tflops"] = 3.5 * fwd_flops / row["fwd_bwd_ms"] / 1e9
            except Exception as exc:  # OOM or an unsupported backend for this shape: record, go on
                row.update(_error_record(exc))
            finally:
                q = k = v = None
            rows.append(row)
    return rows


def bench_streaming(cfg: BenchConfig, device: torch.device, dtype: torch.dtype, bandwidth: float | None) -> list[dict]:
    rows = []
    chunk = cfg.stream_chunk
    grid = [(d, m) for d in cfg.head_dims for m in cfg.stream_cache_chunks]
    methods = {"reference": lambda q, k, v, q_start: chunk_causal_attention_reference(q, k, v, chunk, None, q_start),
               "sdpa_no_mask": lambda q, k, v, q_start: F.scaled_dot_product_attention(q, k, v)}
    if not cfg.reference_only:
        methods["triton"] = lambda q, k, v, q_start: chunk_causal_attention(q, k, v, chunk, None, q_start,
                                                                            backend="triton")
    for head_dim, cache_chunks in tqdm(grid, desc="streaming shapes", unit="shape"):
        n_k = chunk * cache_chunks
        bsz, heads = cfg.stream_batch, cfg.stream_heads
        for name, fn in methods.items():
            row = {"case": "streaming", "method": name, "chunk": chunk, "cache_chunks": cache_chunks,
                   "n_q": chunk, "n_k": n_k, "head_dim": head_dim, "batch": bsz, "heads": heads, "dtype": cfg.dtype}
            try:
                q = torch.randn(bsz, heads, chunk, head_dim, device=device, dtype=dtype)
                k, v = (torch.randn(bsz, heads, n_k, head_dim, device=device, dtype=dtype) for _ in range(2))
                with torch.no_grad():
                    ms = time_ms(lambda: fn(q, k, v, n_k - chunk), device)
                moved = (2 * q.numel() + k.numel() + v.numel()) * q.element_size()
                row.update({"latency_ms": ms, "gbps": moved / ms / 1e6})
                if bandwidth:
                    row["fraction_of_bandwidth"] = row["gbps"] / bandwidth
            except Exception as exc:
                row.update(_error_record(exc))
            rows.append(row)
    return rows


def add_ratios(rows: list[dict]) -> None:
    """Put triton/other speed ratios on each training row of triton and on streaming rows."""
    def key(r):
        return (r["case"], r.get("n", r.get("n_k")), r.get("chunk"), r["head_dim"])
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
    """TFLOP/s against N, one panel per (head_dim, chunk); False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    training = [r for r in rows if r["case"] == "training" and "error" not in r and "method" in r]
    panels = sorted({(r["head_dim"], r["chunk"]) for r in training})
    if not panels:
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4), squeeze=False)
    for ax, (head_dim, chunk) in zip(axes[0], panels):
        for method in sorted({r["method"] for r in training}):
            pts = sorted((r["n"], r["fwd_tflops"], r["bwd_tflops"]) for r in training
                         if r["method"] == method and (r["head_dim"], r["chunk"]) == (head_dim, chunk))
            if pts:
                line, = ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=f"{method} fwd")
                ax.plot([p[0] for p in pts], [p[2] for p in pts], ls="--", color=line.get_color())
        ax.set(xscale="log", xlabel="tokens N", ylabel="TFLOP/s (solid fwd, dashed bwd)",
               title=f"D={head_dim}, chunk={chunk}")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"chunk-causal attention on {device_name}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def run(cfg: BenchConfig, out_dir: Path, device: torch.device) -> Path:
    dtype = DTYPES[cfg.dtype]
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    bandwidth = next((bw for frag, bw in CARD_BANDWIDTH_GBPS.items() if frag in device_name), None)
    rows = bench_training(cfg, device, dtype) + bench_streaming(cfg, device, dtype, bandwidth)
    add_ratios(rows)
    slug = "".join(ch if ch.isalnum() else "-" for ch in device_name.lower()).strip("-") or "cpu"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"attention-{slug}.json"
    report = {"device": device_name, "card_bandwidth_gbps": bandwidth, "torch": torch.__version__,
              "flops": FLOPS_NOTE, "config": asdict(cfg), "results": rows}
    report["plot"] = str(path.with_suffix(".png").name) if plot(rows, path.with_suffix(".png"), device_name) else None
    path.write_text(json.dumps(report, indent=1))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, reference only (runs on a CPU)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="folder for the JSON and PNG")
    parser.add_argument("--seq-lens", type=int, nargs="+", help="override the sequence lengths")
    parser.add_argument("--dtype", choices=sorted(DTYPES), help="override the dtype (default bf16)")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type != "cuda" and not args.smoke:
        raise SystemExit("the full benchmark needs a CUDA device; use --smoke on a CPU")
    cfg = SMOKE if args.smoke else BenchConfig()
    if args.seq_lens:
        cfg = replace(cfg, seq_lens=tuple(args.seq_lens))
    if args.dtype:
        cfg = replace(cfg, dtype=args.dtype)
    path = run(cfg, args.out, device)
    print(f"wrote {path} ({FLOPS_NOTE})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
