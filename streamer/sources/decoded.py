"""Sources decoded by PyAV (ffmpeg): media files, capture devices and lavfi test graphs.

A packet that does not decode (a few corrupt bytes in a file, a glitch on a device) is
skipped and counted in `corrupt_packets`, as `ffmpeg -i` skips it with a warning: one bad
packet must not end a stream that decodes fine around it. Only a source that yields no
media at all, or whose container cannot be read on, is an error.
"""

from __future__ import annotations

import collections
import glob
import sys
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from model.media import AudioBlock, MediaItem, VideoFrame
from streamer.sources.base import Source, SourceError, paced

REORDER_WINDOW = 1.0  # seconds of one stream held back while waiting for the other, when merging
# Frames up to this many pixels are decoded and converted in the reading thread: handing a small
# frame to ffmpeg's helper threads costs more CPU than the work itself, and on a busy machine (many
# streams on a few cores) every frame then waits for a helper to be scheduled. Larger ones use them.
THREADED_PIXELS = 640 * 480


def _audio_block(frame: av.AudioFrame, t: float) -> AudioBlock:
    """A decoded PyAV audio frame → packed [samples, channels] float32 (or int16) block."""
    channels = len(frame.layout.channels)
    data = frame.to_ndarray()
    data = data.T if frame.format.is_planar else data.reshape(-1, channels)
    if data.dtype == np.int16:
        pcm = data
    elif data.dtype == np.int32:
        pcm = (data / 2147483648.0).astype(np.float32)
    elif data.dtype == np.uint8:
        pcm = ((data.astype(np.float32) - 128.0) / 128.0)
    else:
        pcm = data.astype(np.float32)
    return AudioBlock(t=t, pcm=np.ascontiguousarray(pcm), rate=frame.sample_rate, channels=channels)


class _Decoded:
    """Decode the first video and first audio stream of an open container, merged in time order."""

    def __init__(self, container: av.container.InputContainer, name: str) -> None:
        self.container, self.name = container, name
        self.video = container.streams.video[0] if container.streams.video else None
        self.audio = container.streams.audio[0] if container.streams.audio else None
        if self.video is None and self.audio is None:
            raise SourceError(f"{name}: has neither a video nor an audio stream")
        self.tracks = frozenset(kind for kind, stream in (("video", self.video), ("audio", self.audio))
                                if stream is not None)
        self._helper_threads = 1  # swscale threads: 1 = none, 0 = as many as ffmpeg likes
        if self.video is not None:
            width, height = self.video.codec_context.width, self.video.codec_context.height
            small = 0 < width * height <= THREADED_PIXELS
            self.video.thread_type = "NONE" if small else "AUTO"
            self._helper_threads = 1 if small else 0
        self._next_t = {"video": None, "audio": None}  # for frames that carry no timestamp
        self._frame_seconds: float | None = None  # a video frame's duration, for frames without a stamp
        self.corrupt_packets = 0
        self._to_rgb = VideoReformatter()  # one converter kept for the stream: ~25x faster than per-frame setup

    def _stamp(self, frame: av.VideoFrame | av.AudioFrame, kind: str) -> float:
        t = frame.time
        if t is None:  # no PTS: continue from the previous frame's end
            t = self._next_t[kind] or 0.0
        if kind == "audio":
            self._next_t[kind] = t + frame.samples / frame.sample_rate
        else:
            if self._frame_seconds is None:
                self._frame_seconds = 1.0 / float(self.video.average_rate or self.video.guessed_rate or 25)
            self._next_t[kind] = t + self._frame_seconds
        return float(t)

    def _frames(self) -> Iterator[MediaItem]:
        streams = [s for s in (self.video, self.audio) if s is not None]
        decoded, last_error = 0, None
        try:
            for packet in self.container.demux(*streams):
                try:
                    frames = packet.decode()
                except av.FFmpegError as error:
                    self.corrupt_packets += 1
                    last_error = error
                    continue
                for frame in frames:
                    decoded += 1
                    if isinstance(frame, av.VideoFrame):
                        rgb = self._to_rgb.reformat(frame, format="rgb24", threads=self._helper_threads).to_ndarray()
                        yield VideoFrame(t=self._stamp(frame, "video"), rgb=rgb)
                    else:
                        yield _audio_block(frame, self._stamp(frame, "audio"))
        except av.FFmpegError as error:  # the container itself cannot be read further
            raise SourceError(
                f"{self.name}: could not read the container ({error}); is the file complete and not corrupted?"
            ) from None
        if decoded == 0 and last_error is not None:
            raise SourceError(
                f"{self.name}: none of its {self.corrupt_packets} packets could be decoded ({last_error}); "
                "is it a complete, uncorrupted media file?"
            )

    def __iter__(self) -> Iterator[MediaItem]:
        """Items in stamp order: hold each stream back until the other has caught up (bounded)."""
        if self.video is None or self.audio is None:
            yield from self._frames()
            return
        pending: dict[type, collections.deque] = {VideoFrame: collections.deque(), AudioBlock: collections.deque()}
        for item in self._frames():
            pending[type(item)].append(item)
            videos, audios = pending[VideoFrame], pending[AudioBlock]
            while videos and audios:
                yield (videos if videos[0].t <= audios[0].t else audios).popleft()
            for waiting in (videos, audios):
                while waiting and waiting[-1].t - waiting[0].t > REORDER_WINDOW:
                    yield waiting.popleft()
        yield from sorted([*pending[VideoFrame], *pending[AudioBlock]], key=lambda item: item.t)


