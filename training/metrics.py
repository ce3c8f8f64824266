"""The per-run metrics log: one JSON object per line in `RUN_DIR/metrics.jsonl`.

JSONL because it is appended line by line while training runs, survives a crash up to
the last complete line, and is read by `streamer plot-run` and by any other tool.
Every record carries `step` and `kind` ("train", "eval", "event").
"""

from __future__ import annotations

import gzip
import json
import math
import time
from pathlib import Path
from typing import Any

from streamer.files import write_atomic

METRICS_FILE = "metrics.jsonl"


def _clean(value: Any) -> Any:
    """Make a value JSON-safe: tensors and numpy scalars to floats, NaN/inf to strings."""
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


class MetricsLog:
    """Appends records to a JSONL file, flushed after each line so readers see progress."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / METRICS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")

    def write(self, kind: str, step: int, **values: Any) -> None:
        record = {"kind": kind, "step": int(step), "time": round(time.time(), 3)}
        record.update(_clean(values))
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """All complete records of a run; a torn last line (a crash mid-write) is ignored."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        raise ValueError(
            f"no {METRICS_FILE} in {run_dir}; pass the --out folder of a `streamer train` run"
        )
    return read_records(path)


def read_records(path: Path) -> list[dict[str, Any]]:
    """The complete records of a metrics file, plain or gzipped (as kept in the repo's results)."""
    opener = gzip.open if path.suffix == ".gz" else open
    records = []
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def truncate_after(run_dir: str | Path, step: int) -> None:
    """Drop records past `step`, so a resumed run's log has no steps from the lost future.

    Rewritten whole (`write_atomic`), like the checkpoints.
    """
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return
    kept = [r for r in read_metrics(run_dir) if int(r.get("step", 0)) <= step]
    write_atomic(path, "".join(json.dumps(record) + "\n" for record in kept))
