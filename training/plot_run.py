"""`streamer plot-run RUN_DIR`: loss and accuracy curves of a training run, as a PNG.

Reads the run's metrics.jsonl. Left panel: the total loss and its parts (text, latent,
video reconstruction) per step, log scale. Right panel: teacher-forced answer accuracy
on the training batches, and exact-match accuracy of any evaluations logged during the
run (generated answers on held-out clips).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from training.metrics import read_metrics

LOSS_KEYS = ("loss", "text_loss", "latent_loss", "video_loss")


def _smooth(values: list[float], window: int) -> list[float]:
    """Trailing moving average: noisy per-step losses become readable curves."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def plot_run(run_dir: str | Path, out: str | Path | None = None, smooth: int = 20) -> Path:
    """Draw the curves of `run_dir` into `out` (default RUN_DIR/curves.png); returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(run_dir)
    train = [r for r in records if r.get("kind") == "train"]
    evals = [r for r in records if r.get("kind") == "eval"]
    if not train:
        raise ValueError(f"{run_dir}/metrics.jsonl has no training steps logged yet")

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(12, 4.5))
    steps = [r["step"] for r in train]
    for key in LOSS_KEYS:
        points = [(r["step"], r[key]) for r in train if isinstance(r.get(key), (int, float))]
        if points:
            xs, ys = zip(*points)
            ax_loss.plot(xs, _smooth(list(ys), smooth), label=key, linewidth=1.2)
    ax_loss.set_yscale("log")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel(f"loss (moving average of {smooth})")
    ax_loss.grid(True, alpha=0.3)
    ax_loss.legend()

    acc = [r.get("answer_acc") for r in train]
    if any(isinstance(a, (int, float)) for a in acc):
        pts = [(s, a) for s, a in zip(steps, acc) if isinstance(a, (int, float))]
        xs, ys = zip(*pts)
        ax_acc.plot(xs, _smooth(list(ys), smooth), label="train answers (teacher-forced)")
    by_split: dict[str, list[tuple[int, float]]] = {}
    for r in evals:
        by_split.setdefault(r.get("data", "eval"), []).append((r["step"], r["overall"]))
    for split, pts in sorted(by_split.items()):
        xs, ys = zip(*sorted(pts))
        ax_acc.plot(xs, ys, marker="o", label=f"{split} (generated, exact match)")
    ax_acc.set_ylim(0, 1.02)
    ax_acc.set_xlabel("step")
    ax_acc.set_ylabel("accuracy")
    ax_acc.grid(True, alpha=0.3)
    ax_acc.legend(loc="lower right")

    fig.suptitle(f"training run {Path(run_dir).resolve().name} — {steps[-1]} steps")
    fig.tight_layout()
    out = Path(out) if out is not None else Path(run_dir) / "curves.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="the --out folder of a `streamer train` run")
    parser.add_argument("--out", default=None, help="PNG to write (default RUN_DIR/curves.png)")
    parser.add_argument("--smooth", type=int, default=20, help="moving-average window in steps")


def main(args: argparse.Namespace) -> int:
    try:
        path = plot_run(args.run_dir, args.out, smooth=max(1, args.smooth))
    except ValueError as err:
        print(f"streamer plot-run: {err}")
        return 2
    print(f"wrote {path}")
    return 0
