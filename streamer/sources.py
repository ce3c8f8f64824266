"""Media sources: files, capture devices, the microphone, numpy arrays.

A source is an iterable of `VideoFrame | AudioBlock` in its own clock order, stamped in
seconds on its own clock (PTS × time_base). Every source has `close()`, works as a
context manager, and says `is_live`: a live source keeps running whether or not anyone
reads it, so the engine may drop from it when it falls behind; a file waits for its reader.
The synthetic world is not a source of its own: a world clip streams as `Arrays`
(`clip.source()`), since the runtime must not depend on the training package.
"""

from __future__ import annotations

import collections
import glob
import math
import queue
import sys
import threading
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from model.media import AudioBlock, MediaItem, VideoFrame

REORDER_WINDOW = 1.0  # seconds of one stream held back while waiting for the other, when merging


class SourceError(ValueError):
    """A source could not be opened or read; the message names it and what to try."""


class Source(ABC):
    """Common shape of all sources: iterate for items, close when done."""

    is_live: bool = False

    @abstractmethod
    def __iter__(self) -> Iterator[MediaItem]:
        """Items in the source's clock order."""

    def close(self) -> None:
        """Release the device or file; sources holding nothing open need not override this."""

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------- decoding with PyAV


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
        if self.video is not None:
            self.video.thread_type = "AUTO"
        self._next_t = {"video": None, "audio": None}  # for frames that carry no timestamp
        self._to_rgb = VideoReformatter()  # one converter kept for the stream: ~25x faster than per-frame setup

    def _stamp(self, frame: av.VideoFrame | av.AudioFrame, kind: str) -> float:
        t = frame.time
        if t is None:  # no PTS: continue from the previous frame's end
            t = self._next_t[kind] or 0.0
        if kind == "audio":
            self._next_t[kind] = t + frame.samples / frame.sample_rate
        else:
            rate = self.video.average_rate or self.video.guessed_rate or 25
            self._next_t[kind] = t + 1.0 / float(rate)
        return float(t)

    def _frames(self) -> Iterator[MediaItem]:
        streams = [s for s in (self.video, self.audio) if s is not None]
        try:
            for frame in self.container.decode(*streams):
                if isinstance(frame, av.VideoFrame):
                    rgb = self._to_rgb.reformat(frame, format="rgb24").to_ndarray()
                    yield VideoFrame(t=self._stamp(frame, "video"), rgb=rgb)
                else:
                    yield _audio_block(frame, self._stamp(frame, "audio"))
        except av.FFmpegError as error:
            raise SourceError(f"{self.name}: could not decode ({error}); is the file complete and not corrupted?") from None

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


def _paced(items: Iterable[MediaItem]) -> Iterator[MediaItem]:
    """Release items at the wall-clock pace of their stamps, counted from the first one."""
    wall0 = clock0 = None
    for item in items:
        if wall0 is None:
            wall0, clock0 = time.monotonic(), item.t
        delay = wall0 + (item.t - clock0) - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        yield item


def _open(target: str, name: str, hint: str, **kwargs) -> av.container.InputContainer:
    try:
        return av.open(target, **kwargs)
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
        if not self.path.is_file():
            raise SourceError(f"{self.path}: no such file; check the path")
        self._container = _open(str(self.path), str(self.path), "Is it a complete audio or video file?")
        try:
            self._decoded = _Decoded(self._container, str(self.path))
        except SourceError:
            self._container.close()
            raise
        if self.start > 0:
            try:
                self._container.seek(int(self.start * av.time_base), backward=True)
            except av.FFmpegError as error:
                self._container.close()
                raise SourceError(f"{self.path}: cannot seek to {self.start} s ({error})") from None

    def __iter__(self) -> Iterator[MediaItem]:
        items = (item for item in map(self._from_start, self._decoded) if item is not None)
        yield from _paced(items) if self.realtime else items

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
        self._closed = False

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


