"""The producer half of a session: source threads cut media into snippets and queue them.

`Session` (stepped in this process) and the cluster front's `ClusterSession` (stepped on a
worker) read their sources the same way, so they share this base: one thread per source
pushes items through the session's chunker into its queue, under the session's own lock, so
the queue changes together with the rest of the session's state. Offline sources wait for
room (backpressure); live ones never wait: the oldest queued snippet is dropped and counted.
Each `stream()` call is a generation: a reader left over from an earlier one stops without
touching the queue.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from model.media import MediaItem, MediaSpec, Snippet
from streamer.chunker import Chunker
from streamer.sources.reading import Reader, close_sources, on_wall_clock
from streamer.state_io import StreamClock

JOIN_TIMEOUT_S = 5.0


@dataclass
class Queued:
    snippet: Snippet
    ready_at: float  # perf_counter() when the chunker emitted it


class SnippetProducer:
    """Base of a session: the chunker, the queue of snippets to step and the source threads.

    A subclass sets `clock` (dropped snippets are counted there), holds `_lock` while it reads
    the queue, and may override `_wake` to tell its consumer a snippet is ready."""

    clock: StreamClock

    def _init_producer(self, media: MediaSpec, max_queued: int) -> None:
        if max_queued < 1:
            raise ValueError(f"max_queued must be at least 1 snippet, got {max_queued}")
        self.max_queued = max_queued
        self._lock = threading.Condition()
        self._chunker = Chunker(media)
        self._queue: deque[Queued] = deque()
        self._stop = False  # the running stream is ending: readers stop at their next item
        self._error: BaseException | None = None  # ends the running stream; `stream()` raises it
        self._generation = 0
        self._producers_left = 0  # sources of the running stream still being read
        self._stopped_early = False
        self._newest_t1 = 0.0
        self._dropped_since_update = 0
        self._readers: list[threading.Thread] = []  # the running stream's source threads

    @property
    def t(self) -> float:
        """Stream seconds covered by the state."""
        with self._lock:
            return self.clock.t

    @property
    def steps(self) -> int:
        """Snippets stepped into the state."""
        with self._lock:
            return self.clock.steps

    @property
    def dropped(self) -> int:
        """Snippets a live source dropped because stepping fell behind."""
        with self._lock:
            return self.clock.dropped

    def _wake(self) -> None:
        """A snippet may be ready to step."""

    def _start_readers(self, readers: list[Reader], live: bool, flush: bool, name: str) -> list[threading.Thread]:
        """Begin a stream's generation (the caller holds the lock) and make its reader threads,
        not yet started. The chunker continues the session's timeline from any source clock."""
        self._generation += 1
        self._stop, self._error = False, None
        self._producers_left, self._stopped_early = len(readers), False
        self._chunker.start_source()
        origin = time.perf_counter()
        self._readers = [
            threading.Thread(target=self._produce, name=name, daemon=True,
                             args=(reader.owned, on_wall_clock(reader.items, origin) if reader.wall_clock
                                   else reader.items, live, flush, self._generation))
            for reader in readers
        ]
        return self._readers

    def _produce(self, owned: list[Iterable[MediaItem]], items: Iterable[MediaItem | Snippet], live: bool,
                 flush: bool, generation: int) -> None:
        """Read items into the chunker, then close the `owned` sources. A source may also yield
        snippets already cut (an engine worker's, from a cluster front): they are queued as they are."""
        finished = True
        try:
            for item in items:
                with self._lock:
                    while not live and len(self._queue) >= self.max_queued and self._current(generation):
                        self._lock.wait()
                    if self._generation != generation:
                        finished = False
                        return  # a newer stream owns the session now
                    # An item already taken from the source is kept even when the stream is
                    # being stopped, so a caller who continues the same iterator loses nothing.
                    if isinstance(item, Snippet):
                        self._enqueue([item], live)
                    else:
                        self._chunker.push(item)
                        self._enqueue(self._chunker.pop_ready(), live)
                    if self._stop:
                        finished = False
                        break
                self._wake()
        except Exception as exc:  # a source or chunker error ends the stream; stream() re-raises it
            finished = False
            with self._lock:
                if self._current(generation):
                    self._error = exc
                    self._lock.notify_all()
        finally:
            close_sources(owned)
            with self._lock:
                if self._generation == generation:
                    self._producers_left -= 1
                    self._stopped_early |= not finished
                    if self._producers_left == 0 and flush and not (self._stopped_early or self._stop):
                        self._enqueue(self._chunker.flush(), live)  # the last source ended: cut the tail
                self._lock.notify_all()
            self._wake()

    def _current(self, generation: int) -> bool:
        return self._generation == generation and not self._stop

    def _enqueue(self, snippets: list[Snippet], live: bool) -> None:
        now = time.perf_counter()
        for snippet in snippets:
            self._queue.append(Queued(snippet, now))
            self._newest_t1 = max(self._newest_t1, snippet.t1)
        while live and len(self._queue) > self.max_queued:
            self._queue.popleft()
            self.clock.dropped += 1
            self._dropped_since_update += 1
        self._lock.notify_all()


def join_readers(threads: list[threading.Thread]) -> None:
    """Wait for source readers to stop; each stops after the item it is reading (bounded, for a stuck device)."""
    for thread in threads:
        if thread is not threading.current_thread():
            thread.join(JOIN_TIMEOUT_S)
