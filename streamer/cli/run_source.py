"""The SOURCE argument of `streamer run` as the source it streams.

Two decisions live here rather than in the sources. A lavfi graph has no clock of its
own: ffmpeg renders it as fast as it is read, so reading it as a live source dropped most
snippets. It is read like a file (nothing dropped, as fast as the model goes) unless
`--realtime` paces it, or the graph paces itself with ffmpeg's `realtime` filter. And
`--duration` counts stream time, not wall time: the source ends after that many seconds
of its own clock, rounded up to whole snippets, so a run stops where asked whether the
model is faster or slower than real time.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from pathlib import Path

from model.media import MediaItem
from streamer.sources.base import Source, paced

class RunSource(Source):
    """A source cut after `seconds` of its own clock, paced to the wall clock when `pace`,
    live or not as the run decides. `inner` is the source itself, closed with this one."""

    def __init__(self, inner: Iterable[MediaItem], *, seconds: float | None = None, pace: bool = False,
                 live: bool | None = None) -> None:
        self.inner, self.seconds, self.pace = inner, seconds, pace
        self.is_live = getattr(inner, "is_live", False) if live is None else live

    def __iter__(self) -> Iterator[MediaItem]:
        items = self._until_end()
        return paced(items) if self.pace else items

    def _until_end(self) -> Iterator[MediaItem]:
        end = None
        for item in self.inner:
            if self.seconds is not None:
                end = item.t + self.seconds if end is None else end
                if item.t >= end:
                    return
            yield item

    @property
    def corrupt_packets(self) -> int | None:
        """Corrupt packets the decoder skipped, where the source counts them (None where not)."""
        return getattr(self.inner, "corrupt_packets", None)

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if callable(close):
            close()


def whole_snippets(seconds: float | None, snippet_seconds: float) -> float | None:
    """`seconds` rounded up to whole snippets, so the last snippet of a cut stream is complete."""
    if seconds is None:
        return None
    return math.ceil(seconds / snippet_seconds - 1e-9) * snippet_seconds


def open_source(text: str, *, realtime: bool = False, seconds: float | None = None) -> RunSource:
    """Turn a SOURCE argument (see `streamer run --help`) into the source `run` streams;
    ValueError (a SourceError among them) when it cannot be opened."""
    from streamer import sources

    kind, _, rest = text.partition(":")
    if kind == "camera":
        return RunSource(sources.Camera(rest) if rest else sources.Camera(), seconds=seconds)
    if kind == "lavfi":
        if not rest:
            raise ValueError("lavfi needs a filter graph, e.g. lavfi:testsrc=size=64x64:rate=25")
        self_paced = "realtime" in rest  # ffmpeg's realtime filter: the graph is a live source already
        return RunSource(sources.Camera(rest, format="lavfi"), seconds=seconds, pace=realtime and not self_paced,
                         live=realtime or self_paced)
    if text == "mic":
        microphone = sources.Microphone()
        microphone.start()  # no microphone is an error now, not once the stream has started
        return RunSource(microphone, seconds=seconds)
    if kind == "world":
        try:
            seed = int(rest)
        except ValueError:
            raise ValueError(f"world sources take an integer seed, e.g. world:7 (got {text!r})") from None
        from training.world.clip import World, WorldConfig

        clip = World(WorldConfig.preset("test")).clip(seed)
        print(f"world clip {seed} of the test split: {clip.duration:.2f} s; its questions and answers:")
        for q in clip.questions:
            print(f"  at {q.t_ask:5.2f}s  {q.text!r} -> {q.answer!r}")
        return RunSource(clip.source(realtime=realtime), seconds=seconds)
    if not Path(text).exists():
        raise ValueError(f"{text!r} is not a file, nor camera[:DEVICE], mic, lavfi:GRAPH or world:SEED")
    return RunSource(sources.File(text, realtime=realtime), seconds=seconds)
