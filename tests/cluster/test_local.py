"""The local Ray head: it runs work, listens on loopback only, and leaves no process behind,
whether closed, or its owner or its head was killed."""

from __future__ import annotations

import ipaddress
import os
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from streamer.cluster.local import (
    RAY_MISSING,
    LocalCluster,
    cluster_processes,
    driver_environment,
    ray_available,
    reap,
)

REPO = Path(__file__).resolve().parents[2]
needs_ray = pytest.mark.skipif(not ray_available(), reason="Ray is not installed (pip install 'streamer[cluster]')")
SMALL_STORE = 80 * 2**20


@pytest.fixture
def short_folder():
    """A cluster folder under /tmp (pytest's tmp_path is too long for Ray's socket paths),
    whose leftovers are reaped whatever the test did."""
    folder = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp"))
    yield folder
    left = reap(folder, grace_s=5.0)
    subprocess.run(["rm", "-rf", str(folder)], check=False)
    assert not left, f"processes {left} of {folder} survived SIGKILL"


def listening_addresses(pids: set[int]) -> list[str]:
    """`address:port (process)` of every TCP/UDP listener owned by one of `pids`."""
    lines = subprocess.run(["ss", "-ltnupH"], capture_output=True, text=True, check=True).stdout.splitlines()
    found = []
    for line in lines:
        fields = line.split()
        owners = {int(chunk.split(",")[0]) for chunk in line.split("pid=")[1:]}
        if owners & pids:
            found.append(f"{fields[4]} {fields[-1]}")
    return found


def is_loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0].strip("[]").split("%")[0]
    if host == "*":
        return False
    ip = ipaddress.ip_address(host)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


@needs_ray
@pytest.mark.slow
def test_cluster_runs_tasks_and_a_named_actor_on_loopback_only_and_leaves_nothing(short_folder, tmp_path, monkeypatch):
    import ray

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))  # where Ray would write its token (~/.ray/auth_token)
    environment_before = {name: os.environ.get(name) for name in driver_environment("/x")}

    with LocalCluster(num_cpus=2, folder=short_folder, object_store_memory=SMALL_STORE) as cluster:
        assert cluster.address.startswith("127.0.0.1:")
        ray.init(address=cluster.address)
        assert ray.cluster_resources()["CPU"] == 2

        @ray.remote
        def square(x: int) -> int:
            return x * x

        @ray.remote
        class Counter:
            def __init__(self) -> None:
                self.count = 0

            def add(self) -> int:
                self.count += 1
                return self.count

        assert ray.get([square.remote(i) for i in range(4)]) == [0, 1, 4, 9]
        counter = Counter.options(name="counter").remote()  # a named actor lives while a handle does
        assert ray.get(ray.get_actor("counter").add.remote()) == 1

        pids = set(cluster.processes())
        assert cluster.head_pid in pids and len(pids) >= 4  # head, GCS, raylet, workers
        listeners = listening_addresses(pids | {os.getpid()})
        assert listeners, "found no listener of the cluster (is `ss` from iproute2 there?)"
        exposed = [entry for entry in listeners if not is_loopback(entry.split()[0])]
        assert not exposed, f"Ray listens beyond loopback: {exposed}"

    assert not ray.is_initialized()
    assert cluster_processes(short_folder) == []
    assert all(not Path(f"/proc/{pid}").exists() or _is_zombie(pid) for pid in pids)
    assert not (home / ".ray").exists(), "Ray wrote into ~/.ray"
    assert {name: os.environ.get(name) for name in environment_before} == environment_before
    cluster.close()  # idempotent


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2] == "Z"


OWNER = textwrap.dedent(
    """
    import sys, time
    from streamer.cluster.local import LocalCluster
    cluster = LocalCluster(num_cpus=1, folder=sys.argv[1], object_store_memory={store})
    print("ready", flush=True)
    time.sleep(600)
    """
).format(store=SMALL_STORE)


@needs_ray
@pytest.mark.slow
def test_head_stops_when_its_owner_is_killed(short_folder, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    log = tmp_path / "owner.log"
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(short_folder)],
        cwd=REPO,
        env={**os.environ, "HOME": str(home), "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        text=True,
    )
    try:
        assert owner.stdout.readline().strip() == "ready", log.read_text()[-3000:]
        running = cluster_processes(short_folder)
        assert len(running) >= 3
        owner.kill()
        owner.wait()
        left_at_kill = cluster_processes(short_folder)
        deadline = time.monotonic() + 60
        while (left := cluster_processes(short_folder)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not left, f"still running 60 s after the owner's SIGKILL: {left} (right after it: {left_at_kill})"
    finally:
        owner.kill()
        owner.wait()
    assert not (home / ".ray").exists()


@needs_ray
@pytest.mark.slow
def test_reap_stops_what_a_killed_head_left(short_folder):
    """Whether the GCS and raylet outlive a SIGKILLed head varies from run to run here (both
    were seen); either way nothing of the cluster is left after `reap`."""
    cluster = LocalCluster(num_cpus=1, folder=short_folder, object_store_memory=SMALL_STORE)
    try:
        os.kill(cluster.head_pid, signal.SIGKILL)
        cluster._head.wait()
        assert reap(short_folder, grace_s=10.0) == []
        assert cluster_processes(short_folder) == []
    finally:
        cluster.close()
    cluster.close()


@needs_ray
def test_a_folder_too_long_for_ray_sockets_is_refused_before_starting(tmp_path):
    folder = Path("/tmp") / ("x" * 60)
    with pytest.raises(ValueError, match="at most 40"):
        LocalCluster(num_cpus=1, folder=folder)
    assert not folder.exists()


def test_without_ray_the_error_names_the_extra_to_install(monkeypatch):
    """As if Ray were not installed: the cluster refuses to start and says what to install."""
    import streamer.cluster.local as local

    monkeypatch.setattr(local, "ray_available", lambda: False)
    with pytest.raises(ModuleNotFoundError, match=re.escape(RAY_MISSING)):
        LocalCluster(num_cpus=1)
    import streamer

    with pytest.raises(ModuleNotFoundError, match=re.escape(RAY_MISSING)):
        streamer.connect(workers=1)
