"""Does the curriculum over clip length help? Two `tiny` runs that differ only in `--curriculum`.

    .venv/bin/python -m experiments.curriculum [--steps 800] [--curriculum 400] [--runs /tmp/curriculum]

Both runs train at the same time, one torch thread each (2 cores), on the same world clips,
and evaluate on world:test halfway and at the end. Reported per run: exact match at each
evaluation, wall seconds to reach it, and the snippets trained on. A run folder that already
holds its final evaluation is read, not trained again. Writes experiments/results/curriculum.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path


def train_command(out: Path, steps: int, curriculum: int, eval_clips: int) -> list[str]:
    half = steps // 2
    return [sys.executable, "-m", "training.train", "--preset", "tiny", "--data", "world", "--out", str(out),
            "--steps", str(steps), "--batch", "8", "--lr", "3e-4", "--warmup", "100", "--snippets", "4-16",
            "--curriculum", str(curriculum), "--checkpoint-every", str(half), "--eval-every", str(half),
            "--eval-clips", str(eval_clips), "--threads", "1", "--no-progress"]


def read_run(folder: Path) -> tuple[list[dict], list[dict]]:
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in rows if r.get("kind") == "train"], [r for r in rows if r.get("kind") == "eval"]


def summarise(folder: Path, command: list[str]) -> dict:
    train, evals = read_run(folder)
    start = train[0]["time"]
    seconds_at = {r["step"]: r["time"] - start for r in train}
    snippets_by = {}
    total = 0
    for row in train:
        total += row["snippets"]
        snippets_by[row["step"]] = total
    return {
        "command": " ".join(command[1:]),
        "evaluations": [{"step": e["step"], "wall_s": seconds_at[e["step"]], "snippets_trained": snippets_by[e["step"]],
                         "overall": e["overall"], "per_kind": e["per_kind"]} for e in evals],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--curriculum", type=int, default=400, help="curriculum steps of the run that has one")
    parser.add_argument("--eval-clips", type=int, default=100)
    parser.add_argument("--runs", type=Path, default=Path("/tmp/curriculum"), help="where the two run folders go")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "curriculum.json")
    args = parser.parse_args()

    runs = {c: (args.runs / f"curriculum{c}", train_command(args.runs / f"curriculum{c}", args.steps, c, args.eval_clips))
            for c in (args.curriculum, 0)}
    pending = []
    for folder, command in runs.values():
        finished = (folder / "metrics.jsonl").is_file() and any(e["step"] == args.steps for e in read_run(folder)[1])
        if not finished:
            print("training:", " ".join(command[1:]), flush=True)
            pending.append(subprocess.Popen(command))
    for process in pending:
        if process.wait() != 0:
            raise SystemExit(f"a training run failed (exit {process.returncode}); see its output above")

    results = {f"curriculum_{c}": summarise(folder, command) for c, (folder, command) in runs.items()}
    print(json.dumps({k: [(e["step"], round(e["wall_s"]), e["overall"]) for e in v["evaluations"]]
                      for k, v in results.items()}, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
