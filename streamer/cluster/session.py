"""A session of the cluster engine, as its front sees it: the same surface as `streamer.Session`.

The front reads the sources and cuts snippets here, near the media; the model state lives
on the engine worker the cluster placed the session on, and every step and question goes
to that worker (session affinity). A few snippets travel at a time (`window`), so the
network round trip overlaps the worker's step.

Nothing is lost when a worker dies. Every `checkpoint_every` snippets the front pauses
sending, takes the session's saved form from the worker (with no step in flight, so it
holds exactly the snippets acknowledged so far), checks it is intact and keeps it, and
keeps every snippet acknowledged since. When a call fails because the worker died or
restarted, the session is reopened from that checkpoint on a live worker, the kept
snippets are stepped again (their updates were already delivered, so they are not
repeated), and the snippets in flight are sent again. The cost is reported in
`session.restores` and on the next update (`Update.restored`); a live source may have
dropped snippets while the worker was away, counted as usual in `Update.dropped`. A call
that still fails after one restore raises `WorkerLost`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, TypeVar

from model.media import MediaItem, Snippet
from streamer.cluster.worker import Checkpoint
from streamer.events import DEFAULT_FEED_SIZE, EventFeed
from streamer.files import file_path, write_atomic
from streamer.producing import Queued, SnippetProducer, join_readers
from streamer.session import Answer, Update, on_threads
from streamer.sources.reading import check_sources, plan_readers
from streamer.state_io import StreamClock, with_front
from streamer.watch import Moment, Watch

log = logging.getLogger(__name__)
T = TypeVar("T")


class WorkerLost(RuntimeError):
    """A session's worker failed and restoring the session elsewhere failed too."""


@dataclass(eq=False)
class WorkerHandle:
    """A worker as the front knows it: its stable name and its Ray actor."""

    name: str
    actor: Any
    draining: bool = False
    info: dict = field(default_factory=dict)


class Front(Protocol):
    """What a cluster session needs from the engine that placed it (`ClusterEngine` is one)."""

    config: Any  # ClusterConfig: window, checkpoint_every, timeouts
    media: Any  # MediaSpec: what the front's chunker cuts
    can_align: bool

    def get(self, ref: Any, timeout: float | None = None) -> Any:
        """A call's result."""

    def is_worker_failure(self, exc: BaseException) -> bool:
        """Whether the call failed because its worker did."""

    def place_after_failure(self, sid: str, failed: WorkerHandle) -> WorkerHandle:
        """A live worker to restore a session on."""

    def forget(self, session: ClusterSession) -> None:
        """The session closed."""


@dataclass(frozen=True)
class Restore:
    """A session moved to another worker (or its restarted self) after its worker failed.

    `replayed`: snippets stepped again from the front's buffer on top of the last checkpoint;
    `lost_s`: stream seconds whose effect on the state is gone (0 unless the front had to
    restart the session without a checkpoint it trusted); `took_s`: wall time of the restore."""

    from_worker: str
    to_worker: str
    at_t: float
    replayed: int
    lost_s: float
    took_s: float
    reason: str


@dataclass
class _Sent(Queued):
    """A queued snippet on its way to a worker."""

    ref: Any = None  # the step call's result
    worker: WorkerHandle | None = None  # where it was sent


