"""Micro benchmarks: each part of the path from media to state on its own, timed by pytest-benchmark.

`extra_info` says what one call processes (`media_s` of media, `batch` snippets, `bytes`,
`snippets` rendered), so the report turns time per call into throughput.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from bench.feeds import decoded_items
from bench.measure import synchronize
from bench.sizes import SIZES
from streamer.audio import StreamingResampler
from streamer.chunker import Chunker
from streamer.state_io import SavedSession, decode_session, encode_session
from training.world.clip import World, WorldConfig

CHUNKER_SECONDS = 2.0


def test_chunker(benchmark, encoded_file, bundled_model):
    """Push a decoded file's frames (320x240, 25 fps) and audio (48 kHz) and pop snippets:
    resize, frame-rate conversion, resampling to 16 kHz and cutting."""
    items = decoded_items(encoded_file, CHUNKER_SECONDS)

    def cut():
        chunker = Chunker(bundled_model.cfg.media)
        for item in items:
            chunker.push(item)
            chunker.pop_ready()
        return chunker.flush()

    benchmark(cut)
    benchmark.extra_info["media_s"] = CHUNKER_SECONDS


def test_resample(benchmark):
    """One second of 48 kHz audio to 16 kHz in a running stream (the resampler's steady state)."""
    resampler = StreamingResampler(48_000, 16_000)
    second = np.sin(np.arange(48_000) * 0.05).astype(np.float32)
    benchmark(resampler.feed, second)
    benchmark.extra_info["media_s"] = 1.0


def test_log_mel(benchmark, bundled_model, device):
    """The log-mel spectrogram of one snippet's audio window (with its left context)."""
    logmel = bundled_model.encoder.logmel
    window = torch.randn(1, logmel.context + bundled_model.cfg.media.samples_per_snippet, device=device) * 0.1

    def spectrogram():
        with torch.no_grad():
            out = logmel(window)
        synchronize(device)
        return out

    benchmark(spectrogram)
    benchmark.extra_info["media_s"] = bundled_model.cfg.media.snippet_seconds


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "batch" in metafunc.fixturenames:
        batches = SIZES[metafunc.config.getoption("--bench-size")].model_batches
        metafunc.parametrize("batch", batches, ids=[f"batch{b}" for b in batches])


def test_model_step(benchmark, bundled_model, world_clips, device, batch):
    """One batched step of the bundled model: `batch` streams each fold in one snippet."""
    snippet = world_clips[0].snippets()[0]
    state = bundled_model.init_state(batch, device=device)
    video = torch.from_numpy(np.stack([snippet.video] * batch)).to(device)
    audio = torch.from_numpy(np.stack([snippet.audio] * batch)).to(device)

    def step():
        new_state = bundled_model.step(state, video, audio)
        synchronize(device)
        return new_state

    benchmark(step)
    benchmark.extra_info.update(batch=batch, media_s=batch * bundled_model.cfg.media.snippet_seconds)


@pytest.fixture(scope="module")
def saved_session(bundled_model, world_clips) -> SavedSession:
    """A stream's saved form after a clip: the state, its clock, the chunker's pending data."""
    state = bundled_model.init_state(1)
    for snippet in world_clips[0].snippets():
        state = bundled_model.step(state, torch.from_numpy(snippet.video[None]).to(state["t"].device),
                                   torch.from_numpy(snippet.audio[None]).to(state["t"].device))
    return SavedSession(fingerprint=bundled_model.fingerprint(), tensors={k: v.cpu() for k, v in state.items()})


def test_state_save(benchmark, saved_session):
    """msgpack encoding of one stream's state (checksum included)."""
    data = benchmark(encode_session, saved_session)
    benchmark.extra_info["bytes"] = len(data)


def test_state_load(benchmark, saved_session, bundled_model):
    """Decoding and validating one stream's saved state against the model."""
    data = encode_session(saved_session)
    benchmark(decode_session, data, fingerprint=saved_session.fingerprint, spec=bundled_model.state_spec(1),
              media=bundled_model.cfg.media)
    benchmark.extra_info["bytes"] = len(data)


def test_world_render(benchmark):
    """Rendering a 16-snippet world clip (frames, audio, questions) at the tiny preset's 64x64."""
    world = World(WorldConfig.preset("train", snippets=(16, 16)))
    index = itertools.count()
    clip = benchmark(lambda: world.clip(next(index)))
    benchmark.extra_info.update(snippets=clip.n_snippets, media_s=clip.duration)
