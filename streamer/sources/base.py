"""What every source is: an iterable of stamped media items that can be closed (`Source`),
the error it raises when it cannot be opened or read, and wall-clock pacing for sources
that replay recorded media as if it were live."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator

from model.media import MediaItem


class SourceError(ValueError):
    """A source could not be opened or read; the message names it and what to try."""


class MissingTrackWarning(UserWarning):
    """A stream lacks video or audio: the chunker fills it in (black frames, silence), so
    answers about that modality mean nothing. Its own category, so a program can show it,
    turn it into an error or silence it on purpose."""


TRACKS = frozenset({"video", "audio"})


class Source(ABC):
    """Common shape of all sources: iterate for items, close when done.

    `tracks` says which of "video" and "audio" the source carries (None: it cannot tell), so
    a session can warn at the start of a stream that lacks one."""

    is_live: bool = False
    tracks: frozenset[str] | None = None

    @abstractmethod
    def __iter__(self) -> Iterator[MediaItem]:
        """Items in the source's clock order."""

    def close(self) -> None:
        """Release the device or file; sources holding nothing open need not override this."""

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def paced(items: Iterable[MediaItem]) -> Iterator[MediaItem]:
    """Release items at the wall-clock pace of their stamps, counted from the first one."""
    wall0 = clock0 = None
    for item in items:
        if wall0 is None:
            wall0, clock0 = time.monotonic(), item.t
        delay = wall0 + (item.t - clock0) - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        yield item
