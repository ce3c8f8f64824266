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

Standing queries and moment search ride on the steps: with a model that aligns, the
scheduler hands each stepped snippet's vector and its watches' scores to `finish_step`,
which adds the vector to the session's moment index and runs every watch's hysteresis at
once (`WatchSet.fire`). Events go into that snippet's `Update` and to the session's event
feeds. A watch with a check is confirmed by asking the decoder on the thread that reads
the stream (`stream()`), never on the scheduler's, which serves every session.

The producer half (source threads, chunker, queue) is `streamer.producing.SnippetProducer`,
shared with the cluster front's session. The stepping and caller halves share one lock and
one set of invariants with it (the queue, the snippet in flight, the outbox, the watches and
the index), so they stay one class, read together.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from numbers import Real
from pathlib import Path
from typing import Protocol

import torch

from model import StreamerModel
from model.media import MediaItem, MediaSpec, Snippet
from model.state import State
from streamer.events import DEFAULT_FEED_SIZE, EventFeed
from streamer.files import file_path, write_atomic
from streamer.producing import Queued, SnippetProducer, join_readers
from streamer.scheduler import StepInfo
from streamer.sources.reading import check_sources, corrupt_packets, plan_readers
from streamer.state_io import SavedSession, StateError, StreamClock, encode_session
from streamer.watch import (DEFAULT_INDEX_HOURS, Event, Moment, SnippetIndex, SnippetScores, Watch, WatchSet,
                            WatchTable, index_capacity, search_spans)

_EMBED_BATCH = 256  # phrases embedded per call when many are watched or restored at once

# The answer to any question while the state holds no snippet: the model would answer from
# its untouched initial state, which is letter soup, not "I don't know".
NOTHING_SEEN = "nothing seen yet: no snippet of the stream has been stepped"


