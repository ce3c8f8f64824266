"""A Ray head node for this machine only, that leaves nothing behind.

The cluster mode runs the engine on Ray; tests and single-machine users need a head they
can start and stop from Python. A plain `ray start --head` listens on every interface, picks
the machine's network address, writes under /tmp/ray, reports usage to Anyscale, and leaves
daemons running when its caller dies. `LocalCluster` starts one that:

- binds every listener to 127.0.0.1: `--node-ip-address=127.0.0.1` alone is not enough
  (`ray start` rewrites a loopback address to the machine's address); Ray's single-machine
  switch `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` makes it keep 127.0.0.1, and Ray 2.60 then
  binds its gRPC servers to that address; `--include-dashboard=false` keeps the web UI off;
- turns usage reporting off (`RAY_USAGE_STATS_ENABLED=0`) in the head and in this process;
- keeps all its files (sessions, logs, sockets) in one folder, short enough for Unix socket
  paths, and its own token for Ray's token authentication in that folder
  (`RAY_AUTH_MODE=token`, `RAY_AUTH_TOKEN_PATH`), so neither `~/.ray/auth_token` is read
  nor written and another local user cannot drive the cluster;
- runs in its own session (`start_new_session`), is told SIGTERM by the kernel when this
  process dies (PR_SET_PDEATHSIG, set before Ray runs), and is stopped on `close()`, at
  exit, or by `reap(folder)` from another process: SIGTERM, a grace period, then SIGKILL
  to every process of the session or carrying the cluster's marker variable.

This process's environment gets the driver-side variables while the cluster is open (so a
plain `ray.init(address=cluster.address)` connects), and gets its old values back on close.
Ray reads the single-machine switch and the authentication mode once, when it is imported;
if this process imported Ray before the cluster started, both are refreshed in the loaded Ray
(else `ray.init` would rewrite 127.0.0.1 to the machine's address and find no GCS there, and
would send no token), and again on close.
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RAY_MISSING = "the cluster mode needs Ray: pip install 'streamer[cluster]'"

# Set in the head's environment; every Ray process inherits it, even one that leaves the
# session, so a cluster's processes can be found from its folder alone.
MARKER_VARIABLE = "STREAMER_RAY_CLUSTER"
HEAD_FILE = "head.json"
HEAD_LOG = "head.log"
TOKEN_FILE = "auth_token"

# Ray puts its sockets at FOLDER/session_<date>_<time>_<usec>_<pid>/sockets/plasma_store;
# Linux caps a socket path at 107 bytes, which leaves this much for FOLDER.
MAX_FOLDER_CHARS = 40

# Runs as the head's process before Ray: ask for SIGTERM when the parent (this Python) dies,
# give up if it already has, then run `ray start` in place.
_LAUNCHER = """
import ctypes, os, signal, sys
ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
if os.getppid() != int(sys.argv[1]):
    sys.exit("the process that started this Ray head is gone")