def _open(target: str, name: str, hint: str, **kwargs) -> av.container.InputContainer:
    try:  # tags that are not UTF-8 (a damaged file) are read with U+FFFD, not a UnicodeDecodeError
        return av.open(target, metadata_errors="replace", **kwargs)
    except (av.FFmpegError, OSError) as error:
        raise SourceError(f"{name}: cannot open it ({error}). {hint}") from None


class File(Source):
    """Any container PyAV opens (mp4, webm, mkv, wav, …), video-only and audio-only too.

    realtime: pace items to the wall clock like a live source (then `is_live` is True).
    start: begin at this offset in seconds (seek, then discard what comes before).
    """

    def __init__(self, path: str | Path, realtime: bool = False, start: float = 0.0) -> None:
        self.path = Path(path)
        self.realtime, self.start = realtime, float(start)
        self.is_live = realtime
        if self.path.is_dir():
            raise SourceError(f"{self.path}: is a folder, not a media file; name a file in it")
        if not self.path.is_file():
            raise SourceError(f"{self.path}: no such file; check the path")
        self._container = _open(str(self.path), str(self.path), "Is it a complete audio or video file?")
        try:
            self._decoded = _Decoded(self._container, str(self.path))
        except SourceError:
            self._container.close()
            raise
        self.tracks = self._decoded.tracks
        if self.start > 0:
            try:
                self._container.seek(int(self.start * av.time_base), backward=True)
            except av.FFmpegError as error:
                self._container.close()
                raise SourceError(f"{self.path}: cannot seek to {self.start} s ({error})") from None

    @property
    def corrupt_packets(self) -> int:
        """Packets skipped so far because they did not decode (see the module docstring)."""
        return self._decoded.corrupt_packets

    def __iter__(self) -> Iterator[MediaItem]:
        items = (item for item in map(self._from_start, self._decoded) if item is not None)
        yield from paced(items) if self.realtime else items

    def _from_start(self, item: MediaItem) -> MediaItem | None:
        """Drop what lies before `start`; cut an audio block that straddles it."""
        if self.start <= 0 or item.t >= self.start:
            return item
        if isinstance(item, VideoFrame):
            return None
        skip = round((self.start - item.t) * item.rate)
        if skip >= len(item.pcm):
            return None
        return AudioBlock(t=item.t + skip / item.rate, pcm=item.pcm[skip:], rate=item.rate, channels=item.channels)

    def close(self) -> None:
        self._container.close()


def _default_camera() -> tuple[str, str]:
    if sys.platform.startswith("linux"):
        return "v4l2", "/dev/video0"
    if sys.platform == "darwin":
        return "avfoundation", "0"
    if sys.platform.startswith("win"):
        return "dshow", "video=Integrated Camera"
    raise SourceError(f"no default capture format for platform {sys.platform}; pass format=")


def _camera_hint(format: str) -> str:
    if format == "lavfi":
        return 'Check the filter graph, e.g. Camera("testsrc=size=320x240:rate=25", format="lavfi").'
    if format in ("v4l2", "video4linux2"):
        found = sorted(glob.glob("/dev/video*"))
        listed = ", ".join(found) if found else "none found"
        return f"Video devices on this machine: {listed}; list them with `v4l2-ctl --list-devices`."
    if format == "avfoundation":
        return 'Try device="0" or list devices with `ffmpeg -f avfoundation -list_devices true -i ""`.'
    if format == "dshow":
        return 'Use device="video=NAME"; list names with `ffmpeg -list_devices true -f dshow -i dummy`.'
    return f"Check the device name for the {format!r} input format."


class Camera(Source):
    """A live capture device through PyAV's input devices, or an ffmpeg `lavfi` graph.

    device/format: default the first camera of the platform (v4l2, avfoundation, dshow).
    size (width, height) and fps are passed to the device as ffmpeg options; a lavfi
    graph sets them in the graph itself ("testsrc=size=320x240:rate=25"). A graph may
    carry audio too ("testsrc[out0];sine[out1]"); add `,realtime` to pace it.
    max_seconds: stop after this much source time (tests, demos); None runs until closed.
    options: any further ffmpeg device options.
    """

    is_live = True

    def __init__(
        self,
        device: str | None = None,
        format: str | None = None,
        size: tuple[int, int] | None = None,
        fps: float | None = None,
        max_seconds: float | None = None,
        options: dict[str, str] | None = None,
    ) -> None:
        if device is None or format is None:
            default_format, default_device = _default_camera()
            format = format or default_format
            device = device or default_device
        self.device, self.format, self.max_seconds = device, format, max_seconds
        opts = dict(options or {})
        if format == "lavfi" and (size is not None or fps is not None):
            raise ValueError('a lavfi graph sets its own size and rate: "testsrc=size=320x240:rate=25"')
        if size is not None:
            opts["video_size"] = f"{int(size[0])}x{int(size[1])}"
        if fps is not None:
            opts["framerate"] = f"{fps:g}"
        name = f"camera {device!r} ({format})"
        self._container = _open(device, name, _camera_hint(format), format=format, options=opts)
        try:
            self._decoded = _Decoded(self._container, name)
        except SourceError:
            self._container.close()
            raise
        self.tracks = self._decoded.tracks
        self._closed = False

    @property
    def corrupt_packets(self) -> int:
        """Packets skipped so far because they did not decode (see the module docstring)."""
        return self._decoded.corrupt_packets

    def __iter__(self) -> Iterator[MediaItem]:
        first = None
        for item in self._decoded:
            if self._closed:
                return
            first = item.t if first is None else first
            if self.max_seconds is not None and item.t - first >= self.max_seconds:
                return
            yield item

    def close(self) -> None:
        self._closed = True
        self._container.close()
