"""Live PCM from a sound card through sounddevice (PortAudio), an optional dependency."""

from __future__ import annotations

import math
import queue
import threading
import warnings
from collections.abc import Iterator

import numpy as np

from model.media import AudioBlock, MediaItem
from streamer.sources.base import Source, SourceError


class Microphone(Source):
    """Live PCM from a sound card through sounddevice (PortAudio).

    PortAudio's callback only copies each block into a bounded queue with its ADC time
    (seconds from the stream's first block); it never blocks. When the queue is full, or
    PortAudio reports an input overflow, the loss is counted in `overflows` and warned about.
    queue_seconds: how much audio may wait unread before blocks are dropped.
    """

    is_live = True
    tracks = frozenset({"audio"})

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
