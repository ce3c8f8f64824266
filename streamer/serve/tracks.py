"""Remote WebRTC tracks → stamped media items in a bounded buffer → the session's live source.

aiortc queues decoded frames without bound when nobody reads them, so each remote track
gets its own reader task that drains it continuously, converts each frame at once to
what the chunker needs (RGB at the model's size, packed PCM) and puts it in a bounded
buffer; when the buffer is full the oldest items go and are counted. The session reads
the buffer on its own thread as one live source, so a slow engine drops whole snippets
downstream instead of letting frames pile up here.

Timestamps: each track's pts run on their own clock from an arbitrary start and RTCP
sender reports are not exposed per frame, so tracks are aligned by arrival time: a
track's first frame is stamped with its arrival time on the stream clock and later
frames follow their pts, except when pts and arrival disagree by more than
`DISCONTINUITY_S` (a pts jump of ~2^32 at low frame rates, a wrap, a sender restart);
then the track re-anchors to arrival time and the jump is counted, not treated as a gap
of hours.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from streamer.media import AudioBlock, MediaItem, VideoFrame

log = logging.getLogger(__name__)

DISCONTINUITY_S = 0.5  # pts vs arrival disagreement beyond this is a clock jump, not jitter
_WAIT_S = 0.2  # how often the consumer re-checks for close while the buffer is empty


class StreamClock:
    """Stream seconds on the session's clock: continues after `base` from when `start()` runs,
    so a resumed session's new media follows its old media instead of overlapping it."""

    def __init__(self, base: float = 0.0) -> None:
        self.base = base
        self._origin = time.perf_counter()

    def now(self) -> float:
        return self.base + (time.perf_counter() - self._origin)


class Stamper:
    """One track's pts → stream seconds, anchored on arrival (see the module docstring)."""

    def __init__(self, clock: StreamClock) -> None:
        self.clock = clock
        self.discontinuities = 0
        self._anchor: tuple[float, float] | None = None  # (pts seconds, stream seconds)
        self._last: float | None = None

    def stamp(self, pts_s: float | None) -> float:
        arrival = self.clock.now()
        if pts_s is None:
            t = arrival
        elif self._anchor is None:
            self._anchor = (pts_s, arrival)
            t = arrival
        else:
            t = self._anchor[1] + (pts_s - self._anchor[0])
            if abs(t - arrival) > DISCONTINUITY_S:
                self.discontinuities += 1
                log.info("pts jumped by %.1f s against arrival; re-anchoring the track", t - arrival)
                self._anchor = (pts_s, arrival)
                t = arrival
        if self._last is not None and t < self._last:
            t = self._last  # never backwards within a track (the chunker would count it late)
        self._last = t
        return t


@dataclass
class BufferStats:
    items: int = 0
    dropped: int = 0  # items pushed out of a full buffer (the consumer fell behind)


class MediaBuffer:
    """A bounded, thread-safe hand-over from the track readers (event loop) to the session's
    producer thread; iterating it is a live source that ends when `close()` is called."""

    is_live = True

    def __init__(self, max_items: int) -> None:
        self._items: deque[MediaItem] = deque()
        self._max = max_items
        self._cond = threading.Condition()
        self._closed = False
        self.stats = BufferStats()
        self.newest_t: float | None = None

    def put(self, item: MediaItem) -> None:
        with self._cond:
            if self._closed:
                return
            self._items.append(item)
            self.stats.items += 1
            self.newest_t = item.t if self.newest_t is None else max(self.newest_t, item.t)
            while len(self._items) > self._max:
                self._items.popleft()
                self.stats.dropped += 1
            self._cond.notify()

    def __iter__(self) -> Iterator[MediaItem]:
        while True:
            with self._cond:
                while not self._items and not self._closed:
                    self._cond.wait(_WAIT_S)
                if not self._items:
                    return
                item = self._items.popleft()
            yield item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._items.clear()
            self._cond.notify_all()


class FrameConverter:
    """Decoded av frames → the media types, video scaled to the model's size right away
    (one reformatter per track: setting one up per frame costs ~25x more)."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self._reformatter = VideoReformatter()

    def video(self, frame: av.VideoFrame, t: float) -> VideoFrame:
        small = self._reformatter.reformat(frame, width=self.width, height=self.height, format="rgb24")
        return VideoFrame(t=t, rgb=small.to_ndarray())

    @staticmethod
    def audio(frame: av.AudioFrame, t: float) -> AudioBlock:
        channels = len(frame.layout.channels)
        data = frame.to_ndarray()
        pcm = data.T if frame.format.is_planar else data.reshape(-1, channels)
        if pcm.dtype != np.int16:
            pcm = pcm.astype(np.float32)
        return AudioBlock(t=t, pcm=np.ascontiguousarray(pcm), rate=frame.sample_rate, channels=channels)


def pts_seconds(frame: av.VideoFrame | av.AudioFrame) -> float | None:
    if frame.pts is None or frame.time_base is None:
        return None
    return float(frame.pts * frame.time_base)


async def read_track(track, kind: str, stamper: Stamper, buffer: MediaBuffer, converter: FrameConverter,
                     on_frame: Callable[[], None]) -> None:
    """Drain `track` until it ends, stamping and converting every frame into `buffer`;
    `on_frame()` is called per frame (liveness for the heartbeat)."""
    from aiortc.mediastreams import MediaStreamError

    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        on_frame()
        t = stamper.stamp(pts_seconds(frame))
        try:
            item = converter.video(frame, t) if kind == "video" else converter.audio(frame, t)
        except (ValueError, av.FFmpegError) as exc:  # a frame we cannot convert is skipped, not fatal
            log.warning("skipping an unconvertible %s frame: %s", kind, exc)
            continue
        buffer.put(item)
