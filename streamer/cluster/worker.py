"""An engine worker: one `Engine` on one device, holding the sessions a cluster front placed on it.

The front cuts media into snippets and sends each session's snippets here one call at a
time. Each held session runs one endless `Session.stream` over a `SnippetInbox`, so the
engine's scheduler batches the steps of all held sessions exactly as it does in one
process, and watches, the moment index and save/restore work unchanged. A step call
waits for its own snippet's update. Calls run on the actor's thread pool and may arrive
out of order, so the inbox puts snippets back into the order the front sent them.

The class is plain Python: Ray makes it an actor (`ray.remote(EngineWorker)`), and tests
can drive it in process.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import numpy as np

from model.media import Snippet
from streamer.session import Answer, Session, Update
from streamer.watch import Moment, Watch

_OPEN_WAIT_S = 30.0  # a restored session steps the snippets it saved as pending before it takes new ones


class SessionNotHeld(KeyError):
    """The worker does not hold this session: it restarted and lost it, or the session moved.
    A front restores the session from its last checkpoint when it sees this."""

    def __str__(self) -> str:  # KeyError quotes its argument; this one is a sentence
        return str(self.args[0])


@dataclass(frozen=True)
class WorkerConfig:
    """What one worker loads, and how it batches. `checkpoint` must exist on the worker's node."""

    name: str
    checkpoint: str | None = None  # None: the bundled tiny model
    device: str | None = None  # None: cuda when the worker's node has one
    max_batch: int | None = None
    threads: int | None = None  # torch CPU threads of this worker's process (None: torch's default)


@dataclass(frozen=True)
class Checkpoint:
    """A session's saved form, taken with no step in flight: `steps` snippets folded in. `digest`
    lets the holder check that the bytes it keeps are the bytes the worker wrote."""

    steps: int
    t: float
    data: bytes = field(repr=False)
    digest: str = field(repr=False)

    @classmethod
    def of(cls, steps: int, t: float, data: bytes) -> Checkpoint:
        return cls(steps, t, data, hashlib.blake2b(data, digest_size=16).hexdigest())

    def intact(self) -> bool:
        return isinstance(self.data, bytes) and hashlib.blake2b(self.data, digest_size=16).hexdigest() == self.digest


