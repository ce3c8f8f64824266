"""The cluster engine: `Engine`'s surface, with sessions spread over engine workers on a Ray cluster.

One worker per device (a Ray actor holding an `Engine`) steps the sessions placed on it
in batches, as the in-process engine does. The front (this object, in the app or the
WebRTC server) reads and cuts media and sends each session's snippets and questions to the
worker that holds its state. Placement is rendezvous hashing of the session id over the
workers' names (blake2b, so every front agrees; never Python's salted `hash()`), and a
session stays with its worker until that worker fails or is drained.

Why Ray core actors and not Ray Serve: measured on this project's 2-core machine (Ray
2.60), named actors called directly kept affinity on every call at about 2 ms a call,
while Serve kept it only through an alpha request-router API, at 6-8 ms a call, and its
multiplexing lost or split session state under concurrent starts and eviction.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from streamer.cluster.local import LocalCluster, require_ray
from streamer.cluster.session import ClusterSession, WorkerHandle, WorkerLost
from streamer.cluster.worker import EngineWorker, SessionNotHeld, WorkerConfig
from streamer.state_io import split_front

log = logging.getLogger(__name__)

_PING_S = 1.0  # a worker that does not answer a ping this fast is taken for dead when placing


@dataclass(frozen=True)
class ClusterConfig:
    """How the cluster engine runs; `from_name` gives the presets."""

    workers: int = 2
    checkpoint: str | None = None  # on every worker's node; None: the bundled tiny model
    device: str | None = None  # worker device; None: a GPU per worker when the cluster has GPUs, else cpu
    cpus_per_worker: float = 1.0  # Ray CPUs a worker reserves (placement only)
    threads_per_worker: int | None = None  # torch threads in a worker process
    max_batch: int | None = None
    max_queued: int = 4  # snippets a session queues at the front before a live source drops
    window: int = 2  # snippets of one session in flight to its worker
    checkpoint_every: int = 8  # snippets between a session's checkpoints (the most a failure replays)
    call_timeout_s: float = 60.0
    restore_timeout_s: float = 60.0
    start_timeout_s: float = 300.0  # a worker loading its model on a busy node
    worker_restarts: int = 3  # Ray restarts of a worker process that died
    max_concurrency: int = 64  # calls one worker serves at once (its sessions' steps batch together)
    namespace: str = "streamer"

    @classmethod
    def from_name(cls, name: str, **overrides: Any) -> ClusterConfig:
        presets = {
            "local": cls(),
            "gpu": cls(device="cuda", cpus_per_worker=2.0),
        }
        if name not in presets:
            raise ValueError(f"unknown cluster preset {name!r}; choose one of {', '.join(presets)}")
        return replace(presets[name], **overrides)

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"a cluster needs at least one worker, got workers={self.workers}")
        if self.window < 1 or self.checkpoint_every < 1 or self.max_queued < 1:
            raise ValueError("window, checkpoint_every and max_queued are counts of snippets, at least 1")


def rendezvous(key: str, names: list[str]) -> str:
    """The name with the highest blake2b score for `key`: every front picks the same worker, and
    adding or removing one worker moves only the keys that belong to it."""
    if not names:
        raise WorkerLost("the cluster has no worker to place a session on; add one with cluster.add_worker()")
    return max(names, key=lambda name: hashlib.blake2b(f"{key}\0{name}".encode(), digest_size=8).digest())


def _ray():
    # never let a stray call start a Ray of its own (it would listen on every interface)
    os.environ.setdefault("RAY_ENABLE_AUTO_CONNECT", "0")
    require_ray()
    import ray

    return ray


class ClusterEngine:
    """`Engine`'s surface over Ray workers. Create with `streamer.connect()`."""

    def __init__(self, config: ClusterConfig, *, local: Any = None, owns_ray: bool = False) -> None:
        self.config = config
        self._ray = _ray()
        self._local = local
        self._owns_ray = owns_ray
        self._lock = threading.RLock()
        self._workers: dict[str, WorkerHandle] = {}
        self._sessions: dict[str, ClusterSession] = {}
        self._closed = False
        self._next_worker = 0
        try:
            self._start([self._free_name() for _ in range(config.workers)])
            first = next(iter(self._workers.values()))
            about = first.info
        except BaseException:
            self.close()
            raise
        self.media = about["media"]
        self.fingerprint: str = about["fingerprint"]
        self.can_align: bool = about["can_align"]

    @property
    def local_folder(self) -> Path | None:
        """Where the Ray cluster this engine started keeps its files (None: it joined one)."""
        return None if self._local is None else self._local.folder

    # ------------------------------------------------------------------------ workers
    def add_worker(self, name: str | None = None) -> str:
        """Start one more engine worker (it takes its share of new sessions); its name."""
        with self._lock:
            if name is not None and name in self._workers:
                raise ValueError(f"a worker named {name!r} exists already")
            name = name or self._free_name()
        self._start([name])
        return name

    def _free_name(self) -> str:
        with self._lock:
            taken = set(self._workers)
            while f"worker-{self._next_worker}" in taken:
                self._next_worker += 1
            self._next_worker += 1
            return f"worker-{self._next_worker - 1}"

    def _start(self, names: list[str]) -> None:
        """Start workers side by side (each loads the model), and wait until all answer."""
        gpu = self._wants_gpu()
        device = self.config.device or ("cuda" if gpu else "cpu")
        handles = []
        for name in names:
            actor = self._ray.remote(EngineWorker).options(
                name=f"streamer-{name}", namespace=self.config.namespace, get_if_exists=True,
                max_restarts=self.config.worker_restarts, max_task_retries=0,
                max_concurrency=self.config.max_concurrency,
                num_cpus=self.config.cpus_per_worker, num_gpus=1 if gpu else 0,
            ).remote(WorkerConfig(name, self.config.checkpoint, device, self.config.max_batch,
                                  self.config.threads_per_worker))
            handles.append(WorkerHandle(name, actor))
        with self._lock:  # known before they answer, so close() stops them even if they never do
            self._workers.update((handle.name, handle) for handle in handles)
        infos = self.get([h.actor.info.remote() for h in handles], timeout=self.config.start_timeout_s)
        for handle, info in zip(handles, infos):
            handle.info = info

    def _wants_gpu(self) -> bool:
        if self.config.device is not None:
            return self.config.device.startswith("cuda")
        return self._ray.cluster_resources().get("GPU", 0) > 0

    @property
    def workers(self) -> list[str]:
        with self._lock:
            return list(self._workers)

    def worker_pid(self, name: str) -> int:
        """The process id of worker `name` now (it changes when Ray restarts it)."""
        return self.get(self._worker(name).actor.info.remote())["pid"]

    def drain(self, name: str) -> int:
        """Move every session of worker `name` to the others with nothing lost, then stop it;
        how many sessions moved."""
        with self._lock:
            worker = self._worker(name)
            if len(self._workers) == 1:
                raise ValueError("cannot drain the only worker: add another first (cluster.add_worker())")
            worker.draining = True
            sessions = [s for s in self._sessions.values() if s._worker is worker]
        for session in sessions:
            session.move_to(self.place(session.id))
        with self._lock:
            self._workers.pop(name, None)
        self._stop_worker(worker)
        return len(sessions)

    def place(self, sid: str) -> WorkerHandle:
        """The worker a session belongs on: rendezvous hashing over the workers not draining."""
        with self._lock:
            names = [name for name, w in self._workers.items() if not w.draining]
            return self._workers[rendezvous(sid, names)]

    def place_after_failure(self, sid: str, failed: WorkerHandle) -> WorkerHandle:
        """A live worker for a session whose worker failed: another one that answers now, else
        the failed one once Ray has restarted it."""
        with self._lock:
            others = [w for w in self._workers.values() if w is not failed and not w.draining]
        alive = [w for w in others if self._answers(w, _PING_S)]
        if alive:
            names = [w.name for w in alive]
            return next(w for w in alive if w.name == rendezvous(sid, names))
        if self._answers(failed, self.config.restore_timeout_s):
            return failed
        raise WorkerLost(f"session {sid}: worker {failed.name} failed and no worker answers; "
                         "check `streamer cluster status`")

    def _answers(self, worker: WorkerHandle, timeout_s: float) -> bool:
        try:
            self.get(worker.actor.ping.remote(), timeout=timeout_s)
            return True
        except Exception:
            return False

    def _worker(self, name: str) -> WorkerHandle:
        with self._lock:
            if name not in self._workers:
                raise ValueError(f"no worker named {name!r}; the workers are {', '.join(self._workers) or 'none'}")
            return self._workers[name]

    # ------------------------------------------------------------------------ sessions
    def session(self, *, max_queued: int | None = None, index_hours: float | None = None) -> ClusterSession:
        """A new stream with an empty state, held by the worker its id hashes to."""
        return self._open(None, max_queued, index_hours)

    def load_session(self, path: str | os.PathLike, *, max_queued: int | None = None,
                     index_hours: float | None = None) -> ClusterSession:
        """Resume a stream saved with `session.save(path)` (by this cluster or an in-process Engine)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no session state file at {path}")
        return self.restore_session(path.read_bytes(), max_queued=max_queued, index_hours=index_hours)

    def restore_session(self, data: bytes, *, max_queued: int | None = None,
                        index_hours: float | None = None) -> ClusterSession:
        return self._open(data, max_queued, index_hours)

    def _open(self, data: bytes | None, max_queued: int | None, index_hours: float | None) -> ClusterSession:
        if self._closed:
            raise RuntimeError("this cluster engine is closed; connect again with streamer.connect()")
        chunker, pending = None, []
        if data is not None:
            data, chunker, pending = split_front(data, self.media)
        sid = uuid.uuid4().hex
        worker = self.place(sid)
        max_queued = max_queued or self.config.max_queued
        opened = self.get(worker.actor.open.remote(sid, data, max_queued, index_hours))
        session = ClusterSession(self, sid, worker, opened, max_queued=max_queued, index_hours=index_hours,
                                 initial=data, chunker_state=chunker, pending=pending)
        with self._lock:
            self._sessions[sid] = session
        return session

    def forget(self, session: ClusterSession) -> None:
        with self._lock:
            self._sessions.pop(session.id, None)

    # ---------------------------------------------------------------------- ray calls
    def get(self, ref: Any, timeout: float | None = None) -> Any:
        """A call's result; a task error re-raised as the error the worker raised."""
        if not self._ray.is_initialized():
            raise RuntimeError("this process is no longer connected to the Ray cluster (ray.shutdown() was "
                               "called); connect again with streamer.connect()")
        return self._ray.get(ref, timeout=self.config.call_timeout_s + 5 if timeout is None else timeout)

    def is_worker_failure(self, exc: BaseException) -> bool:
        """Whether a call failed because its worker died, restarted or hangs (so the session is
        restored), rather than because of what was asked."""
        errors = self._ray.exceptions
        return isinstance(exc, (errors.RayActorError, errors.GetTimeoutError, SessionNotHeld))

    # -------------------------------------------------------------------------- status
    def status(self) -> list[dict]:
        """Each worker: name, node, pid, device, sessions, snippets per second, busy share, lag;
        `alive` False for one that does not answer."""
        with self._lock:
            workers = list(self._workers.values())
        rows = []
        for worker in workers:
            try:
                info = self.get(worker.actor.info.remote(), timeout=5.0)
                info.pop("media", None)
                rows.append({**info, "alive": True, "draining": worker.draining})
            except Exception as exc:
                rows.append({"name": worker.name, "alive": False, "error": f"{type(exc).__name__}"})
        return rows

    @property
    def stats(self) -> dict[str, float]:
        """Steps, snippets and busy seconds over the live workers (as `Engine.stats`, summed)."""
        rows = [row for row in self.status() if row["alive"]]
        snippets = sum(row["snippets"] for row in rows)
        steps = sum(row["steps"] for row in rows)
        return {"steps": steps, "snippets": snippets, "mean_batch": snippets / steps if steps else 0.0,
                "busy_s": sum(row["busy_s"] for row in rows), "workers": len(rows)}

    # --------------------------------------------------------------------------- close
    def close(self) -> None:
        """Close every session, stop the workers, and the local Ray cluster if this engine started it."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            sessions, self._sessions = list(self._sessions.values()), {}
            workers, self._workers = list(self._workers.values()), {}
        for session in sessions:
            session.close()
        for worker in workers:
            self._stop_worker(worker)
        if self._owns_ray:
            self._ray.shutdown()
        if self._local is not None:
            self._local.close()

    def _stop_worker(self, worker: WorkerHandle) -> None:
        if not self._ray.is_initialized():
            return  # the cluster went first: its workers went with it
        try:
            self.get(worker.actor.shutdown.remote(), timeout=10.0)
        except Exception as exc:
            log.debug("worker %s did not shut down cleanly: %s", worker.name, exc)
        try:
            self._ray.kill(worker.actor, no_restart=True)
        except Exception as exc:
            log.debug("worker %s: %s", worker.name, exc)

    def __enter__(self) -> ClusterEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(address: str | None = None, workers: int = 2, *, config: ClusterConfig | None = None,
            **overrides: Any) -> ClusterEngine:
    """A cluster engine with `Engine`'s surface. `address` None starts a Ray cluster on this
    machine (listening on 127.0.0.1 only, stopped by `close()`); "auto" or "ray://host:port"
    joins a running one. `workers`: engine workers to start (one per device)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # never report usage to anyone
    ray = _ray()
    config = replace(config or ClusterConfig(), workers=workers, **overrides)
    local, owns_ray = None, False
    if not ray.is_initialized():
        if address is None:
            local = LocalCluster(num_cpus=max(os.cpu_count() or 1, int(workers * config.cpus_per_worker + 1)))
            address = local.address
        try:
            ray.init(address=address, namespace=config.namespace, log_to_driver=False)
        except BaseException:
            if local is not None:
                local.close()
            raise
        owns_ray = True
    return ClusterEngine(config, local=local, owns_ray=owns_ray)