class ClusterSession(SnippetProducer):
    """A stream whose state lives on a cluster worker. Create with `cluster.session()`."""

    def __init__(self, engine: Front, sid: str, worker: WorkerHandle, opened: dict, *, max_queued: int,
                 index_hours: float | None, initial: bytes | None, chunker_state: dict | None = None,
                 pending: Sequence[Snippet] = ()) -> None:
        self.id = sid
        self.engine = engine
        self._init_producer(engine.media, max_queued)  # its lock guards the chunker, queue, clock and holds
        self._index_hours = index_hours
        self._worker = worker
        self._calls = threading.RLock()  # the worker handle, sequence numbers and restores
        if chunker_state:
            self._chunker.load_state_dict(chunker_state)
        now = time.perf_counter()
        self._queue.extend(Queued(s, now) for s in pending)
        self.clock = StreamClock(steps=opened["steps"], dropped=opened["dropped"], t=opened["t"])
        self._seq = 0  # snippets sent to the current worker since it opened the session
        self._checkpoint: Checkpoint | None = None
        self._initial = initial  # what the session was opened from, until the first checkpoint
        self._replay: list[Snippet] = []  # acknowledged since the checkpoint
        self._acked_since_checkpoint = 0
        self._holds = 0  # save/drain waiting for no snippet in flight
        self._in_flight = 0
        self._attached = False
        self._closed = False
        self._newest_t1 = self.clock.t
        self._feeds: weakref.WeakSet[EventFeed] = weakref.WeakSet()
        self._restored: Restore | None = None  # to put on the next update
        self.restores: list[Restore] = []

    # ----------------------------------------------------------------------------- info
    @property
    def worker(self) -> str:
        """Name of the worker holding the state now."""
        return self._worker.name

    @property
    def closed(self) -> bool:
        with self._lock:
            return self._closed

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue) + self._in_flight

    @property
    def can_align(self) -> bool:
        return self.engine.can_align

    # --------------------------------------------------------------------------- stream
    def stream(self, *sources: Iterable[MediaItem], flush: bool = True) -> Iterator[Update]:
        """As `Session.stream`: cut the sources into snippets here, step them on the worker
        holding this session, and yield an Update per snippet in order."""
        check_sources(sources)
        live, readers = plan_readers(sources)
        with self._lock:
            if self._closed:
                raise RuntimeError("this session is closed; start another with cluster.session()")
            if self._attached:
                raise RuntimeError("this session is already streaming a source; use one session per stream")
            self._attached = True
            producers = self._start_readers(readers, live, flush, name="streamer-front-source")
        for producer in producers:
            producer.start()
        sent: deque[_Sent] = deque()
        try:
            while True:
                with self._lock:
                    # snippets in flight count towards the next checkpoint, so a restore replays at most
                    # `checkpoint_every` of them
                    while len(sent) < self.engine.config.window and self._queue and not self._holds \
                            and self._acked_since_checkpoint + len(sent) < self.engine.config.checkpoint_every:
                        queued = self._queue.popleft()
                        self._in_flight += 1
                        sent.append(_Sent(queued.snippet, queued.ready_at))
                        self._lock.notify_all()
                    unsent = [item for item in sent if item.ref is None]
                for item in unsent:
                    item.worker, item.ref = self._send(item.snippet)
                if not sent:
                    if self._acked_since_checkpoint >= self.engine.config.checkpoint_every:
                        self._take_checkpoint()
                        continue
                    with self._lock:
                        if self._closed or self._error is not None:
                            break
                        if self._producers_left == 0 and not self._queue:
                            break
                        self._lock.wait(0.05)
                    continue
                try:
                    update = self._result(sent)
                except Exception:
                    if self.closed:  # close() let go of the state on the worker: the stream just ends
                        break
                    raise
                item = sent.popleft()
                with self._lock:
                    self._in_flight -= 1
                    update = self._acknowledge(item, update)
                    self._lock.notify_all()
                yield update
            with self._lock:
                if self._error is not None:
                    raise self._error
        finally:
            with self._lock:
                self._stop, self._attached = True, False
                self._lock.notify_all()
            self._settle(sent)
            join_readers(producers)

    async def astream(self, *sources: Iterable[MediaItem], flush: bool = True) -> AsyncIterator[Update]:
        """`stream` for asyncio (waits on worker threads)."""
        async for update in on_threads(self.stream(*sources, flush=flush)):
            yield update

    def _acknowledge(self, item: _Sent, update: Update) -> Update:
        """Book a stepped snippet (under the lock) and make the update the caller sees."""
        self.clock.steps += 1
        self.clock.last_index = item.snippet.index
        self.clock.t = item.snippet.t1
        self._replay.append(item.snippet)
        self._acked_since_checkpoint += 1
        update = replace(update, latency_ms=(time.perf_counter() - item.ready_at) * 1e3,
                         dropped=self._dropped_since_update, dropped_total=self.clock.dropped,
                         lag_s=max(0.0, self._newest_t1 - item.snippet.t1), queued=len(self._queue),
                         restored=self._restored, _owner=self, _steps=self.clock.steps)
        self._dropped_since_update, self._restored = 0, None
        for event in update.events:
            for feed in list(self._feeds):
                feed.put(event)
        return update

    # ------------------------------------------------------------------- worker calls
    def _send(self, snippet: Snippet) -> tuple[WorkerHandle, Any]:
        """Send one snippet to the holding worker: the worker and the pending result."""
        with self._calls:
            seq, self._seq = self._seq, self._seq + 1
            meta = (snippet.index, snippet.t0, snippet.t1, snippet.video_filled, snippet.audio_filled)
            return self._worker, self._worker.actor.step.remote(self.id, seq, meta, snippet.video, snippet.audio,
                                                                self.engine.config.call_timeout_s)

    def _result(self, sent: deque[_Sent]) -> Update:
        """The update of the oldest snippet in flight; after a worker failure, restore the session
        and send everything in flight again (once)."""
        for attempt in (0, 1):
            try:
                return self.engine.get(sent[0].ref)
            except Exception as exc:
                if not self.engine.is_worker_failure(exc) or attempt == 1:
                    if attempt == 1 and self.engine.is_worker_failure(exc):
                        raise WorkerLost(f"session {self.id}: its worker failed again right after a restore "
                                         f"({exc}); nothing more can be done here") from exc
                    raise
                self._restore(exc, failed=sent[0].worker)
                for item in sent:
                    item.worker, item.ref = self._send(item.snippet)
        raise AssertionError("unreachable")

    def _call(self, method: Callable[[Any], Any], what: str) -> Any:
        """One call to the holding worker, restoring the session once if the worker failed."""
        for attempt in (0, 1):
            with self._calls:
                worker = self._worker
            try:
                return self.engine.get(method(worker.actor))
            except Exception as exc:
                if not self.engine.is_worker_failure(exc):
                    raise
                if attempt == 1:
                    raise WorkerLost(f"session {self.id}: {what} failed after restoring the session ({exc})") from exc
                self._restore(exc, failed=worker)
        raise AssertionError("unreachable")

    def _restore(self, exc: BaseException, failed: WorkerHandle | None = None) -> None:
        """Reopen the session from its last checkpoint on a live worker and replay what came after."""
        started = time.perf_counter()
        with self._calls:
            if failed is not None and self._worker is not failed:
                return  # another thread restored it already
            old = self._worker
            checkpoint = self._checkpoint if self._checkpoint is not None and self._checkpoint.intact() else None
            data = checkpoint.data if checkpoint is not None else self._initial
            lost_s = 0.0
            if self._checkpoint is not None and checkpoint is None:  # damaged: start over from the opening state
                log.warning("session %s: its checkpoint is damaged; restoring from the state it was opened with",
                            self.id)
            worker = self.engine.place_after_failure(self.id, old)
            opened = self.engine.get(worker.actor.open.remote(self.id, data, self.max_queued, self._index_hours),
                                     timeout=self.engine.config.restore_timeout_s)
            self._worker, self._seq = worker, 0
            replay = self._replay if checkpoint is not None or self._checkpoint is None else []
            if checkpoint is None and self._checkpoint is not None:
                lost_s = self.clock.t - opened["t"]
            refs = [self._send(snippet)[1] for snippet in replay]
            for ref in refs:
                self.engine.get(ref)
            restore = Restore(old.name, worker.name, self.clock.t, len(replay), lost_s,
                              time.perf_counter() - started, _reason(exc))
            log.warning("session %s moved from worker %s to %s after a failure (%s): %d snippets replayed in %.2f s",
                        self.id, old.name, worker.name, restore.reason, restore.replayed, restore.took_s)
            with self._lock:
                self._restored = restore
                self.restores.append(restore)

    def _take_checkpoint(self) -> None:
        """The worker's saved form of the session with nothing in flight, kept here once intact."""
        checkpoint = self._call(lambda actor: actor.snapshot.remote(self.id), "a checkpoint")
        with self._lock:
            self._acked_since_checkpoint = 0
            if not checkpoint.intact() or checkpoint.steps != self.clock.steps:
                log.warning("session %s: checkpoint at %d steps does not match the %d acknowledged; kept the "
                            "previous one", self.id, checkpoint.steps, self.clock.steps)
                return
            self._checkpoint, self._initial = checkpoint, None
            self._replay.clear()

    def _settle(self, sent: deque[_Sent]) -> None:
        """A stream left with snippets in flight: book the ones the worker steps (their updates
        go unseen, as in `Session.stream`); if that fails, put the rest back at the front of the
        queue for the next stream and restore the session so its sequence starts afresh."""
        if self.closed:
            return  # the worker let go of the state: nothing to book
        while sent:
            try:
                update = self.engine.get(sent[0].ref)
            except Exception as exc:
                with self._lock:
                    self._queue.extendleft(Queued(item.snippet, item.ready_at) for item in reversed(sent))
                    self._in_flight -= len(sent)
                    self._lock.notify_all()
                try:
                    self._restore(exc, failed=sent[0].worker)
                except Exception as again:  # the next call tries again, and says why if it cannot
                    log.warning("session %s: could not restore after a stream ended early: %s", self.id, again)
                return
            item = sent.popleft()
            with self._lock:
                self._in_flight -= 1
                self._acknowledge(item, update)
                self._lock.notify_all()

    def _held(self, action: Callable[[], T]) -> T:
        """Run `action` with no snippet in flight (the stream pauses sending meanwhile)."""
        with self._lock:
            self._holds += 1
            try:
                while self._in_flight:
                    self._lock.wait()
            except BaseException:
                self._holds -= 1
                raise
        try:
            with self._calls:
                return action()
        finally:
            with self._lock:
                self._holds -= 1
                self._lock.notify_all()

    # ------------------------------------------------------------------------ questions
    def ask(self, question: str, *, at: Update | None = None, max_new_tokens: int | None = None) -> Answer:
        """As `Session.ask`, answered by the worker holding the state (its state as of now)."""
        self._refuse_at(at)
        return self._call(lambda actor: actor.ask.remote(self.id, question, max_new_tokens), "a question")

    async def aask(self, question: str, *, at: Update | None = None, max_new_tokens: int | None = None) -> Answer:
        return await asyncio.to_thread(self.ask, question, at=at, max_new_tokens=max_new_tokens)

    def ask_stream(self, question: str, *, at: Update | None = None,
                   max_new_tokens: int | None = None) -> Iterator[str]:
        """Text pieces as the worker generates them (a Ray streaming call)."""
        self._refuse_at(at)
        if not isinstance(question, str) or not question.strip():
            raise ValueError("ask needs a non-empty question string")
        with self._calls:
            worker = self._worker
        pieces = worker.actor.ask_stream.remote(self.id, question, max_new_tokens)
        return self._stream_pieces(pieces, worker, question, max_new_tokens)

    def _stream_pieces(self, pieces: Any, worker: WorkerHandle, question: str,
                       max_new_tokens: int | None) -> Iterator[str]:
        first = True
        try:
            for ref in pieces:
                yield self.engine.get(ref)
                first = False
        except Exception as exc:
            if not (first and self.engine.is_worker_failure(exc)):
                raise
            self._restore(exc, failed=worker)  # nothing was said yet: ask the restored session
            yield self.ask(question, max_new_tokens=max_new_tokens).text

    @staticmethod
    def _refuse_at(at: Update | None) -> None:
        if at is not None:
            raise ValueError("ask(at=update) needs the state of that moment, which stays on the worker; a cluster "
                             "session answers from its state as of now")

    # ------------------------------------------------------------- watches and search
    def watch(self, phrase: str, *, threshold: float | None = None, check: tuple[str, str] | None = None) -> Watch:
        return self.watch_many([phrase], threshold=threshold, check=check)[0]

    def watch_many(self, phrases: Sequence[str], *, threshold: float | None = None,
                   check: tuple[str, str] | None = None) -> list[Watch]:
        if isinstance(phrases, str) or not isinstance(phrases, Sequence):
            raise TypeError("watch_many takes a list of phrases; use watch(phrase) for one")
        return self._call(lambda actor: actor.watch.remote(self.id, list(phrases), threshold, check), "watch")

    def unwatch(self, watch: Watch | int) -> None:
        watch_id = watch.id if isinstance(watch, Watch) else watch
        self._call(lambda actor: actor.unwatch.remote(self.id, watch_id), "unwatch")

    @property
    def watches(self) -> tuple[Watch, ...]:
        return tuple(self._call(lambda actor: actor.watches.remote(self.id), "watches"))

    def events(self, maxsize: int = DEFAULT_FEED_SIZE) -> EventFeed:
        if not self.can_align:
            raise ValueError("this model has no alignment head, so a session cannot watch")
        feed = EventFeed(maxsize)
        with self._lock:
            if self._closed:
                feed.close()
            else:
                self._feeds.add(feed)
        return feed

    def search(self, phrase: str, k: int = 5, *, threshold: float | None = None) -> list[Moment]:
        return self._call(lambda actor: actor.search.remote(self.id, phrase, k, threshold), "search")

    @property
    def index_size(self) -> int:
        return self._call(lambda actor: actor.index_size.remote(self.id), "index size")

    # ----------------------------------------------------------------------- save/move/close
    def to_bytes(self) -> bytes:
        """What `save` writes: the worker's state with the front's chunker tail and queue in it,
        so `Engine.load_session` resumes it in one process, or `cluster.load_session` on any worker."""
        checkpoint = self._held(lambda: self._call(lambda actor: actor.snapshot.remote(self.id), "save"))
        with self._lock:
            return with_front(checkpoint.data, self._chunker.state_dict(), [item.snippet for item in self._queue])

    def save(self, path: str | Path) -> Path:
        path = file_path(path)
        return write_atomic(path, self.to_bytes())

    def move_to(self, worker: WorkerHandle) -> None:
        """Move the state to `worker` with nothing lost (a drain): pause, take it, reopen there."""
        def move() -> None:
            old = self._worker
            if old is worker:
                return
            checkpoint = self.engine.get(old.actor.close_session.remote(self.id, True))
            self.engine.get(worker.actor.open.remote(self.id, checkpoint.data, self.max_queued, self._index_hours))
            self._worker, self._seq = worker, 0
            with self._lock:
                self._checkpoint, self._initial, self._acked_since_checkpoint = checkpoint, None, 0
                self._replay.clear()
        self._held(move)

    def close(self) -> None:
        """End a running stream and release the state on the worker (`save` first to keep it)."""
        with self._lock:
            if self._closed:
                return
            self._closed, self._stop = True, True
            for feed in list(self._feeds):
                feed.close()
            self._lock.notify_all()
        self.engine.forget(self)
        try:
            with self._calls:
                self.engine.get(self._worker.actor.close_session.remote(self.id, False))
        except Exception as exc:  # the worker is gone: so is the state it held
            log.debug("session %s: closing on worker %s: %s", self.id, self._worker.name, exc)

    def __enter__(self) -> ClusterSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()



def _reason(exc: BaseException) -> str:
    """The failure in a line: the error's type and its first sentence (Ray's run to paragraphs)."""
    first = str(exc).strip().split("\n")[0].split(". ")[0]
    return f"{type(exc).__name__}: {first[:160]}"
