"""A session's events as a feed its reader drains at its own pace, from a thread or asyncio.

Events are put by the engine's scheduler thread (and by the thread that runs a watch's
check), which must never wait for a reader: the feed is a bounded buffer that drops its
oldest event when full and counts what it dropped. A reader blocks in `get` (any thread)
or awaits `async for` (the event loop is woken through `call_soon_threadsafe`, so no
thread sits waiting on its behalf).
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterator

from streamer.watch import Event

DEFAULT_FEED_SIZE = 1024  # events held for a reader that falls behind


class EventFeed:
    """Events of one session from the moment `session.events()` opened the feed until it or
    the session closes. `dropped` counts events lost to a reader more than `maxsize` behind."""

    def __init__(self, maxsize: int = DEFAULT_FEED_SIZE) -> None:
        if maxsize < 1:
            raise ValueError(f"an event feed holds at least one event, got maxsize {maxsize}")
        self.maxsize = maxsize
        self.dropped = 0
        self._items: deque[Event] = deque()
        self._cond = threading.Condition()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = []
        self._closed = False

    @property
    def closed(self) -> bool:
        with self._cond:
            return self._closed

    def put(self, event: Event) -> None:
        """Add an event (never blocks; a closed feed ignores it)."""
        with self._cond:
            if self._closed:
                return
            if len(self._items) >= self.maxsize:
                self._items.popleft()
                self.dropped += 1
            self._items.append(event)
            self._wake_locked()

    def close(self) -> None:
        """End the feed: a reader gets what is buffered, then the end."""
        with self._cond:
            self._closed = True
            self._wake_locked()

    def _wake_locked(self) -> None:
        self._cond.notify_all()
        waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            try:
                loop.call_soon_threadsafe(_resolve, future)
            except RuntimeError:  # that event loop is closed: nobody is waiting there any more
                pass

    def get(self, timeout: float | None = None) -> Event | None:
        """The next event, waiting up to `timeout` seconds (None: until one comes); None when the
        time ran out or the feed ended with nothing left."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._items or self._closed, timeout):
                return None
            return self._items.popleft() if self._items else None

    def drain(self) -> list[Event]:
        """Every buffered event, without waiting."""
        with self._cond:
            items, self._items = list(self._items), deque()
            return items

    def __iter__(self) -> Iterator[Event]:
        """Events as they come, blocking the calling thread, until the feed ends."""
        while (event := self.get()) is not None:
            yield event

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        while True:
            with self._cond:
                if self._items:
                    return self._items.popleft()
                if self._closed:
                    raise StopAsyncIteration
                loop = asyncio.get_running_loop()
                future = loop.create_future()
                self._waiters.append((loop, future))
            await future

    def __enter__(self) -> EventFeed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)
