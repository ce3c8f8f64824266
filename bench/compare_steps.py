"""Side by side: the model step of two or more checkpoints on this machine, in alternating rounds.

    python -m bench.compare_steps streamer/checkpoints/tiny streamer/checkpoints/tiny-24

Each round streams 40 snippets of noise through every checkpoint at batch 1 and 16 (the first 8
steps of a round warm up and are not timed); the medians over 5 rounds and their ratio to the
first checkpoint's are printed. For a changed bundled model against the one whose figures a table
still shows: one run, one machine, so the ratio holds where the absolute times do not.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from bench.machine import machine_info
from model import StreamerModel

BATCHES = (1, 16)
ROUNDS, SNIPPETS, WARMUP = 5, 40, 8


def step_times(model: StreamerModel, batch: int, seed: int) -> list[float]:
    """Seconds per `model.step` over one round of noise, after the warm-up steps."""
    g = torch.Generator().manual_seed(seed)
    m = model.cfg.media
    video = torch.randint(0, 256, (batch, SNIPPETS, m.frames_per_snippet, m.height, m.width, 3),
                          dtype=torch.uint8, generator=g)
    audio = torch.randn(batch, SNIPPETS, m.samples_per_snippet, generator=g) * 0.1
    state, times = model.init_state(batch), []
    with torch.no_grad():
        for t in range(SNIPPETS):
            start = time.perf_counter()
            state = model.step(state, video[:, t], audio[:, t])
            if t >= WARMUP:
                times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoints", nargs="+", help="checkpoint folders; ratios are to the first")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    info = machine_info(torch.device("cpu"), args.threads)  # before the rounds: the load they start on
    models = {path: StreamerModel.load(path).eval() for path in args.checkpoints}
    times: dict[tuple[str, int], list[float]] = {(p, b): [] for p in models for b in BATCHES}
    for round_ in range(ROUNDS):
        for path, model in models.items():
            for batch in BATCHES:
                times[(path, batch)] += step_times(model, batch, seed=round_)
    print(f"{info['cpu']}, {info['cores_usable']} cores usable, {args.threads} torch threads, "
          f"load average {info['load_average_1m']} at the start")
    first = args.checkpoints[0]
    for batch in BATCHES:
        base = statistics.median(times[(first, batch)])
        for path in models:
            median = statistics.median(times[(path, batch)])
            print(f"batch {batch:>2}  {path}: median {1000 * median:.2f} ms, x{median / base:.2f}")


if __name__ == "__main__":
    main()
