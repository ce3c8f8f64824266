"""DDP: two real CPU processes under torchrun (gloo) against one process, same global batch."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from training import checkpointing
from training.metrics import read_metrics
from training.train import cli as train_cli

REPO = Path(__file__).resolve().parents[2]
RUN = ["--steps", "2", "--batch", "2", "--snippets", "2-4", "--questions", "4", "--warmup", "1",
       "--threads", "1", "--no-progress"]


@pytest.mark.slow
def test_torchrun_two_processes_match_one_process(tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun is not installed beside this Python")
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    ddp = tmp_path / "ddp"
    result = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node=2", "-m", "training.train", "--out", str(ddp), *RUN],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr

    # Both ranks end with bit-identical weights (each rank's sha256, gathered at the end).
    checked = [r for r in read_metrics(ddp) if r.get("event") == "ranks_checked"]
    assert len(checked) == 1 and checked[0]["in_sync"]
    assert len(checked[0]["fingerprints"]) == 2 and len(set(checked[0]["fingerprints"])) == 1

    # The alignment loss contrasts each process's own clips (in-batch negatives, not gathered
    # across ranks), so one process matches two when it splits the batch the same way.
    single = tmp_path / "single"
    assert train_cli(["--out", str(single), *RUN, "--micro-batch", "1"]) == 0

    ddp_log = [r for r in read_metrics(ddp) if r["kind"] == "train"]
    one_log = [r for r in read_metrics(single) if r["kind"] == "train"]
    assert [r["questions"] for r in ddp_log] == [r["questions"] for r in one_log]
    for a, b in zip(ddp_log, one_log):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-4)

    wd = load_file(str(checkpointing.latest_checkpoint(ddp) / "model.safetensors"))
    ws = load_file(str(checkpointing.latest_checkpoint(single) / "model.safetensors"))
    assert wd.keys() == ws.keys()
    worst = max(float((wd[k].double() - ws[k].double()).abs().max()) for k in wd if wd[k].is_floating_point())
    assert worst < 1e-4, f"DDP and single-process weights differ by up to {worst}"
