"""`experiments.run_pace`: a run's seconds and snippets a step, read from its own metrics."""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

import pytest

from experiments.run_pace import pace, run_range, train_records


def _write(path, records):
    text = "".join(json.dumps(r) + "\n" for r in records)
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8")


def test_pace_reads_plain_and_gzipped_metrics_alike(tmp_path):
    records = [{"kind": "event", "step": 0, "time": 0.0, "event": "start"}]
    clock = 100.0
    for step in range(1, 11):
        clock += 5.0 if step == 6 else 2.0  # step 6 also wrote a checkpoint
        records.append({"kind": "train", "step": step, "time": clock, "snippets": 10 * step})
    records.append({"kind": "eval", "step": 10, "time": clock + 50, "overall": 0.5})
    for name in ("metrics.jsonl", "metrics.jsonl.gz"):
        _write(tmp_path / name, records[::-1])  # order on disk does not matter
        read = train_records(tmp_path / name)
        assert [r["step"] for r in read] == list(range(1, 11))
        got = pace(read, 2, 8)
        assert got["from step"] == 2 and got["to step"] == 8
        assert got["median s a step"] == 2.0  # the checkpoint's gap is left out of the median
        assert got["mean s a step"] == pytest.approx(15 / 6, abs=1e-3)
        assert got["snippets a step"] == pytest.approx(55.0)  # steps 3..8


def test_pace_names_a_range_the_run_did_not_reach(tmp_path):
    records = [{"kind": "train", "step": s, "time": float(s), "snippets": 4} for s in range(1, 5)]
    with pytest.raises(ValueError, match="choose a range it reached"):
        pace(records, 100, 200)


def test_a_run_is_named_with_its_range():
    assert run_range("runs/a/metrics.jsonl@700-1300") == (Path("runs/a/metrics.jsonl"), 700, 1300)
    with pytest.raises(argparse.ArgumentTypeError, match="METRICS@FROM-TO"):
        run_range("runs/a/metrics.jsonl")
