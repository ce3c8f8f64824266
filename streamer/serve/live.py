"""One live session as the server sees it: the engine session, its media clock, its
questions, watches and searches, and the events it sends to whoever listens (a data
channel, SSE streams).

It outlives a peer: when the connection drops, the session waits `resume_ttl_s` for a
new offer carrying its id, and media then continues on the same clock and state.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from streamer.serve.protocol import Ask, ProtocolError, SearchRequest, UnwatchRequest, WatchRequest, error
from streamer.serve.tracks import MediaBuffer, StreamClock

log = logging.getLogger(__name__)

_CLOCK_GAP_S = 0.05  # a resumed stream starts this far after the last media of the previous one
_SSE_QUEUE = 256  # events held for one slow SSE listener before its oldest status events are skipped


class RateLimited(Exception):
    """Too many questions in too short a time for this session."""


def _unsupported(session) -> None:
    if not session.can_align:
        raise ProtocolError("unsupported", "this server's checkpoint has no alignment head, so it cannot watch or "
                            "search; serve one trained with it (--checkpoint)")


class TokenBucket:
    """`rate` questions per second on average, `burst` at once."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, float(burst)
        self._tokens, self._at = float(burst), time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


@dataclass
class StreamStats:
    """What the last stepped snippet said, for status pushes."""

    snippets: int = 0
    index: int = -1  # of the last stepped snippet, counted from the first media of the session
    t: float = 0.0
    lag_s: float = 0.0
    behind_s: float = 0.0  # stream time not yet in the state: now on the stream clock - end of the last snippet
    dropped: int = 0
    step_ms: float = 0.0
    latency_ms: float = 0.0
    answer_ms: float | None = None
    first_token_ms: float | None = None


