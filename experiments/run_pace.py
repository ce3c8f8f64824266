"""A training run's own pace, read from its metrics: seconds a step and snippets a step over a
range of steps, so schedules can be compared as they really ran (all ranks at once, all-reduce
included) rather than as one process alone (experiments.step_cost).

    python -m experiments.run_pace experiments/results/understanding/tiny-fast-stage1-metrics.jsonl.gz@700-1300 \\
        experiments/results/understanding/tiny-lean-stage1-metrics.jsonl.gz@1300-3400

Each run is named with the range of steps to read (`PATH@FROM-TO`), so runs can be compared
where their clips are alike (after each curriculum, say).
A gap that holds a checkpoint or an evaluation weighs in the mean, hardly in the median."""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

from experiments.asking import RESULTS, write_report
from training.metrics import read_records


def train_records(metrics: Path) -> list[dict[str, Any]]:
    """The `train` records of a metrics.jsonl (or .jsonl.gz), in step order."""
    return sorted((r for r in read_records(metrics) if r.get("kind") == "train"), key=lambda r: r["step"])


def pace(records: list[dict[str, Any]], first: int, last: int) -> dict[str, float]:
    """Seconds a step (median and mean) and mean snippets a step, over the logged steps from `first` to `last`."""
    inside = [r for r in records if first <= r["step"] <= last]
    if len(inside) < 3:
        raise ValueError(f"the run has {len(inside)} logged steps between {first} and {last}; "
                         "choose a range it reached")
    gaps = [(b["time"] - a["time"]) / (b["step"] - a["step"]) for a, b in zip(inside, inside[1:])]
    return {"from step": inside[0]["step"], "to step": inside[-1]["step"],
            "median s a step": round(statistics.median(gaps), 3),
            "mean s a step": round((inside[-1]["time"] - inside[0]["time"]) / (inside[-1]["step"] - inside[0]["step"]), 3),
            "snippets a step": round(statistics.fmean(r["snippets"] for r in inside[1:]), 1)}


def run_range(spec: str) -> tuple[Path, int, int]:
    """`PATH@FROM-TO` -> (path, from, to)."""
    path, _, steps = spec.rpartition("@")
    first, _, last = steps.partition("-")
    if not path or not first.isdigit() or not last.isdigit():
        raise argparse.ArgumentTypeError(f"{spec!r}: name a run as METRICS@FROM-TO, e.g. metrics.jsonl@700-1300")
    return Path(path), int(first), int(last)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=run_range, nargs="+", metavar="METRICS@FROM-TO",
                        help="a run's metrics.jsonl or .jsonl.gz and the steps to read")
    parser.add_argument("--out", type=Path, help="report file (default: results/understanding/run-pace.json)")
    args = parser.parse_args()
    report = {}
    for path, first, last in args.runs:
        try:
            report[f"{path}@{first}-{last}"] = pace(train_records(path), first, last)
        except (OSError, ValueError) as error:
            parser.error(f"{path}: {error}")
    write_report(report, args.out or RESULTS / "run-pace.json")


if __name__ == "__main__":
    main()
