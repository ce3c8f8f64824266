"""The benchmark suite cannot rot: CI runs every benchmark once with timing off, and the report
turns a real (small) pytest-benchmark run into results files, a plot and README tables."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import report

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = ("micro", "stream", "scale", "memory", "attention", "cluster", "performance")


def _pytest(*args: str, timeout: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "pytest", "bench", "-p", "no:cacheprovider", "--bench-threads", "1",
                           *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_every_benchmark_runs_once_with_timing_off():
    done = _pytest("--bench-size", "smoke", "--benchmark-disable", "-q", timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "failed" not in done.stdout.splitlines()[-1]


@pytest.mark.slow
def test_report_publishes_a_run_and_leaves_the_rest_unmeasured(tmp_path):
    run = tmp_path / "run.json"
    done = _pytest("--bench-size", "smoke", "-k", "log_mel or resample", "--benchmark-json", str(run),
                   "--benchmark-max-time", "0.01", timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    readme = tmp_path / "README.md"
    readme.write_text("intro\n" + "".join(f"<!-- bench:{name} -->\nold\n<!-- /bench:{name} -->\n" for name in SECTIONS))

    report.main([str(run), "--results", str(tmp_path / "results"), "--readme", str(readme)])

    (published,) = (tmp_path / "results").glob("micro-*.json")
    document = json.loads(published.read_text())
    assert {"date", "commit", "machine", "versions", "size"} <= document.keys() and document["size"] == "smoke"
    assert document["machine"]["torch_threads"] == 1 and document["commit"]["id"]
    assert {t["test"] for t in document["tests"]} == {"test_log_mel", "test_resample"}
    assert all(t["stats_s"]["median"] > 0 and "p95" in t["stats_s"] for t in document["tests"])
    assert published.with_suffix(".png").stat().st_size > 0
    text = readme.read_text()
    assert "old" not in text and text.startswith("intro\n")
    micro = text.split("<!-- bench:micro -->")[1].split("<!-- /bench:micro -->")[0]
    assert "log-mel of one snippet's audio" in micro and "resample 48 → 16 kHz" in micro and "× real time" in micro
    for name in ("stream", "scale", "memory", "attention", "cluster"):
        assert report.NOT_MEASURED in text.split(f"<!-- bench:{name} -->")[1].split(f"<!-- /bench:{name} -->")[0]
    performance = text.split("<!-- bench:performance -->")[1]
    assert performance.count(report.NOT_MEASURED) >= 5, "a target was reported without a measurement"


@pytest.mark.slow
def test_stream_profile_charges_every_stage_and_compares_two_checkouts(tmp_path):
    """`python -m bench.profile_stream --against DIR`, this checkout against itself on a short file."""
    out = tmp_path / "profile.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "bench.profile_stream", "--seconds", "1.5", "--rounds", "1",
                           "--against", str(ROOT), "--json", str(out)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    measured = json.loads(out.read_text())
    for side in ("before", "after"):
        stages = measured[side]["stages_ms_per_s"]
        assert {"decode", "video conversion", "chunker: resize", "chunker: resample", "step"} <= stages.keys()
        assert all(ms >= 0 for ms in stages.values()) and stages["step"] > 0
        assert measured[side]["session_rtf"] > 0 and measured[side]["session_cpu_ms_per_s"] > 0
    assert "| **total** |" in done.stdout and "after / before" in done.stdout