class Microphone(Source):
    """Live PCM from a sound card through sounddevice (PortAudio).

    PortAudio's callback only copies each block into a bounded queue with its ADC time
    (seconds from the stream's first block); it never blocks. When the queue is full, or
    PortAudio reports an input overflow, the loss is counted in `overflows` and warned about.
    queue_seconds: how much audio may wait unread before blocks are dropped.
    """

    is_live = True

    def __init__(
        self,
        device: int | str | None = None,
        rate: int = 16000,
        channels: int = 1,
        block: int = 1024,
        queue_seconds: float = 2.0,
    ) -> None:
        self._sd = _import_sounddevice()
        self.device, self.rate, self.channels, self.block = device, int(rate), int(channels), int(block)
        self.overflows = 0
        self._warned = 0
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, math.ceil(queue_seconds * rate / block)))
        self._adc_origin: float | None = None
        self._samples = 0
        self._stream = None
        self._lock = threading.Lock()

    def _callback(self, indata: np.ndarray, frames: int, time_info, status) -> None:
        """PortAudio's audio thread: copy, stamp, enqueue, never wait."""
        if status.input_overflow:
            self.overflows += 1
        adc = float(time_info.inputBufferAdcTime)
        if adc > 0 and self._adc_origin is None:
            self._adc_origin = adc - self._samples / self.rate
        # some host APIs report no ADC time (0): fall back to counting samples
        t = adc - self._adc_origin if adc > 0 and self._adc_origin is not None else self._samples / self.rate
        self._samples += frames
        try:
            self._queue.put_nowait(AudioBlock(t=t, pcm=indata[:frames].copy(), rate=self.rate, channels=self.channels))
        except queue.Full:
            self.overflows += 1

    def start(self) -> None:
        """Open the input stream (done by iterating, too)."""
        with self._lock:
            if self._stream is not None:
                return
            try:
                self._sd.check_input_settings(device=self.device, channels=self.channels, samplerate=self.rate)
                self._stream = self._sd.InputStream(
                    device=self.device, channels=self.channels, samplerate=self.rate, blocksize=self.block,
                    dtype="float32", callback=self._callback,
                )
                self._stream.start()
            except (self._sd.PortAudioError, ValueError) as error:
                self._stream = None
                raise SourceError(
                    f"microphone {self.device if self.device is not None else '(default)'}: cannot open it "
                    f"({error}). Input devices: {self._input_devices()}. Pass device= (an index or name) "
                    f"from `python -m sounddevice`, or check that a microphone is connected."
                ) from None

    def _input_devices(self) -> str:
        try:
            names = [f"{i}: {d['name']}" for i, d in enumerate(self._sd.query_devices()) if d["max_input_channels"] > 0]
        except self._sd.PortAudioError:
            names = []
        return "; ".join(names) if names else "none found"

    def drain(self) -> list[AudioBlock]:
        """Every block captured so far, without waiting."""
        blocks = []
        while True:
            try:
                blocks.append(self._queue.get_nowait())
            except queue.Empty:
                break
        self._warn_overflows()
        return blocks

    def _warn_overflows(self) -> None:
        if self.overflows > self._warned:
            warnings.warn(
                f"microphone: {self.overflows - self._warned} audio block(s) lost to overflow "
                f"({self.overflows} in all); read faster or raise queue_seconds",
                RuntimeWarning,
                stacklevel=3,
            )
            self._warned = self.overflows

    def __iter__(self) -> Iterator[MediaItem]:
        self.start()
        while self._stream is not None:
            try:
                block = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            self._warn_overflows()
            yield block

    def close(self) -> None:
        with self._lock:
            stream, self._stream = self._stream, None
        if stream is not None:
            stream.stop()
            stream.close()


def _import_sounddevice():
    try:
        import sounddevice
    except ImportError:
        raise SourceError(
            "the microphone needs the sounddevice module: pip install 'streamer[mic]'"
        ) from None
    except OSError as error:  # the module is there but the PortAudio library is not
        raise SourceError(
            f"the microphone needs the PortAudio library ({error}): "
            "apt-get install libportaudio2 (Debian/Ubuntu) or brew install portaudio (macOS)"
        ) from None
    return sounddevice


class Arrays(Source):
    """Frames and PCM from numpy arrays, stamped from t0.

    video: uint8 [N, H, W, 3] at `fps`; audio: [S] mono or [S, C] (float in [-1, 1] or
    int16) at `rate`, yielded in blocks of `block` samples, merged with the frames in time order.
    realtime: pace items to the wall clock like a live source (then `is_live` is True);
    `close()` ends the stream.
    """

    def __init__(
        self,
        video: np.ndarray | None = None,
        fps: float | None = None,
        audio: np.ndarray | None = None,
        rate: int | None = None,
        t0: float = 0.0,
        block: int = 1024,
        realtime: bool = False,
    ) -> None:
        if video is None and audio is None:
            raise ValueError("Arrays needs video, audio or both")
        if video is not None:
            video = np.asarray(video)
            if video.dtype != np.uint8 or video.ndim != 4 or video.shape[3] != 3:
                raise ValueError(f"video must be uint8 [N, H, W, 3], got {video.dtype} {video.shape}")
            if not fps or fps <= 0:
                raise ValueError("video needs fps > 0")
        if audio is not None:
            audio = np.asarray(audio)
            if audio.ndim == 1:
                audio = audio[:, None]
            if audio.ndim != 2:
                raise ValueError(f"audio must be [S] or [S, C], got shape {audio.shape}")
            if not rate or rate <= 0:
                raise ValueError("audio needs rate > 0")
        if block < 1:
            raise ValueError("block must be at least 1 sample")
        self.video, self.fps, self.audio, self.rate, self.t0, self.block = video, fps, audio, rate, float(t0), block
        self.realtime = self.is_live = realtime
        self._closed = False

    def __iter__(self) -> Iterator[MediaItem]:
        frames = [] if self.video is None else [
            VideoFrame(t=self.t0 + i / self.fps, rgb=frame) for i, frame in enumerate(self.video)
        ]
        blocks = [] if self.audio is None else [
            AudioBlock(t=self.t0 + s / self.rate, pcm=self.audio[s : s + self.block], rate=int(self.rate),
                       channels=self.audio.shape[1])
            for s in range(0, len(self.audio), self.block)
        ]
        items = sorted([*frames, *blocks], key=lambda item: item.t)
        for item in _paced(items) if self.realtime else items:
            if self._closed:
                return
            yield item

    def close(self) -> None:
        self._closed = True
