"""World clips as media made in the wild: other frame rates, sample rates, channel layouts,
codecs and cameras, brought back to the engine's snippets by the engine's own `File`
source and `Chunker`.

A clip's timeline and questions are drawn exactly as for the clean world (same seed, same
answers: they are properties of the timeline in seconds). Only how its pixels and samples
reach the model changes:

- rendered at a source frame rate of 10-30 fps and a sample rate of 8-48 kHz, mono or stereo;
- a camera's colour and brightness response (gain and offset per channel) and sensor noise;
- encoded as H.264 + AAC or VP8 + Opus at a random quality, then decoded and resampled.

Used as a training augmentation (`--wild P`) and as the `world:wild` evaluation split,
which measures how much of what the model learnt survives the trip.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from model.media import MediaSpec
from training.data import Sample, SampleQuestion, decode_snippets
from training.world.clip import Clip
from training.world.phrases import clip_phrases
from training.world.render import render_audio, render_frames

SAMPLE_RATES = (8_000, 11_025, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000)


@dataclass(frozen=True)
class WildMedia:
    """How one clip's media was made (drawn per clip by `draw`)."""

    fps: float
    sample_rate: int
    stereo: bool
    container: str  # "mp4" (H.264 + AAC) or "webm" (VP8 + Opus)
    quality: int  # x264 crf, or VP8 bitrate in kbit/s
    gain: tuple[float, float, float]
    offset: tuple[float, float, float]
    sensor_noise: float
    audio_gain: float

    @staticmethod
    def draw(rng: np.random.Generator) -> WildMedia:
        container = "mp4" if rng.random() < 0.5 else "webm"
        return WildMedia(
            fps=float(np.round(rng.uniform(10.0, 30.0), 2)),
            sample_rate=int(SAMPLE_RATES[rng.integers(len(SAMPLE_RATES))]),
            stereo=bool(rng.random() < 0.5),
            container=container,
            quality=int(rng.integers(16, 31)) if container == "mp4" else int(rng.integers(250, 1001)),
            gain=tuple(float(g) for g in rng.uniform(0.85, 1.15, 3)),
            offset=tuple(float(o) for o in rng.uniform(-12.0, 12.0, 3)),
            sensor_noise=float(rng.uniform(0.0, 3.0)),
            audio_gain=float(rng.uniform(0.5, 1.3)),
        )


def wild_clip(clip: Clip) -> tuple[np.ndarray, np.ndarray, WildMedia]:
    """The clip as the engine receives it after the wild path: video uint8 [T', F, H, W, 3],
    audio float32 [T', S] at `clip.spec`, and how it was made. T' is the number of whole
    snippets that came back (never more than the clip's); questions asked later are unusable."""
    rng = np.random.default_rng(np.random.SeedSequence([clip.seed, 0x57A1D]))
    media = WildMedia.draw(rng)
    spec, timeline = clip.spec, clip.timeline
    source = MediaSpec(spec.height, spec.width, media.fps, 1, media.sample_rate)
    duration = clip.duration
    noisy = replace(timeline, pixel_noise=math.hypot(timeline.pixel_noise, media.sensor_noise))
    frames = render_frames(noisy, source, math.ceil(duration * media.fps - 1e-6), rng)
    frames = _camera_response(frames, media.gain, media.offset)
    audio = render_audio(timeline, source, round(duration * media.sample_rate), rng) * np.float32(media.audio_gain)
    if media.stereo:  # a second microphone: other level, its own hiss
        right = audio * np.float32(rng.uniform(0.6, 1.0))
        right += rng.standard_normal(len(audio), dtype=np.float32) * np.float32(clip.timeline.noise_level)
        audio = np.stack((audio, right))
    else:
        audio = audio[None]
    audio = np.clip(audio, -1.0, 1.0).astype(np.float32)

    handle, name = tempfile.mkstemp(suffix=f".{media.container}", dir=_scratch_dir())
    os.close(handle)
    path = Path(name)
    try:
        _encode(path, frames, audio, media)
        snippets = decode_snippets(path, spec)
    finally:
        path.unlink(missing_ok=True)
    snippets = snippets[: clip.n_snippets]
    video = np.stack([s.video for s in snippets]) if snippets else np.zeros((0, spec.frames_per_snippet, spec.height, spec.width, 3), np.uint8)
    pcm = np.stack([s.audio for s in snippets]) if snippets else np.zeros((0, spec.samples_per_snippet), np.float32)
    return video, pcm, media


def wild_sample(clip: Clip, name: str = "") -> Sample:
    """A training sample of `clip` whose media went through the wild path; questions asked
    after the last snippet that came back (a codec may shorten the clip by a frame) are left out."""
    video, audio, _ = wild_clip(clip)
    questions = [SampleQuestion(q.text, q.answer, q.ask_snippets, q.kind) for q in clip.questions
                 if q.ask_snippets <= len(video)]
    return {"video": video, "audio": audio, "questions": questions, "phrases": clip_phrases(clip),
            "name": name or f"world:{clip.seed}(wild)"}


def _camera_response(frames: np.ndarray, gain, offset) -> np.ndarray:
    """Per-channel gain and offset through a lookup table (one pass over uint8 pixels)."""
    levels = np.arange(256, dtype=np.float32)[:, None] * np.asarray(gain, np.float32) + np.asarray(offset, np.float32)
    table = np.clip(np.rint(levels), 0, 255).astype(np.uint8)  # [256, 3]
    out = np.empty_like(frames)
    for c in range(3):
        out[..., c] = table[frames[..., c], c]
    return out


def _scratch_dir() -> str | None:
    """RAM-backed /dev/shm when there is one: these files live for milliseconds."""
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


def _encode(path: Path, frames: np.ndarray, audio: np.ndarray, media: WildMedia) -> None:
    if media.container == "mp4":
        video_codec, audio_codec = "libx264", "aac"
        options = {"crf": str(media.quality), "preset": "veryfast", "threads": "1"}
    else:
        video_codec, audio_codec = "libvpx", "libopus"
        options = {"b": f"{media.quality}k", "deadline": "realtime", "cpu-used": "8", "threads": "1"}
    layout = "stereo" if audio.shape[0] == 2 else "mono"
    # Opus takes 8/12/16/24/48 kHz only: its encoder resamples the rest, as a real recorder would.
    audio_rate = media.sample_rate
    if audio_codec == "libopus" and audio_rate not in (8_000, 12_000, 16_000, 24_000, 48_000):
        audio_rate = 48_000
    with av.open(str(path), "w") as container:
        video = container.add_stream(video_codec, rate=Fraction(media.fps).limit_denominator(1000))
        video.width, video.height, video.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        video.options = options
        sound = container.add_stream(audio_codec, rate=audio_rate, layout=layout)
        for j, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts = j
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=audio_rate)
        block = 1024
        for start in range(0, audio.shape[1], block):
            pcm = np.ascontiguousarray(audio[:, start:start + block])
            frame = av.AudioFrame.from_ndarray(pcm, format="fltp", layout=layout)
            frame.sample_rate, frame.pts = media.sample_rate, start
            for out in resampler.resample(frame):
                container.mux(sound.encode(out))
        for out in resampler.resample(None):
            container.mux(sound.encode(out))
        container.mux(sound.encode(None))
