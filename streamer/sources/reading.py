"""How a stream reads its sources: checked, grouped into readers, live ones put on the wall clock.

Shared by the in-process `Session` and the cluster front (`streamer.cluster`), which cut
media into snippets the same way before stepping them in different places.
"""

from __future__ import annotations

import heapq
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from os import PathLike

from model.media import MediaItem
from streamer.sources.base import TRACKS, MissingTrackWarning

# What the chunker puts in place of a missing track, for the warning that says so.
_FILLED_WITH = {"video": "black frames, so answers about what is seen",
                "audio": "silence, so answers about what is heard"}


@dataclass(frozen=True)
class Reader:
    """One thread's work: read `items`, then close the `owned` sources. `wall_clock`: restamp
    the items onto the wall clock (live sources, each on its own clock, read side by side)."""

    owned: list[Iterable[MediaItem]]
    items: Iterable[MediaItem]
    wall_clock: bool


def check_sources(sources: tuple[Iterable[MediaItem], ...]) -> None:
    """Refuse what is not a source, saying what to pass instead; warn about a missing track."""
    if not sources:
        raise ValueError("stream() needs a source, e.g. session.stream(sources.File('clip.mp4'))")
    for source in sources:
        if isinstance(source, (str, bytes, PathLike)):
            raise TypeError(f"stream() takes a source, not a path: use File({str(source)!r}) from streamer.sources")
        if not isinstance(source, Iterable):
            raise TypeError(f"stream() takes a source (File, Camera, Microphone, Arrays or any iterable of "
                            f"VideoFrame and AudioBlock), got {type(source).__name__}")
    _warn_missing_tracks(sources)


def plan_readers(sources: tuple[Iterable[MediaItem], ...]) -> tuple[bool, list[Reader]]:
    """Whether the stream is live, and its readers: one per live source (read at its own pace),
    and one that merges the offline sources by time so none runs ahead of the others (the
    chunker would take that for a lagging modality)."""
    live_sources = [source for source in sources if getattr(source, "is_live", False)]
    offline = [source for source in sources if not getattr(source, "is_live", False)]
    align = len(live_sources) > 1
    readers = [Reader([source], source, align) for source in live_sources]
    if offline:
        merged = offline[0] if len(offline) == 1 else heapq.merge(*offline, key=lambda item: item.t)
        readers.append(Reader(offline, merged, False))
    return bool(live_sources), readers


def on_wall_clock(items: Iterable[MediaItem], origin: float) -> Iterator[MediaItem]:
    """`items` restamped so the first lands at its wall-clock time since `origin` (perf_counter)."""
    offset = None
    for item in items:
        if offset is None:
            offset = (time.perf_counter() - origin) - item.t
        yield replace(item, t=item.t + offset)


def close_sources(sources: Iterable[object]) -> None:
    for source in sources:
        close = getattr(source, "close", None)
        if callable(close):
            close()


def corrupt_packets(sources: Iterable[object]) -> int:
    """Undecodable packets the sources skipped (`File.corrupt_packets`)."""
    return sum(getattr(source, "corrupt_packets", 0) for source in sources)


def _warn_missing_tracks(sources: tuple[Iterable[MediaItem], ...]) -> None:
    """Warn (MissingTrackWarning) when the sources together lack video or audio; sources
    that cannot tell what they carry (no `tracks`) leave the question open, and say nothing."""
    declared = [getattr(source, "tracks", None) for source in sources]
    if any(tracks is None for tracks in declared):
        return
    for kind in sorted(TRACKS - frozenset().union(*declared)):
        what = f"the source has no {kind} track" if len(sources) == 1 else f"none of the sources has a {kind} track"
        warnings.warn(f"{what}: every snippet's {kind} is {_FILLED_WITH[kind]} mean nothing",
                      MissingTrackWarning, stacklevel=4)