sys.argv = ["ray", *sys.argv[2:]]
from ray.scripts.scripts import main
main()
"""


def ray_available() -> bool:
    """Whether Ray can be imported here (tests skip the cluster mode without it)."""
    return importlib.util.find_spec("ray") is not None


def require_ray() -> None:
    """Raise ModuleNotFoundError naming the extra to install when Ray is missing."""
    if not ray_available():
        raise ModuleNotFoundError(RAY_MISSING, name="ray")


def driver_environment(folder: str | os.PathLike) -> dict[str, str]:
    """The variables a driver needs to join the cluster in `folder`: its token, no usage
    reporting, and 127.0.0.1 as its own address."""
    return {
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(Path(folder) / TOKEN_FILE),
    }


class LocalCluster:
    """A Ray head on 127.0.0.1 with `num_cpus` CPUs, its files in `folder`.

    Starts on construction and blocks until Ray reports it running (or raises, with the end
    of Ray's log); use as a context manager or call `close()`. `folder` defaults to a fresh
    folder under /tmp, removed on close; a folder the caller gives is kept (logs stay in it).
    """

    def __init__(
        self,
        num_cpus: int | None = None,
        folder: str | os.PathLike | None = None,
        *,
        object_store_memory: int | None = None,
        startup_timeout_s: float = 120.0,
        stop_grace_s: float = 15.0,
    ) -> None:
        require_ray()
        self.num_cpus = (os.cpu_count() or 1) if num_cpus is None else num_cpus
        if self.num_cpus < 1:
            raise ValueError(f"num_cpus={num_cpus}: a cluster needs at least one CPU")
        self.stop_grace_s = stop_grace_s
        self._owns_folder = folder is None
        self.folder = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp") if folder is None else folder).absolute()
        if len(str(self.folder)) > MAX_FOLDER_CHARS:
            raise ValueError(
                f"cluster folder {self.folder} is {len(str(self.folder))} characters long; Ray's socket paths "
                f"inside it must fit in 107, so give one of at most {MAX_FOLDER_CHARS} (e.g. under /tmp)"
            )
        self.folder.mkdir(parents=True, exist_ok=True)
        self.address = ""
        self._closed = False
        self._saved_environment: dict[str, str | None] = {}
        self._saved_cluster_switch: bool | None = None
        self._head: subprocess.Popen | None = None
        atexit.register(self.close)
        try:
            self._start(object_store_memory, startup_timeout_s)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def head_pid(self) -> int:
        """The `ray start` process; also the id of the session and process group it leads."""
        if self._head is None:
            raise RuntimeError("the cluster's head was never started")
        return self._head.pid

    def processes(self) -> list[int]:
        """The live processes of this cluster (see `cluster_processes`)."""
        return cluster_processes(self.folder)

    def close(self) -> None:
        """Disconnect this driver if it is connected here, stop the head and every process it
        started, and check that none is left (RuntimeError naming them otherwise). Idempotent."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        try:
            self._disconnect_driver()
            left = reap(self.folder, grace_s=self.stop_grace_s)
            if self._head is not None:
                self._head.wait()
            if left:
                raise RuntimeError(f"Ray processes {left} of {self.folder} survived SIGKILL")
        finally:
            for name, value in self._saved_environment.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            if self._saved_cluster_switch is not None:
                _set_loaded_cluster_switch(self._saved_cluster_switch)
            if self._owns_folder:
                shutil.rmtree(self.folder, ignore_errors=True)

    def _start(self, object_store_memory: int | None, timeout_s: float) -> None:
        token = self.folder / TOKEN_FILE
        token.touch(mode=0o600)
        token.write_text(secrets.token_hex(32))
        variables = driver_environment(self.folder)
        for name, value in variables.items():
            self._saved_environment[name] = os.environ.get(name)
            os.environ[name] = value
        self._saved_cluster_switch = _set_loaded_cluster_switch(False)
        command = [
            sys.executable, "-c", _LAUNCHER, str(os.getpid()),
            "start", "--head", "--block",
            "--node-ip-address=127.0.0.1",
            "--port=0",
            "--include-dashboard=false",
            "--disable-usage-stats",
            f"--num-cpus={self.num_cpus}",
            f"--temp-dir={self.folder}",
        ]
        if object_store_memory is not None:
            command.append(f"--object-store-memory={object_store_memory}")
        log = self.folder / HEAD_LOG
        with open(log, "wb") as log_file:
            self._head = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env={**os.environ, **variables, MARKER_VARIABLE: str(self.folder)},
                start_new_session=True,
            )
        (self.folder / HEAD_FILE).write_text(json.dumps({"pid": self._head.pid}))
        self.address = self._wait_until_running(log, timeout_s)

    def _wait_until_running(self, log: Path, timeout_s: float) -> str:
        address_file = self.folder / "ray_current_cluster"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._head.poll() is not None:
                raise RuntimeError(
                    f"the Ray head exited with status {self._head.returncode} while starting; "
                    f"the end of its log ({log}):\n{_tail(log)}"
                )
            if address_file.exists() and b"Ray runtime started" in log.read_bytes():
                return address_file.read_text().strip()
            time.sleep(0.1)
        raise TimeoutError(
            f"the Ray head did not start within {timeout_s:.0f} s (a busy machine may need a longer "
            f"startup_timeout_s); the end of its log ({log}):\n{_tail(log)}"
        )

    def _disconnect_driver(self) -> None:
        if "ray" not in sys.modules or not self.address:
            return
        import ray

        if ray.is_initialized() and ray.get_runtime_context().gcs_address == self.address:
            ray.shutdown()


def _set_loaded_cluster_switch(value: bool) -> bool | None:
    """Make an already imported Ray see the current environment: its multi-machine switch,
    and the authentication mode and token its C++ core caches (refreshed as Ray itself does
    when it turns token authentication on). Returns the switch's old value, or None when Ray
    is not imported yet (it will read the environment then)."""
    constants = sys.modules.get("ray._private.ray_constants")
    if constants is None:
        return None
    old = constants.ENABLE_RAY_CLUSTER
    constants.ENABLE_RAY_CLUSTER = value
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()
    return old


def cluster_processes(folder: str | os.PathLike) -> list[int]:
    """Live (not zombie) processes of the cluster in `folder`: those carrying its marker
    variable, and those in the head's session while its head still runs."""
    folder = str(Path(folder).absolute())
    marker = f"{MARKER_VARIABLE}={folder}".encode()
    head = _recorded_head(folder)
    session = head if head is not None and _is_marked(head, marker) else None
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        pid = int(entry.name)
        stat = _stat_fields(pid)
        if stat is None or stat[0] == "Z":
            continue
        if (session is not None and int(stat[3]) == session) or _is_marked(pid, marker):
            found.append(pid)
    return sorted(found)


def reap(folder: str | os.PathLike, grace_s: float = 15.0) -> list[int]:
    """Stop whatever is left of the cluster in `folder` (from any process, e.g. after its
    owner was killed): SIGTERM to the head (Ray then stops its children) or, with the head
    gone, to every process of the cluster; after `grace_s`, SIGKILL to all. Returns the pids
    still alive after that (an empty list when all are gone)."""
    folder = str(Path(folder).absolute())
    head = _recorded_head(folder)
    left = cluster_processes(folder)
    if not left:
        return []
    _signal(left if head not in left else [head], signal.SIGTERM)
    left = _wait_for_exit(folder, grace_s)
    if left:
        _signal(left, signal.SIGKILL)
        left = _wait_for_exit(folder, 5.0)
    return left


def _wait_for_exit(folder: str, timeout_s: float) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while (left := cluster_processes(folder)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def _signal(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _recorded_head(folder: str) -> int | None:
    try:
        return int(json.loads((Path(folder) / HEAD_FILE).read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return None


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name: state, ppid, pgrp, session, ..."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def _is_marked(pid: int, marker: bytes) -> bool:
    try:
        return marker in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
