"""Run a scenario inside a private network namespace that only the test sees.

`unshare -n` gives the child its own network stack: `lo` is brought up and a veth pair
with TEST-NET-1 addresses (192.0.2.1, 192.0.2.2) is created inside it, because aioice
never offers 127.0.0.1 as a candidate and Chromium gathers none on a loopback-only
machine. Nothing in the namespace can reach the machine's real interfaces.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = Path(__file__).resolve().parent / "scenario.py"
VETH_ADDRESSES = ("192.0.2.1", "192.0.2.2")

SETUP = [
    ["ip", "link", "set", "lo", "up"],
    ["ip", "link", "add", "st-veth0", "type", "veth", "peer", "name", "st-veth1"],
    ["ip", "addr", "add", f"{VETH_ADDRESSES[0]}/24", "dev", "st-veth0"],
    ["ip", "addr", "add", f"{VETH_ADDRESSES[1]}/24", "dev", "st-veth1"],
    ["ip", "link", "set", "st-veth0", "up"],
    ["ip", "link", "set", "st-veth1", "up"],
]


def require_netns() -> None:
    """Skip (with the reason) where namespaces cannot be made: not root, no unshare/ip."""
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        pytest.skip("needs root with unshare and ip (util-linux, iproute2) for a private network namespace")


def setup_inside() -> None:
    """Called inside the new namespace, before anything listens."""
    if os.environ.get("STREAMER_TEST_NETNS") != "1":
        raise RuntimeError("refusing to configure interfaces outside the test's own network namespace")
    for command in SETUP:
        subprocess.run(command, check=True, timeout=10)


def env() -> dict[str, str]:
    """Subprocesses import this work tree, with at most 2 torch threads each."""
    out = dict(os.environ)
    out["PYTHONPATH"] = str(ROOT) + (os.pathsep + out["PYTHONPATH"] if out.get("PYTHONPATH") else "")
    out.setdefault("OMP_NUM_THREADS", "2")
    return out


def run_scenario(name: str, tmp_path: Path, timeout: float, **options: object) -> dict:
    """Run `scenario.py NAME` in a fresh namespace; returns the JSON it wrote."""
    require_netns()
    out = tmp_path / f"{name}.json"
    spec = tmp_path / f"{name}-options.json"
    spec.write_text(json.dumps(options))
    environment = env() | {"STREAMER_TEST_NETNS": "1"}
    command = ["unshare", "-n", "--", sys.executable, str(SCENARIO), name, str(spec), str(out)]
    log = tmp_path / f"{name}.log"
    # a session of its own, so that a timeout also ends the server and peers it started
    with open(log, "w") as sink:
        proc = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=sink, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
        try:
            returncode = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            tail = log.read_text()[-6000:]
            raise AssertionError(f"scenario {name} ran past {timeout} s; log {log}:\n{tail}") from None
    if returncode != 0 or not out.exists():
        raise AssertionError(f"scenario {name} failed (exit {returncode}); log {log}:\n{log.read_text()[-6000:]}")
    return json.loads(out.read_text())