@contextmanager
def _one_intra_op_thread() -> Iterator[None]:
    """Decode on the asking thread alone. The scheduler thread keeps its own OpenMP team; a
    second team from an asking thread puts more OpenMP threads than cores on a small machine,
    and libgomp then sleeps between parallel regions instead of spinning, so a batch-1 decode
    step, hundreds of tiny regions, waits on wake-ups (2 cores: first token 8.1 ms with two
    threads beside a live scheduler, 4.0 ms with one; one thread alone is 4.0 ms, two 3.2 ms)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


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
    events: tuple[Event, ...] = ()  # watches this snippet fired (see `Session.watch`)
    # Cluster sessions only: set on the first update after the session's worker failed and the
    # session was restored elsewhere (`streamer.cluster.session.Restore`: what it cost).
    restored: object = None
    # The state right after this snippet, so `session.ask(q, at=update)` can answer exactly
    # as of this moment even when the engine has already moved on (kept out of repr/eq).
    _state: State | None = field(default=None, repr=False, compare=False)
    _owner: object = field(default=None, repr=False, compare=False)
    _steps: int = field(default=0, repr=False, compare=False)  # snippets in `_state`
    _checks: tuple[tuple[Watch, float], ...] = field(default=(), repr=False, compare=False)  # crossings to confirm


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


class Host(Protocol):
    """What a Session needs from whatever steps it (the Engine is one)."""

    model: StreamerModel  # builds the first state (`init_state`) and answers (`answer`)
    media: MediaSpec  # what a snippet holds: the session's chunker cuts to it
    device: torch.device  # where the state lives
    fingerprint: str  # names the model in a saved state
    watches: WatchTable | None  # every session's watches, scored per step; None: the model cannot align

    def wake(self) -> None:
        """The session may have a snippet ready to step (or room for its result)."""

    def detach(self, session: Session) -> None:
        """Stop stepping `session`: it is closing."""


class Session(SnippetProducer):
    """A stream attached to an Engine. Create with `engine.session()` or `engine.load_session(path)`."""

    def __init__(self, host: Host, *, max_queued: int = 4, saved: SavedSession | None = None,
                 index_hours: float | None = None) -> None:
        """`index_hours`: stream hours the moment index keeps (None: `DEFAULT_INDEX_HOURS`, or
        what the saved session kept)."""
        capacity = None if index_hours is None else index_capacity(index_hours, host.media.snippet_seconds)
        self.host = host
        self._init_producer(host.media, max_queued)
        self._outbox: deque[Update] = deque()
        self._in_flight: Queued | None = None
        self._attached = False  # a stream() is running: only then are snippets stepped
        self._live = False
        self._sources: tuple[Iterable[MediaItem], ...] = ()  # the latest stream's sources
        self._corrupt_before = 0  # corrupt packets skipped by the sources of earlier streams
        self._closed = False
        self._feeds: weakref.WeakSet[EventFeed] = weakref.WeakSet()
        self._next_watch = 1  # id of the next watch
        self._watch_set: WatchSet | None = None
        self._index: SnippetIndex | None = None
        if host.watches is not None:
            self._restore_alignment(host.watches, saved, capacity)
        elif saved is not None and (saved.watches or saved.index is not None):
            raise StateError("the saved session has watches or a moment index, but this model has no alignment "
                             "head; load it with the engine of the checkpoint that wrote it")
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
            self._queue.extend(Queued(s, now) for s in saved.pending)
            self._newest_t1 = max([self.clock.t] + [s.t1 for s in saved.pending])

    def _restore_alignment(self, table: WatchTable, saved: SavedSession | None, capacity: int | None) -> None:
        """The watch set and moment index: empty, or as saved (phrase vectors recomputed)."""
        records = saved.watches if saved is not None else []
        try:
            vectors = self._embed([record["phrase"] for record in records])
            watches = [Watch(r["phrase"], float(r["threshold"]), vector, self._check(r["check"]),
                             id=r["id"], armed=r["armed"], fired=r["fired"]) for r, vector in zip(records, vectors)]
            if saved is not None and saved.index is not None:
                self._index = SnippetIndex.from_state_dict(saved.index, capacity)
        except (ValueError, KeyError, TypeError) as exc:
            raise StateError(f"the saved watches or moment index cannot be restored: {exc}") from None
        if self._index is None:
            snippets = capacity or index_capacity(DEFAULT_INDEX_HOURS, self.host.media.snippet_seconds)
            self._index = SnippetIndex(table.dim, snippets)
        self._next_watch = max((w.id for w in watches), default=0) + 1
        self._watch_set = table.watch_set(self)
        self._watch_set.add(watches)

    # ----------------------------------------------------------------------------- info
    @property
    def corrupt_packets(self) -> int:
        """Undecodable packets its sources skipped and went on (`File.corrupt_packets`), in every
        stream of this session object so far (not saved with the state)."""
        with self._lock:
            return self._corrupt_before + corrupt_packets(self._sources)

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
        check_sources(sources)
        live, readers = plan_readers(sources)
        with self._lock:
            if self._closed:
                raise RuntimeError(
                    "this session is closed; start another with engine.session() or engine.load_session(path)"
                )
            if self._attached:
                raise RuntimeError(
                    "this session is already streaming a source; use one session per stream (engine.session())"
                )
            self._attached, self._live = True, live
            self._outbox = deque(maxlen=4 * self.max_queued) if live else deque()
            self._corrupt_before += corrupt_packets(self._sources)
            self._sources = sources
            producers = self._start_readers(readers, live, flush, name="streamer-source")
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
                yield self._confirm(update) if update._checks else update
        finally:
            with self._lock:
                self._stop, self._attached = True, False
                self._outbox.clear()
                self._lock.notify_all()
            join_readers(producers)

    async def astream(self, *sources: Iterable[MediaItem], flush: bool = True) -> AsyncIterator[Update]:
        """`stream` for asyncio: the waiting happens on a worker thread, never on the event loop."""
        async for update in on_threads(self.stream(*sources, flush=flush)):
            yield update

    def _drained(self) -> bool:
        return self._producers_left == 0 and not self._queue and self._in_flight is None

    def _wake(self) -> None:
        self.host.wake()

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
            events, checks = self._match_locked(snippet, info.scores)
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
                        events=events,
                        _state=state,
                        _owner=self,
                        _steps=self.clock.steps,
                        _checks=checks,
                    )
                )
                self._dropped_since_update = 0
            self._lock.notify_all()

    def _match_locked(self, snippet: Snippet, scored: SnippetScores | None) -> tuple[tuple[Event, ...], tuple]:
        """Index the snippet and run every watch's hysteresis: the events it fires, and the
        crossings of watches whose check `stream()` asks before they fire."""
        if scored is None or self._watch_set is None:
            return (), ()
        self._index.add(scored.vector, snippet.index, snippet.t0, snippet.t1)
        fired = self._watch_set.fire(self._watch_set.scores_for(scored))
        if not fired:
            return (), ()
        events = tuple(self._fire_locked(w, s, snippet.index, snippet.t0, snippet.t1) for w, s in fired if not w.check)
        return events, tuple((w, s) for w, s in fired if w.check)

    def _fire_locked(self, watch: Watch, score: float, index: int, t0: float, t1: float,
                     checked: bool = False) -> Event:
        watch.fired += 1
        event = Event(watch.id, watch.phrase, index, t0, t1, score, checked)
        for feed in list(self._feeds):
            feed.put(event)
        return event

    def _confirm(self, update: Update) -> Update:
        """Ask each crossing watch's check question as of its snippet; the ones answered as
        expected fire (`checked=True`)."""
        confirmed = []
        for watch, score in update._checks:
            question, expected = watch.check
            with torch.no_grad():
                said = "".join(self.host.model.answer(update._state, question)).strip()
            if said.casefold() == expected.casefold():
                confirmed.append((watch, score))
        with self._lock:
            events = tuple(self._fire_locked(w, s, update.index, update.t0, update.t1, checked=True)
                           for w, s in confirmed if self._watch_set.holds(w))
        return replace(update, events=update.events + events, _checks=())

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
        pieces = self.host.model.answer(state, question, max_new_tokens=max_new_tokens)
        while True:
            with torch.no_grad(), _one_intra_op_thread():
                piece = next(pieces, None)
            if piece is None:
                return
            yield piece

    # ------------------------------------------------------------- watches and search
    def _aligned(self, what: str) -> WatchSet:
        if self._watch_set is None:
            raise ValueError(f"this model has no alignment head, so a session cannot {what}; load a checkpoint "
                             "trained with one (its config's align.dim is above 0)")
        return self._watch_set

    def _embed(self, phrases: list[str]) -> torch.Tensor:
        """Unit vectors [N, dim] of phrases (ValueError for an empty one or one too long for the
        model); a phrase given several times is embedded once."""
        for phrase in phrases:
            if not isinstance(phrase, str):
                raise ValueError(f"a phrase to watch or search for is text, got {type(phrase).__name__}")
        distinct = list(dict.fromkeys(phrases))
        parts = [self.host.model.embed_text(distinct[i:i + _EMBED_BATCH]).float().cpu()
                 for i in range(0, len(distinct), _EMBED_BATCH)]
        if not parts:
            return torch.zeros(0, self.host.model.cfg.align.dim)
        vectors = torch.cat(parts)
        if len(distinct) == len(phrases):
            return vectors
        row = {phrase: i for i, phrase in enumerate(distinct)}
        return vectors[[row[phrase] for phrase in phrases]]

    def watch(self, phrase: str, *, threshold: float | None = None,
              check: tuple[str, str] | None = None) -> Watch:
        """Tell me when it happens: from the next stepped snippet on, an `Event` fires each time
        `phrase` ("a red square appears", "drum") starts to match (its score crosses `threshold`,
        default the checkpoint's calibrated `align.watch_threshold`; it fires again only after
        the score fell clearly below). Events arrive in `Update.events` and `session.events()`.
        `check=(question, answer)`: on a crossing, ask the decoder `question` as of that
        snippet and fire only if it answers `answer` (say "what sound is playing?", "drum")."""
        return self.watch_many([phrase], threshold=threshold, check=check)[0]

    def watch_many(self, phrases: Sequence[str], *, threshold: float | None = None,
                   check: tuple[str, str] | None = None) -> list[Watch]:
        """`watch` for many phrases at once (embedded in batches): all are added, or none."""
        watches = self._aligned("watch")
        if isinstance(phrases, str) or not isinstance(phrases, Sequence):
            raise TypeError("watch_many takes a list of phrases; use watch(phrase) for one")
        threshold = self._threshold(threshold)
        check = self._check(check)
        vectors = self._embed(list(phrases))
        with self._lock:
            if self._closed:
                raise RuntimeError("this session is closed; watch on a new one (engine.session())")
            first, self._next_watch = self._next_watch, self._next_watch + len(phrases)
            added = [Watch(phrase.strip(), threshold, vector, check, id=first + i)
                     for i, (phrase, vector) in enumerate(zip(phrases, vectors))]
            watches.add(added)
        return added

    def _threshold(self, threshold: float | None) -> float:
        if threshold is None:
            return float(self.host.model.cfg.align.watch_threshold)
        if isinstance(threshold, bool) or not isinstance(threshold, Real) or not 0.0 <= threshold <= 1.0:
            raise ValueError(f"a watch threshold is a cosine similarity between 0 and 1, got {threshold!r}; "
                             "leave it out for the checkpoint's calibrated one")
        return float(threshold)

    def _check(self, check: tuple[str, str] | None) -> tuple[str, str] | None:
        if check is None:
            return None
        if (not isinstance(check, (tuple, list)) or len(check) != 2
                or not all(isinstance(part, str) and part.strip() for part in check)):
            raise ValueError(f"check takes a (question, expected answer) pair of non-empty strings, e.g. "
                             f"('what sound is playing?', 'drum'); got {check!r}")
        question, expected = check[0].strip(), check[1].strip()
        self.host.model.question_prompt(question)  # refuses a question past the decoder's budget
        return question, expected

    def unwatch(self, watch: Watch | int) -> None:
        """Stop a watch (the Watch `watch()` returned, or its id); its events so far stay delivered."""
        watches = self._aligned("watch")
        with self._lock:
            found = watches.find(watch.id if isinstance(watch, Watch) else watch)
            if found is None or (isinstance(watch, Watch) and found is not watch):
                raise ValueError(f"{watch!r} is not a watch of this session; session.watches lists them")
            watches.remove(found)

    @property
    def watches(self) -> tuple[Watch, ...]:
        """This session's watches, oldest first."""
        with self._lock:
            return tuple(self._watch_set.watches) if self._watch_set is not None else ()

    def events(self, maxsize: int = DEFAULT_FEED_SIZE) -> EventFeed:
        """A feed of this session's events from now on: `async for event in session.events()`,
        or `feed.get(timeout)` from any thread. It ends when the session closes; a reader more
        than `maxsize` events behind loses the oldest (counted in `feed.dropped`)."""
        self._aligned("watch")
        feed = EventFeed(maxsize)
        with self._lock:
            if self._closed:
                feed.close()
            else:
                self._feeds.add(feed)
        return feed

    def search(self, phrase: str, k: int = 5, *, threshold: float | None = None) -> list[Moment]:
        """Tell me when it happened: the `k` best moments of the indexed past (the last
        `index_hours` of stream) for `phrase`, best first. A moment spans neighbouring snippets
        that score at least min(threshold, its peak) - a margin (threshold: the watch default)."""
        self._aligned("search")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"search returns k >= 1 moments, got k={k!r}")
        threshold = self._threshold(threshold)
        query = self._embed([phrase])[0].numpy()
        with self._lock:
            contents = self._index.ordered()
        return search_spans(*contents, query, k, threshold)

    @property
    def can_align(self) -> bool:
        """Whether this session can watch and search (its model has an alignment head)."""
        return self._watch_set is not None

    @property
    def index_size(self) -> int:
        """Snippets the moment index holds (0 for a model that cannot align)."""
        with self._lock:
            return len(self._index) if self._index is not None else 0

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
            watches=[w.to_dict() for w in self._watch_set.watches] if self._watch_set is not None else [],
            index=self._index.state_dict() if self._index is not None else None,
        )

    def save(self, path: str | Path) -> Path:
        """Write the stream's state to `path` (msgpack); resume it with `engine.load_session(path)`."""
        path = file_path(path)  # refuse an empty path or a folder before waiting for the step in flight
        return write_atomic(path, self.to_bytes())

    def to_bytes(self) -> bytes:
        """What `save` writes, as bytes; resume them with `engine.restore_session(data)`."""
        with self._lock:
            while self._in_flight is not None:
                self._lock.wait()
            return encode_session(self._snapshot_locked())  # encode under the lock: the chunker may reuse buffers

    def close(self) -> None:
        """Stop stepping this session and leave the engine; a running stream ends and its readers are joined.

        The state stays: `ask` and `save` still work on a closed session.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._stop, self._attached = True, False
            producers = self._readers
            for feed in list(self._feeds):
                feed.close()
            self._lock.notify_all()
        self.host.detach(self)
        join_readers(producers)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def on_threads(updates: Iterator[Update]) -> AsyncIterator[Update]:
    """A blocking update iterator for asyncio: each wait runs on a worker thread, and the iterator
    is closed (its stream stopped) however the loop ends."""
    done = object()
    try:
        while True:
            update = await asyncio.to_thread(next, updates, done)
            if update is done:
                return
            yield update
    finally:
        await asyncio.to_thread(updates.close)