class LiveSession:
    """A `Session` plus what the server needs around it; methods run on the event loop."""

    def __init__(self, session, loop: asyncio.AbstractEventLoop, answers: Executor, peers: Callable[[], int], *,
                 questions_per_s: float, question_burst: int, max_watches: int = 64) -> None:
        self.id = secrets.token_urlsafe(12)
        self.session = session
        self.loop = loop
        self.answers = answers
        self.peers = peers
        self.last_status = 0.0  # time.monotonic() of the last status push
        self.bucket = TokenBucket(questions_per_s, question_burst)  # questions and searches
        self.max_watches = max_watches
        self.stats = StreamStats()
        self.clock: StreamClock | None = None
        self.buffer: MediaBuffer | None = None
        self.detached_at: float | None = time.monotonic()
        self.media_end = 0.0  # newest media stamp of earlier streams, so a resume continues after it
        self._listeners: list[Callable[[dict[str, Any]], None]] = []
        self._sse: set[asyncio.Queue] = set()
        self._thread: threading.Thread | None = None
        self._stream_done: asyncio.Event = asyncio.Event()
        self._stream_done.set()
        self.closed = False

    # ------------------------------------------------------------------ events out
    def listen(self, send: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        """Register a sink for events (a data channel); returns the function that removes it."""
        self._listeners.append(send)
        return lambda: self._listeners.remove(send) if send in self._listeners else None

    def subscribe(self) -> asyncio.Queue:
        """A bounded queue of events for one SSE listener; `unsubscribe` it when done."""
        queue: asyncio.Queue = asyncio.Queue(_SSE_QUEUE)
        self._sse.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        self._sse.discard(queue)

    def publish(self, event: dict[str, Any]) -> None:
        for send in list(self._listeners):
            send(event)
        for queue in list(self._sse):
            if queue.full():
                if event["type"] == "status":
                    continue  # a slow listener misses status updates, never answers
                self._evict_status(queue)
            if not queue.full():
                queue.put_nowait(event)

    @staticmethod
    def _evict_status(queue: asyncio.Queue) -> None:
        kept = [e for e in (queue.get_nowait() for _ in range(queue.qsize())) if e["type"] != "status"]
        for event in kept[-(_SSE_QUEUE - 1):]:
            queue.put_nowait(event)

    def push_status(self) -> None:
        self.last_status = time.monotonic()
        self.publish(self.status())

    def status(self) -> dict[str, Any]:
        s = self.stats
        buffer = self.buffer
        return {
            "type": "status", "session_id": self.id, "snippets": s.snippets, "index": s.index, "t": round(s.t, 3),
            "lag_s": round(s.lag_s, 3), "behind_s": round(s.behind_s, 3), "dropped": s.dropped,
            "media_dropped": buffer.stats.dropped if buffer else 0, "step_ms": round(s.step_ms, 2),
            "latency_ms": round(s.latency_ms, 2), "answer_ms": s.answer_ms, "first_token_ms": s.first_token_ms,
            "peers": self.peers(),
        }

    # -------------------------------------------------------------------- media in
    def start_stream(self, max_items: int) -> tuple[MediaBuffer, StreamClock]:
        """A fresh buffer and clock for a newly connected peer, stepped on a thread of its own."""
        if not self._stream_done.is_set():
            raise RuntimeError("this session is still streaming from another peer; stop that one first")
        base = max(self.media_end, self.session.t) + (_CLOCK_GAP_S if self.media_end else 0.0)
        self.clock, self.buffer = StreamClock(base), MediaBuffer(max_items)
        self.detached_at = None
        self._stream_done.clear()
        self._thread = threading.Thread(target=self._run_stream, args=(self.buffer, self.clock),
                                         name=f"serve-{self.id[:6]}", daemon=True)
        self._thread.start()
        return self.buffer, self.clock

    def _run_stream(self, buffer: MediaBuffer, clock: StreamClock) -> None:
        """Session.stream on its own thread (blocking by design); updates hop to the loop."""
        try:
            for update in self.session.stream(buffer, flush=False):
                self.loop.call_soon_threadsafe(self._on_update, update, clock.now())
        except Exception:  # an engine failure ends this stream; the peer sees it in status and logs
            log.exception("session %s: stream failed", self.id)
            self.loop.call_soon_threadsafe(self.publish, error("stream_failed", "the engine failed on this stream; reconnect"))
        finally:
            if buffer.newest_t is not None:
                self.media_end = max(self.media_end, buffer.newest_t)
            if not self.loop.is_closed():
                self.loop.call_soon_threadsafe(self._stream_done.set)

    def _on_update(self, update, now: float) -> None:
        if update.restored is not None:  # cluster mode: the session's worker failed, it runs elsewhere now
            r = update.restored
            self.publish({"type": "restored", "from": r.from_worker, "to": r.to_worker, "at": round(r.at_t, 3),
                          "lost_s": round(r.lost_s, 3), "replayed": r.replayed, "took_s": round(r.took_s, 3)})
        for event in update.events:
            self.publish({"type": "event", **event.to_dict()})
        s = self.stats
        s.snippets, s.index, s.t, s.lag_s = s.snippets + 1, update.index, update.t1, update.lag_s
        s.dropped, s.behind_s = update.dropped_total, max(0.0, now - update.t1)
        s.step_ms, s.latency_ms = update.step_ms, update.latency_ms
        self.push_status()

    async def stop_stream(self) -> None:
        """End the current peer's media (the partial snippet stays in the chunker for a resume)."""
        if self.buffer is not None:
            self.buffer.close()
        await self._stream_done.wait()
        self.detached_at = time.monotonic()

    # -------------------------------------------------------------------- questions
    async def ask(self, question: Ask) -> dict[str, Any]:
        """Answer token by token (each piece published as it comes); the final answer is
        published and returned. Raises RateLimited, or ValueError for a refused question."""
        if not self.bucket.take():
            raise RateLimited(f"at most {self.bucket.rate:g} questions per second (burst {self.bucket.burst:g})")
        pieces = self.session.ask_stream(question.text)  # the state as of now; ValueError if refused
        started = time.perf_counter()
        t = self.session.t
        first = await self.loop.run_in_executor(self.answers, self._decode, pieces, question.id, started)
        total_ms = (time.perf_counter() - started) * 1e3
        text = "".join(first[1]).strip()
        self.stats.answer_ms, self.stats.first_token_ms = round(total_ms, 2), round(first[0], 2)
        answer = {"type": "answer", "id": question.id, "question": question.text, "text": text, "t": round(t, 3),
                  "first_token_ms": round(first[0], 2), "latency_ms": round(total_ms, 2)}
        self.publish(answer)
        return answer

    def _decode(self, pieces, request_id, started: float) -> tuple[float, list[str]]:
        """Run the decoder on a worker thread, publishing each piece on the loop as it comes."""
        out, first_ms = [], None
        for piece in pieces:
            first_ms = first_ms if first_ms is not None else (time.perf_counter() - started) * 1e3
            out.append(piece)
            self.loop.call_soon_threadsafe(self.publish, {"type": "token", "id": request_id, "text": piece})
        return (first_ms if first_ms is not None else (time.perf_counter() - started) * 1e3), out

    # -------------------------------------------------------------- watches and search
    async def watch(self, request: WatchRequest) -> dict[str, Any]:
        """Add a standing query; its events go out as `event` messages. ProtocolError when the
        model cannot align or the session has its fill of watches; ValueError for a phrase the
        model refuses."""
        _unsupported(self.session)
        if len(self.session.watches) >= self.max_watches:
            raise ProtocolError("too_many_watches", f"a session holds at most {self.max_watches} watches; unwatch "
                                "one first", request.id)
        watch = await self.loop.run_in_executor(  # embedding the phrase runs the text encoder: off the loop
            self.answers, lambda: self.session.watch(request.text, threshold=request.threshold))
        reply = {"type": "watching", "id": request.id, "watch": watch.id, "text": watch.phrase,
                 "threshold": round(watch.threshold, 4)}
        self.publish(reply)
        return reply

    def unwatch(self, request: UnwatchRequest) -> dict[str, Any]:
        _unsupported(self.session)
        try:
            self.session.unwatch(request.watch)
        except ValueError:
            raise ProtocolError("unknown_watch", f"this session has no watch {request.watch}", request.id) from None
        reply = {"type": "unwatched", "id": request.id, "watch": request.watch}
        self.publish(reply)
        return reply

    async def search(self, request: SearchRequest) -> dict[str, Any]:
        """The best moments of the session's indexed past; rate-limited with the questions."""
        _unsupported(self.session)
        if not self.bucket.take():
            raise RateLimited(f"at most {self.bucket.rate:g} questions and searches per second "
                              f"(burst {self.bucket.burst:g})")
        moments = await self.loop.run_in_executor(self.answers, self.session.search, request.text, request.k)
        reply = {"type": "moments", "id": request.id, "text": request.text, "moments": [m.to_dict() for m in moments]}
        self.publish(reply)
        return reply

    async def close(self) -> None:
        self.closed = True
        await self.stop_stream()
        for queue in list(self._sse):
            if queue.full():
                queue.get_nowait()
            queue.put_nowait({"type": "closed"})
        self._sse.clear()
        self._listeners.clear()
        await asyncio.to_thread(self.session.close)
