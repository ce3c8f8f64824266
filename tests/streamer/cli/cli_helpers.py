"""Running `python -m streamer.cli` (or a line of Python around `main`) as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
TEST_PATTERN = "lavfi:testsrc=size=64x64:rate=25"  # the lavfi graph of `streamer run --help`


def cli_process(*args: str) -> subprocess.Popen:
    """`python ARGS` from this checkout with one torch thread and text pipes; `-m streamer.cli ...`
    runs the command."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, *args], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
