"""Real media files for the source tests, encoded with PyAV from a known signal (fixture `media`).

Frame i is a flat colour `frame_colour(i)`; the audio is a 440 Hz sine at half scale, so a
decoded snippet can be compared with what was rendered. Two edge cases come with them: a
WAV without a single sample (`silent_wav`) and one picture (`one_png`).
"""

from __future__ import annotations

import wave
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest

TONE_HZ = 440.0


def frame_colour(i: int) -> tuple[int, int, int]:
    return ((40 + 23 * i) % 200 + 30, (90 + 11 * i) % 200 + 30, (150 + 7 * i) % 200 + 30)


def tone(start: int, count: int, rate: int) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * TONE_HZ * np.arange(start, start + count) / rate)).astype(np.float32)


def encode(
    path: Path,
    seconds: float = 2.0,
    video: str | None = "libx264",
    audio: str | None = "aac",
    fps: int = 25,
    rate: int = 48000,
    size: tuple[int, int] = (96, 64),
    frame_times: list[float] | None = None,
    container: str | None = None,
) -> Path:
    """Write a clip; `frame_times` (seconds) gives a variable frame rate instead of `fps`."""
    with av.open(str(path), "w", format=container) as out:
        video_stream = audio_stream = None
        if video:  # every stream exists before the first packet is written
            video_stream = out.add_stream(video, rate=fps)
            video_stream.width, video_stream.height = size
            video_stream.pix_fmt = "yuv420p"
            if frame_times is not None:
                video_stream.time_base = video_stream.codec_context.time_base = Fraction(1, 1000)
        if audio:
            audio_stream = out.add_stream(audio, rate=rate, layout="stereo")
        if video_stream is not None:
            times = frame_times if frame_times is not None else [i / fps for i in range(round(seconds * fps))]
            for i, t in enumerate(times):
                picture = np.empty((size[1], size[0], 3), np.uint8)
                picture[:] = frame_colour(i)
                frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
                if frame_times is not None:
                    frame.pts, frame.time_base = round(t * 1000), Fraction(1, 1000)
                else:
                    frame.pts = i
                out.mux(video_stream.encode(frame))
            out.mux(video_stream.encode())
        if audio_stream is not None:
            total, block = round(seconds * rate), 1024
            fmt = "s16" if audio.startswith("pcm_s16") else "fltp"
            for start in range(0, total, block):
                pcm = tone(start, min(block, total - start), rate)
                data = np.stack([pcm, pcm])
                if fmt == "s16":
                    data = (data.T.reshape(1, -1) * 32767).astype(np.int16)
                frame = av.AudioFrame.from_ndarray(data, format=fmt, layout="stereo")
                frame.sample_rate, frame.pts = rate, start
                out.mux(audio_stream.encode(frame))
            out.mux(audio_stream.encode())
    return path


def silent_wav(path: Path) -> Path:
    """A WAV header and no samples at all."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
    return path


def one_png(path: Path) -> Path:
    """A single 64x64 picture."""
    with av.open(str(path), "w", format="image2") as out:
        stream = out.add_stream("png", rate=1)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "rgb24"
        picture = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 200, np.uint8), format="rgb24")
        out.mux(stream.encode(picture))
        out.mux(stream.encode())
    return path


def corrupt(path: Path, start: int | None = None, end: int | None = None, seed: int = 0) -> Path:
    """A copy of `path` with bytes [start, end) overwritten at random (default: 3000 bytes mid-file)."""
    data = bytearray(path.read_bytes())
    start = len(data) // 2 if start is None else start
    end = start + 3000 if end is None else end
    data[start:end] = np.random.default_rng(seed).integers(0, 256, end - start, dtype=np.uint8).tobytes()
    out = path.with_name(f"corrupt-{path.name}")
    out.write_bytes(bytes(data))
    return out


@pytest.fixture
def media() -> SimpleNamespace:
    return SimpleNamespace(encode=encode, corrupt=corrupt, silent_wav=silent_wav, one_png=one_png,
                           frame_colour=frame_colour, tone=tone, TONE_HZ=TONE_HZ)