class SnippetInbox:
    """The snippets of one session in the order the front sent them (by sequence number), as
    an endless source for `Session.stream`; `close()` ends it."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._waiting: dict[int, Snippet] = {}
        self._next = 0
        self._closed = False

    def put(self, seq: int, snippet: Snippet) -> None:
        with self._cond:
            if seq < self._next or seq in self._waiting:
                raise ValueError(f"snippet number {seq} was already sent to this worker")
            self._waiting[seq] = snippet
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __iter__(self) -> Iterator[Snippet]:
        while True:
            with self._cond:
                while self._next not in self._waiting and not self._closed:
                    self._cond.wait()
                if self._next not in self._waiting:
                    return
                snippet = self._waiting.pop(self._next)
                self._next += 1
            yield snippet


class _Lane:
    """One held session: its engine session, inbox, and the step calls waiting for their updates."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.inbox = SnippetInbox()
        self.cond = threading.Condition()
        self.waiting: dict[int, Update | None] = {}  # snippet index -> its update once stepped
        self.error: BaseException | None = None
        self.ended = False  # the stream ended (the session closed or moved): waiting calls get no update
        self.lag_s = 0.0
        self.thread = threading.Thread(target=self._run, name="streamer-worker-lane", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for update in self.session.stream(self.inbox, flush=False):
                with self.cond:
                    self.lag_s = update.lag_s
                    if update.index in self.waiting:  # snippets restored as pending have no caller
                        self.waiting[update.index] = replace(update, _state=None, _owner=None, _checks=())
                        self.cond.notify_all()
        except BaseException as exc:  # the engine failed: every waiting call says so
            with self.cond:
                self.error = exc
        finally:
            with self.cond:
                self.ended = True
                self.cond.notify_all()

    def step(self, seq: int, snippet: Snippet, timeout_s: float) -> Update:
        with self.cond:
            if self.error is not None:
                raise RuntimeError(f"this session's stream failed on the worker: {self.error}") from self.error
            self.waiting[snippet.index] = None
        self.inbox.put(seq, snippet)
        deadline = time.monotonic() + timeout_s
        with self.cond:
            try:
                while self.waiting[snippet.index] is None and self.error is None and not self.ended:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError(f"snippet {snippet.index} was not stepped within {timeout_s:.0f} s")
                    self.cond.wait(left)
                if self.waiting[snippet.index] is not None:
                    return self.waiting[snippet.index]
                if self.error is not None:
                    raise RuntimeError(f"this session's stream failed on the worker: {self.error}") from self.error
                raise SessionNotHeld(f"the session was closed on this worker before snippet {snippet.index} "
                                     "was stepped")
            finally:
                self.waiting.pop(snippet.index, None)

    def close(self) -> None:
        self.inbox.close()
        self.thread.join(10.0)
        self.session.close()


class EngineWorker:
    """Holds an Engine and the sessions placed on it; every method is one call from a front."""

    def __init__(self, config: WorkerConfig) -> None:
        import torch

        from streamer.engine import Engine

        if config.threads:
            torch.set_num_threads(config.threads)
        self.config = config
        self.engine = Engine.load(config.checkpoint, device=config.device, max_batch=config.max_batch)
        self._lanes: dict[str, _Lane] = {}
        self._lock = threading.Lock()
        self._started = time.monotonic()

    # ------------------------------------------------------------------ about the worker
    def info(self) -> dict:
        """Who this worker is and how it is doing, for placement and `streamer cluster status`."""
        stats = self.engine.stats
        with self._lock:
            lanes = list(self._lanes.values())
        up = time.monotonic() - self._started
        return {
            "name": self.config.name,
            "pid": os.getpid(),
            "node": _node_address(),
            "device": str(self.engine.device),
            "sessions": len(lanes),
            "steps": stats["steps"],
            "snippets": stats["snippets"],
            "mean_batch": stats["mean_batch"],
            "snippets_per_s": stats["snippets"] / up if up > 0 else 0.0,
            "busy_s": stats["busy_s"],
            "busy": stats["busy_s"] / up if up > 0 else 0.0,
            "max_lag_s": max((lane.lag_s for lane in lanes), default=0.0),
            "fingerprint": self.engine.fingerprint,
            "media": self.engine.media,
            "can_align": self.engine.watches is not None,
            "uptime_s": up,
        }

    def held(self) -> list[str]:
        with self._lock:
            return sorted(self._lanes)

    def ping(self) -> str:
        return self.config.name

    # ---------------------------------------------------------------------- life of a session
    def open(self, sid: str, data: bytes | None, max_queued: int, index_hours: float | None) -> dict:
        """Hold session `sid`: new (data None) or restored from saved bytes; a session of that id
        already here is replaced (a front restoring it after a failed call)."""
        if data is None:
            session = self.engine.session(max_queued=max_queued, **({} if index_hours is None else
                                                                    {"index_hours": index_hours}))
        else:
            session = self.engine.restore_session(data, max_queued=max_queued, index_hours=index_hours)
        lane = _Lane(session)
        deadline = time.monotonic() + _OPEN_WAIT_S
        while session.pending and time.monotonic() < deadline:  # saved pending snippets: step them first
            time.sleep(0.002)
        with self._lock:
            old, self._lanes[sid] = self._lanes.get(sid), lane
        if old is not None:
            old.close()
        return {"steps": session.steps, "t": session.t, "dropped": session.dropped, "last_index": -1}

    def close_session(self, sid: str, keep: bool = False) -> Checkpoint | None:
        """Let go of `sid`; `keep`: return its final checkpoint (a drain moves it elsewhere)."""
        with self._lock:
            lane = self._lanes.pop(sid, None)
        if lane is None:
            if keep:
                raise SessionNotHeld(f"worker {self.config.name} does not hold session {sid}")
            return None
        lane.inbox.close()
        lane.thread.join(10.0)
        checkpoint = self._checkpoint(lane.session) if keep else None
        lane.session.close()
        return checkpoint

    def step(self, sid: str, seq: int, meta: tuple, video: np.ndarray, audio: np.ndarray,
             timeout_s: float = 60.0) -> Update:
        """Fold snippet number `seq` of `sid` into its state, batched with the other sessions'
        steps; the update it made. Video and audio come as separate arguments so each stays
        under Ray's inline-argument size (an argument over it goes through the object store)."""
        index, t0, t1, video_filled, audio_filled = meta
        snippet = Snippet(index, t0, t1, video, audio, video_filled, audio_filled)
        return self._lane(sid).step(seq, snippet, timeout_s)

    def snapshot(self, sid: str) -> Checkpoint:
        return self._checkpoint(self._lane(sid).session)

    # ------------------------------------------------------------------------- questions
    def ask(self, sid: str, question: str, max_new_tokens: int | None = None) -> Answer:
        return self._lane(sid).session.ask(question, max_new_tokens=max_new_tokens)

    def ask_stream(self, sid: str, question: str, max_new_tokens: int | None = None) -> Iterator[str]:
        yield from self._lane(sid).session.ask_stream(question, max_new_tokens=max_new_tokens)

    def watch(self, sid: str, phrases: list[str], threshold: float | None,
              check: tuple[str, str] | None) -> list[Watch]:
        return self._lane(sid).session.watch_many(phrases, threshold=threshold, check=check)

    def unwatch(self, sid: str, watch_id: int) -> None:
        self._lane(sid).session.unwatch(watch_id)

    def watches(self, sid: str) -> tuple[Watch, ...]:
        return self._lane(sid).session.watches

    def search(self, sid: str, phrase: str, k: int, threshold: float | None) -> list[Moment]:
        return self._lane(sid).session.search(phrase, k, threshold=threshold)

    def index_size(self, sid: str) -> int:
        return self._lane(sid).session.index_size

    def shutdown(self) -> None:
        """Close every held session and the engine (the actor is killed after)."""
        with self._lock:
            lanes, self._lanes = list(self._lanes.values()), {}
        for lane in lanes:
            lane.close()
        self.engine.close()

    def _lane(self, sid: str) -> _Lane:
        with self._lock:
            lane = self._lanes.get(sid)
        if lane is None:
            raise SessionNotHeld(f"worker {self.config.name} does not hold session {sid}")
        return lane

    @staticmethod
    def _checkpoint(session: Session) -> Checkpoint:
        data = session.to_bytes()
        return Checkpoint.of(session.steps, session.t, data)


def _node_address() -> str:
    try:
        import ray

        return ray.util.get_node_ip_address()
    except Exception:  # in process, without Ray
        return "local"
