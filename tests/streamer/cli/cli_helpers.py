"""Running `python -m streamer.cli` (or a line of Python around `main`) as a real process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
TEST_PATTERN = "lavfi:testsrc=size=64x64:rate=25"  # the lavfi graph of `streamer run --help`


def _default_ctrl_c() -> None:
    """A test suite started in the background (`make test &` in a shell without job control)
    hands its children SIGINT ignored, and Python then never raises KeyboardInterrupt; the
    Ctrl-C tests give the command the terminal's default, wherever the suite runs."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def cli_process(*args: str) -> subprocess.Popen:
    """`python ARGS` from this checkout with one torch thread and text pipes; `-m streamer.cli ...`
    runs the command."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, *args], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_default_ctrl_c)


def finish(process: subprocess.Popen, timeout: float) -> tuple[str, str]:
    """The process's output once it exits; one still running after `timeout` s is killed (a
    live source never ends by itself) and the test fails with what it printed."""
    try:
        return process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        raise AssertionError(f"still running after {timeout:g} s; killed. stdout:\n{out}\nstderr:\n{err}") from None
