"""One stream's life: ingest a source, keep its state current, answer questions at any moment.

Three threads meet here. A producer thread reads the source and cuts it into snippets
(live sources are read at their own pace, so a slow consumer never stalls the camera);
the engine's scheduler thread steps queued snippets in batches with other sessions; the
caller's thread receives updates and asks questions. One lock guards the chunker, the
queue and the state together, so a question or a save always sees a consistent stream and
waits at most for the step in flight.

A session knows its engine only through `Host`: the model it answers with, the media it
cuts, the device and fingerprint of its state, and a way to wake the stepping thread and to
leave it. The engine attaches the session to its scheduler as a `Lane` (the other
direction), so a session runs under a test's fake host, and whatever serves sessions (a
server, standing queries) works with a Session, not with engine internals.

Why one module of ~480 lines: the producer, stepping and caller halves of `Session` share
one lock and one set of invariants (the queue, the snippet in flight, the outbox), so they
are one class, read together.
"""

from __future__ import annotations

import asyncio
import heapq
import threading
import time
import warnings
from collections import deque
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field, replace
from os import PathLike
from pathlib import Path
from typing import Protocol

import torch

from model import StreamerModel
from model.media import MediaItem, MediaSpec, Snippet
from model.state import State
from streamer.chunker import Chunker
from streamer.scheduler import StepInfo
from streamer.files import file_path, write_atomic
from streamer.sources.base import TRACKS, MissingTrackWarning
from streamer.state_io import SavedSession, StateError, StreamClock, encode_session

_JOIN_TIMEOUT_S = 5.0

# The answer to any question while the state holds no snippet: the model would answer from
# its untouched initial state, which is letter soup, not "I don't know".
NOTHING_SEEN = "nothing seen yet: no snippet of the stream has been stepped"

# What the chunker puts in place of a missing track, for the warning that says so.
_FILLED_WITH = {"video": "black frames, so answers about what is seen", "audio": "silence, so answers about what is heard"}


@dataclass(frozen=True)
class Update:
    """One snippet folded into the state.

    `latency_ms` runs from the moment the chunker emitted the snippet to the moment the
    state holding it was ready (queueing + step). `dropped` counts snippets dropped since
    the previous update (live sources only), `lag_s` how many stream seconds of snippets
    were already cut but not yet stepped: how far behind the live edge the state is.
    """

    index: int
    t0: float
    t1: float
    latency_ms: float
    dropped: int
    lag_s: float
    dropped_total: int
    queued: int
    batch_size: int
    step_ms: float
    video_filled: bool
    audio_filled: bool
    # The state right after this snippet, so `session.ask(q, at=update)` can answer exactly
    # as of this moment even when the engine has already moved on (kept out of repr/eq).
    _state: State | None = field(default=None, repr=False, compare=False)
    _owner: object = field(default=None, repr=False, compare=False)
    _steps: int = field(default=0, repr=False, compare=False)  # snippets in `_state`


@dataclass(frozen=True)
class Answer:
    """A question answered from the state as it was when the question was asked.

    `t` is the stream time the state covered (end of the last stepped snippet) and `index`
    that snippet's index (-1 before any); `tokens` counts generated text pieces. `snippets`
    counts the snippets the state was built from: 0 means nothing was seen yet, and then
    `text` says so (`NOTHING_SEEN`) instead of asking the model.
    """

    question: str
    text: str
    t: float
    index: int
    latency_ms: float
    first_token_ms: float
    tokens: int
    snippets: int

    @property
    def seen(self) -> bool:
        """Whether the answer comes from any media at all."""
        return self.snippets > 0


@dataclass
class _Queued:
    snippet: Snippet
    ready_at: float  # perf_counter() when the chunker emitted it


class Host(Protocol):
    """What a Session needs from whatever steps it (the Engine is one)."""

    model: StreamerModel  # builds the first state (`init_state`) and answers (`answer`)
    media: MediaSpec  # what a snippet holds: the session's chunker cuts to it
    device: torch.device  # where the state lives
    fingerprint: str  # names the model in a saved state

    def wake(self) -> None:
        """The session may have a snippet ready to step (or room for its result)."""

    def detach(self, session: Session) -> None:
        """Stop stepping `session`: it is closing."""


