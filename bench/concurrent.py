"""N live streams on one engine in one process, and a user asking questions meanwhile (`test_scale`).

Every stream is paced to the wall clock like a camera; they start spread over one snippet's
duration, as independent streams would. Their queues are unbounded, so an engine that falls
behind shows it as growing latency instead of hiding it in dropped snippets. Measured:

- snippet latency: from the moment the chunker cut a snippet to the moment the state holding
  it was ready (queueing + batched step), over every snippet of every stream;
- worst-stream RTF: the longest time any stream took to be processed, over its media time
  (1.0 keeps pace; more means it ended late);
- snippets/s stepped, the mean batch, and the first answer token of questions asked every
  `ask_every_s` to the streams in turn, answered from their state as of that moment.

The streams hold in real time when the p95 latency is under one snippet's duration.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from bench.measure import percentiles
from model.media import MediaItem
from streamer.engine import Engine

QUESTION = "what color is the circle?"
UNBOUNDED = 1_000_000  # snippets a live session may queue: never reached, so nothing is dropped


@dataclass
class _Stream:
    latencies_ms: list[float] = field(default_factory=list)
    started: float = 0.0
    finished: float = 0.0
    media_s: float = 0.0
    dropped: int = 0
    error: BaseException | None = None


def run_streams(engine: Engine, sources: list[Callable[[], Iterable[MediaItem]]], ask_every_s: float = 0.25) -> dict:
    """Stream every source (each a factory of a live source) at once; see the module docstring."""
    snippet_s = engine.media.snippet_seconds
    sessions = [engine.session(max_queued=UNBOUNDED) for _ in sources]
    streams = [_Stream() for _ in sources]
    first_tokens: list[float] = []
    running = threading.Event()
    running.set()

    def follow(i: int) -> None:
        time.sleep(i * snippet_s / len(sources))
        record = streams[i]
        record.started = time.perf_counter()
        try:
            for update in sessions[i].stream(sources[i]()):
                record.latencies_ms.append(update.latency_ms)
                record.media_s, record.dropped = update.t1, update.dropped_total
                record.finished = time.perf_counter()
        except Exception as error:  # reported below: a failed stream is never counted as real time
            record.error = error

    def ask() -> None:
        turn = 0
        while running.is_set():
            session = sessions[turn % len(sessions)]
            turn += 1
            if session.steps:
                first_tokens.append(session.ask(QUESTION).first_token_ms)
            time.sleep(ask_every_s)

    before = dict(engine.stats)
    threads = [threading.Thread(target=follow, args=(i,), name=f"stream-{i}") for i in range(len(sources))]
    asker = threading.Thread(target=ask, name="asker")
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    asker.start()
    for thread in threads:
        thread.join()
    running.clear()
    asker.join()
    wall = time.perf_counter() - started
    for session in sessions:
        session.close()
    errors = [repr(s.error) for s in streams if s.error is not None]
    if errors:
        raise RuntimeError(f"{len(errors)} of {len(streams)} streams failed: {errors[:3]}")
    steps = engine.stats["steps"] - before["steps"]
    snippets = engine.stats["snippets"] - before["snippets"]
    latency = percentiles(ms for s in streams for ms in s.latencies_ms)
    return {
        "streams": len(sources),
        "snippet_s": snippet_s,
        "media_s_each": min(s.media_s for s in streams),
        "wall_s": wall,
        "latency_ms": latency,
        "worst_stream_rtf": max((s.finished - s.started) / s.media_s for s in streams),
        "snippets_per_s": snippets / wall,
        "mean_batch": snippets / steps if steps else 0.0,
        "busy_fraction": (engine.stats["busy_s"] - before["busy_s"]) / wall,
        "dropped": sum(s.dropped for s in streams),
        "questions": len(first_tokens),
        "first_token_ms": percentiles(first_tokens),
        "real_time": latency["p95"] < snippet_s * 1e3,
    }