class Session:
    """A stream attached to an Engine. Create with `engine.session()` or `engine.load_session(path)`."""

    def __init__(self, host: Host, *, max_queued: int = 4, saved: SavedSession | None = None) -> None:
        if max_queued < 1:
            raise ValueError(f"max_queued must be at least 1 snippet, got {max_queued}")
        self.host = host
        self.max_queued = max_queued
        self._lock = threading.Condition()
        self._chunker = Chunker(host.media)
        self._queue: deque[_Queued] = deque()
        self._outbox: deque[Update] = deque()
        self._in_flight: _Queued | None = None
        self._attached = False  # a stream() is running: only then are snippets stepped
        self._live = False
        self._stop = False
        self._generation = 0
        self._producers_left = 0  # sources of the running stream still being read
        self._stopped_early = False
        self._error: BaseException | None = None
        self._producers: list[threading.Thread] = []  # the running stream's source readers
        self._sources: tuple[Iterable[MediaItem], ...] = ()  # the latest stream's sources
        self._corrupt_before = 0  # corrupt packets skipped by the sources of earlier streams
        self._newest_t1 = 0.0
        self._dropped_since_update = 0
        self._closed = False
        if saved is None:
            self.clock = StreamClock()
            self._state = host.model.init_state(1, device=host.device)
        else:
            self.clock = replace(saved.clock)
            self._state = {k: v.to(host.device) for k, v in saved.tensors.items()}
            try:
                self._chunker.load_state_dict(saved.chunker)
            except Exception as exc:
                raise StateError(f"the saved chunker data is malformed: {exc}") from None
            now = time.perf_counter()
            self._queue.extend(_Queued(s, now) for s in saved.pending)
            self._newest_t1 = max([self.clock.t] + [s.t1 for s in saved.pending])

    # ----------------------------------------------------------------------------- info
    @property
    def t(self) -> float:
        """Stream seconds covered by the state."""
        with self._lock:
            return self.clock.t

    @property
    def steps(self) -> int:
        with self._lock:
            return self.clock.steps

    @property
    def dropped(self) -> int:
        with self._lock:
            return self.clock.dropped

    @property
    def corrupt_packets(self) -> int:
        """Undecodable packets its sources skipped and went on (`File.corrupt_packets`), in every
        stream of this session object so far (not saved with the state)."""
        with self._lock:
            return self._corrupt_before + _corrupt_packets(self._sources)

    @property
    def closed(self) -> bool:
        """True once `close()` (or the engine's `close()`) ended this session; a stream it ran stopped early."""
        with self._lock:
            return self._closed

    @property
    def pending(self) -> int:
        """Snippets cut but not yet stepped (they are stepped by the next `stream`, and saved)."""
        with self._lock:
            return len(self._queue) + (self._in_flight is not None)

    # --------------------------------------------------------------------------- stream
    def stream(self, *sources: Iterable[MediaItem], flush: bool = True) -> Iterator[Update]:
        """Feed the source(s) through the engine, yielding an Update per stepped snippet.

        Live sources (`source.is_live`) are read at their own pace: when the engine falls
        behind, the oldest queued snippets are dropped and counted. Other sources are
        processed as fast as possible with nothing dropped. Several sources (a camera and
        a microphone) are read side by side; live ones, each on its own clock, are aligned
        on the wall clock at their first item. `flush=False` keeps a trailing partial
        snippet in the chunker (to continue with the next source or after a save);
        snippets not yet stepped when the loop is left early stay queued for the next call.
        A source on its own clock (another file, a new camera) continues the session's
        timeline where it stopped (see `Chunker.start_source`). Sources are closed when the
        stream ends. Closing the session or its engine ends the stream at once.
        """
        if not sources:
            raise ValueError("stream() needs a source, e.g. session.stream(sources.File('clip.mp4'))")
        for source in sources:
            if isinstance(source, (str, bytes, PathLike)):
                raise TypeError(f"stream() takes a source, not a path: use File({str(source)!r}) from streamer.sources")
            if not isinstance(source, Iterable):
                raise TypeError(f"stream() takes a source (File, Camera, Microphone, Arrays or any iterable of "
                                f"VideoFrame and AudioBlock), got {type(source).__name__}")
        _warn_missing_tracks(sources)
        live_sources = [source for source in sources if getattr(source, "is_live", False)]
        offline = [source for source in sources if not getattr(source, "is_live", False)]
        live, align = bool(live_sources), len(live_sources) > 1
        # Offline sources are merged by time in one reader so none runs ahead of the others
        # (the chunker would take that for a lagging modality); live ones each get a reader.
        readers = [([source], source, align) for source in live_sources]
        if offline:
            merged = offline[0] if len(offline) == 1 else heapq.merge(*offline, key=lambda item: item.t)
            readers.append((offline, merged, False))
        with self._lock:
            if self._closed:
                raise RuntimeError(
                    "this session is closed; start another with engine.session() or engine.load_session(path)"
                )
            if self._attached:
                raise RuntimeError(
                    "this session is already streaming a source; use one session per stream (engine.session())"
                )
            self._generation += 1
            generation = self._generation
            self._attached, self._live, self._stop = True, live, False
            self._producers_left, self._stopped_early, self._error = len(readers), False, None
            self._outbox = deque(maxlen=4 * self.max_queued) if live else deque()
            self._chunker.start_source()  # its clock may start anywhere: it continues this stream's timeline
            self._corrupt_before += _corrupt_packets(self._sources)
            self._sources = sources
            origin = time.perf_counter()
            producers = self._producers = [
                threading.Thread(target=self._produce, name="streamer-source", daemon=True,
                                 args=(owned, items, live, flush, generation, origin if restamp else None))
                for owned, items, restamp in readers
            ]
        for producer in producers:
            producer.start()
        self.host.wake()
        try:
            while True:
                with self._lock:
                    while not self._outbox and self._error is None and not self._drained() and not self._closed:
                        self._lock.wait()
                    if self._closed:
                        return  # session.close() or engine.close(): the stream ends here
                    if self._outbox:
                        update = self._outbox.popleft()
                    elif self._error is not None:
                        raise self._error
                    else:
                        return
                self.host.wake()  # an offline lane may wait for room in the outbox
                yield update
        finally:
            with self._lock:
                self._stop, self._attached = True, False
                self._outbox.clear()
                self._lock.notify_all()
            _join(producers)

    async def astream(self, *sources: Iterable[MediaItem], flush: bool = True) -> AsyncIterator[Update]:
        """`stream` for asyncio: the waiting happens on a worker thread, never on the event loop."""
        updates = self.stream(*sources, flush=flush)
        done = object()
        try:
            while True:
                update = await asyncio.to_thread(next, updates, done)
                if update is done:
                    return
                yield update
        finally:
            await asyncio.to_thread(updates.close)

    def _drained(self) -> bool:
        return self._producers_left == 0 and not self._queue and self._in_flight is None

    def _produce(self, owned: list[Iterable[MediaItem]], items: Iterable[MediaItem], live: bool, flush: bool,
                 generation: int, wall_origin: float | None) -> None:
        """Read items into the chunker, then close the `owned` sources; with `wall_origin`,
        restamp items onto the wall clock (live sources, each on its own clock)."""
        finished, offset = True, None
        try:
            for item in items:
                if wall_origin is not None:
                    offset = (time.perf_counter() - wall_origin) - item.t if offset is None else offset
                    item = replace(item, t=item.t + offset)
                with self._lock:
                    while not live and len(self._queue) >= self.max_queued and self._current(generation):
                        self._lock.wait()
                    if self._generation != generation:
                        finished = False
                        return  # a newer stream owns the session now
                    # An item already taken from the source is kept even when the stream is
                    # being stopped, so a caller who continues the same iterator loses nothing.
                    self._chunker.push(item)
                    self._enqueue(self._chunker.pop_ready(), live)
                    if self._stop:
                        finished = False
                        break
                self.host.wake()
        except Exception as exc:  # a source or chunker error ends the stream; stream() re-raises it
            finished = False
            with self._lock:
                if self._current(generation):
                    self._error = exc
                    self._lock.notify_all()
        finally:
            for source in owned:
                close = getattr(source, "close", None)
                if callable(close):
                    close()
            with self._lock:
                if self._generation == generation:
                    self._producers_left -= 1
                    self._stopped_early |= not finished
                    if self._producers_left == 0 and flush and not (self._stopped_early or self._stop):
                        self._enqueue(self._chunker.flush(), live)  # the last source ended: cut the tail
                self._lock.notify_all()
            self.host.wake()

    def _current(self, generation: int) -> bool:
        return self._generation == generation and not self._stop

    def _enqueue(self, snippets: list[Snippet], live: bool) -> None:
        now = time.perf_counter()
        for snippet in snippets:
            self._queue.append(_Queued(snippet, now))
            self._newest_t1 = max(self._newest_t1, snippet.t1)
        while live and len(self._queue) > self.max_queued:
            self._queue.popleft()
            self.clock.dropped += 1
            self._dropped_since_update += 1
        self._lock.notify_all()

    # ------------------------------------------------------------------ scheduler lane
    def take_ready(self) -> tuple[Snippet, State] | None:
        with self._lock:
            if not self._attached or self._in_flight is not None or not self._queue or self._error is not None:
                return None
            if not self._live and len(self._outbox) >= self.max_queued:
                return None  # offline: wait for the caller to take updates (backpressure)
            self._in_flight = self._queue.popleft()
            self._lock.notify_all()
            return self._in_flight.snippet, self._state

    def finish_step(self, state: State, info: StepInfo) -> None:
        with self._lock:
            queued, self._in_flight = self._in_flight, None
            snippet = queued.snippet
            self._state = state
            self.clock.steps += 1
            self.clock.last_index = snippet.index
            self.clock.t = snippet.t1
            if self._attached:
                self._outbox.append(
                    Update(
                        index=snippet.index,
                        t0=snippet.t0,
                        t1=snippet.t1,
                        latency_ms=(info.finished_at - queued.ready_at) * 1e3,
                        dropped=self._dropped_since_update,
                        lag_s=max(0.0, self._newest_t1 - snippet.t1),
                        dropped_total=self.clock.dropped,
                        queued=len(self._queue),
                        batch_size=info.batch_size,
                        step_ms=info.step_ms,
                        video_filled=snippet.video_filled,
                        audio_filled=snippet.audio_filled,
                        _state=state,
                        _owner=self,
                        _steps=self.clock.steps,
                    )
                )
                self._dropped_since_update = 0
            self._lock.notify_all()

    def fail_step(self, error: BaseException) -> None:
        with self._lock:
            if self._in_flight is not None:
                self._queue.appendleft(self._in_flight)  # not applied: keep it, the state stays consistent
                self._in_flight = None
            self._error = error
            self._lock.notify_all()

    # ------------------------------------------------------------------------ questions
    def _answer_state(self, question: str, at: Update | None) -> tuple[State, float, int, int]:
        """The state to answer from, the stream time and snippet index it covers, and how many
        snippets it was built from."""
        if not isinstance(question, str) or not question.strip():
            raise ValueError("ask needs a non-empty question string")
        if at is not None:
            if not isinstance(at, Update) or at._owner is not self:
                raise ValueError("ask(at=...) takes an Update yielded by this session's stream")
            return at._state, at.t1, at.index, at._steps
        with self._lock:  # states are never modified in place
            return self._state, self.clock.t, self.clock.last_index, self.clock.steps

    def ask(self, question: str, *, at: Update | None = None, max_new_tokens: int | None = None) -> Answer:
        """Answer from the state as of now (or as of update `at`); safe from any thread mid-stream.
        Before any snippet was stepped the answer is `NOTHING_SEEN` (`answer.seen` is False)."""
        started = time.perf_counter()
        state, t, index, steps = self._answer_state(question, at)
        first_token, pieces = None, []
        for piece in self._generate(state, steps, question, max_new_tokens):
            first_token = first_token or time.perf_counter()
            pieces.append(piece)
        finished = time.perf_counter()
        return Answer(
            question=question,
            text="".join(pieces).strip(),
            t=t,
            index=index,
            latency_ms=(finished - started) * 1e3,
            first_token_ms=((first_token or finished) - started) * 1e3,
            tokens=len(pieces) if steps else 0,
            snippets=steps,
        )

    def ask_stream(self, question: str, *, at: Update | None = None, max_new_tokens: int | None = None) -> Iterator[str]:
        """Text pieces as they are generated; the state is captured now, not at the first `next()`.
        Before any snippet was stepped the one piece is `NOTHING_SEEN`."""
        state, _, _, steps = self._answer_state(question, at)
        return self._generate(state, steps, question, max_new_tokens)

    async def aask(self, question: str, *, at: Update | None = None, max_new_tokens: int | None = None) -> Answer:
        """`ask` for asyncio (decodes on a worker thread)."""
        return await asyncio.to_thread(self.ask, question, at=at, max_new_tokens=max_new_tokens)

    def _generate(self, state: State, steps: int, question: str, max_new_tokens: int | None) -> Iterator[str]:
        if steps == 0:
            yield NOTHING_SEEN
            return
        with torch.no_grad():
            yield from self.host.model.answer(state, question, max_new_tokens=max_new_tokens)

    # ----------------------------------------------------------------------- save/close
    def snapshot(self) -> SavedSession:
        """The complete resumable state (waits for the step in flight, at most one step)."""
        with self._lock:
            while self._in_flight is not None:
                self._lock.wait()
            return self._snapshot_locked()

    def _snapshot_locked(self) -> SavedSession:
        return SavedSession(
            fingerprint=self.host.fingerprint,
            tensors={k: v.detach().to("cpu", copy=True) for k, v in self._state.items()},
            clock=replace(self.clock),
            chunker=self._chunker.state_dict(),
            pending=[q.snippet for q in self._queue],
        )

    def save(self, path: str | Path) -> Path:
        """Write the stream's state to `path` (msgpack); resume it with `engine.load_session(path)`."""
        path = file_path(path)  # refuse an empty path or a folder before waiting for the step in flight
        with self._lock:
            while self._in_flight is not None:
                self._lock.wait()
            data = encode_session(self._snapshot_locked())  # encode under the lock: the chunker may reuse buffers
        return write_atomic(path, data)

    def close(self) -> None:
        """Stop stepping this session and leave the engine; a running stream ends and its readers are joined.

        The state stays: `ask` and `save` still work on a closed session.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._stop, self._attached = True, False
            producers = self._producers
            self._lock.notify_all()
        self.host.detach(self)
        _join(producers)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _warn_missing_tracks(sources: tuple[Iterable[MediaItem], ...]) -> None:
    """Warn (MissingTrackWarning) when the sources together lack video or audio; sources
    that cannot tell what they carry (no `tracks`) leave the question open, and say nothing."""
    declared = [getattr(source, "tracks", None) for source in sources]
    if any(tracks is None for tracks in declared):
        return
    for kind in sorted(TRACKS - frozenset().union(*declared)):
        what = f"the source has no {kind} track" if len(sources) == 1 else f"none of the sources has a {kind} track"
        warnings.warn(f"{what}: every snippet's {kind} is {_FILLED_WITH[kind]} mean nothing",
                      MissingTrackWarning, stacklevel=3)


def _corrupt_packets(sources: Iterable[object]) -> int:
    return sum(getattr(source, "corrupt_packets", 0) for source in sources)


def _join(producers: list[threading.Thread]) -> None:
    """Wait for source readers to stop; each stops after the item it is reading (bounded, for a stuck device)."""
    for producer in producers:
        if producer is not threading.current_thread():
            producer.join(_JOIN_TIMEOUT_S)
