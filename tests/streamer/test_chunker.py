"""The chunker: fixed grid, packetisation invariance, gaps, lag, adversarial stamps, state."""

from __future__ import annotations

import copy
import math
import re
import time
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model.media import MEDIA_PRESETS
from streamer.audio import StreamingResampler
from streamer.chunker import Chunker
from streamer.media import AudioBlock, VideoFrame
from streamer.state_io import SavedSession, decode_session, encode_session

SPEC = MEDIA_PRESETS["tiny"]  # 64x64 @ 12.5 fps, 8 frames = 0.64 s, 10240 samples
F, S, D = SPEC.frames_per_snippet, SPEC.samples_per_snippet, SPEC.snippet_seconds


def numbered_frame(i: int, size: tuple[int, int] = (48, 80)) -> np.ndarray:
    """A flat frame whose red channel encodes its index."""
    frame = np.zeros((*size, 3), np.uint8)
    frame[..., 0] = (i * 7) % 256
    frame[..., 1] = 100
    return frame


def signal(rate: int, seconds: float, channels: int = 2) -> np.ndarray:
    n = np.arange(round(rate * seconds))
    left = 0.4 * np.sin(2 * np.pi * 440 * n / rate) + 0.1 * np.sin(2 * np.pi * 3100 * n / rate)
    right = 0.3 * np.sin(2 * np.pi * 660 * n / rate)
    return np.stack([left, right], axis=1)[:, :channels].astype(np.float32)


def items(fps: float, seconds: float, rate: int, cuts: list[int], v_jitter=None, a_jitter=None):
    """Frames and audio blocks (cut at `cuts`) merged in true time order, stamps optionally jittered."""
    pcm = signal(rate, seconds)
    frames = [VideoFrame(i / fps + (v_jitter[i] if v_jitter and i else 0.0), numbered_frame(i))
              for i in range(round(fps * seconds))]
    edges = [0, *sorted(set(c for c in cuts if 0 < c < len(pcm))), len(pcm)]
    blocks = [AudioBlock(a / rate + (a_jitter[j] if a_jitter and j else 0.0), pcm[a:b], rate, 2)
              for j, (a, b) in enumerate(zip(edges, edges[1:]))]
    true_time = {id(f): i / fps for i, f in enumerate(frames)} | {id(b): a / rate for b, a in zip(blocks, edges)}
    return sorted([*frames, *blocks], key=lambda item: true_time[id(item)])


def run(stream, chunker: Chunker | None = None, pop_every: int = 1):
    """Every snippet of the stream: through `Chunker.snippets`, or popped by hand only after
    every `pop_every`-th item."""
    chunker = chunker or Chunker(SPEC)
    if pop_every == 1:
        return list(chunker.snippets(stream)), chunker
    out = []
    for n, item in enumerate(stream):
        chunker.push(item)
        if n % pop_every == 0:
            out += chunker.pop_ready()
    return out + chunker.flush(), chunker


def assert_same(a, b):
    assert [s.index for s in a] == [s.index for s in b]
    for x, y in zip(a, b):
        assert (x.t0, x.t1, x.video_filled, x.audio_filled) == (y.t0, y.t1, y.video_filled, y.audio_filled)
        np.testing.assert_array_equal(x.video, y.video)
        np.testing.assert_array_equal(x.audio, y.audio)


def test_grid_and_exact_counts():
    snippets, chunker = run(items(25, 3.0, 48000, list(range(0, 48000 * 3, 1024))))
    assert [s.index for s in snippets] == list(range(5))  # 3.0 s = 4 full snippets + a filled tail
    for s in snippets:
        assert s.video.shape == (F, 64, 64, 3) and s.video.dtype == np.uint8
        assert s.audio.shape == (S,) and s.audio.dtype == np.float32
        assert s.t0 == pytest.approx(s.index * D) and s.t1 == pytest.approx((s.index + 1) * D)
    assert not any(s.video_filled or s.audio_filled for s in snippets[:4])
    assert snippets[4].video_filled and snippets[4].audio_filled
    # 25 fps → 12.5 fps keeps every other input frame (the one at the slot's time)
    reds = np.concatenate([s.video[:, 0, 0, 0] for s in snippets[:4]])
    np.testing.assert_array_equal(reds, [(2 * j * 7) % 256 for j in range(32)])
    assert chunker.stats.snippets_emitted == 5


def test_video_repeats_frames_from_a_slower_source_and_resizes():
    chunker = Chunker(SPEC)
    for i in range(20):  # 5 fps: each frame covers 2.5 output slots
        chunker.push_video(np.full((240, 320, 3), i * 10, np.uint8), i / 5)
    chunker.push_audio(np.zeros(16000 * 4, np.float32), 0.0, 16000, 1)
    snippet = chunker.pop_ready()[0]
    # slot j at j/12.5 s shows the latest frame at or before it: floor(j·5/12.5)
    np.testing.assert_array_equal(snippet.video[:, 10, 10, 0], [10 * math.floor(j * 5 / 12.5) for j in range(8)])
    assert not snippet.video_filled


def test_resize_rejects_wrong_size_when_disabled():
    with pytest.raises(ValueError, match="resize=True"):
        Chunker(SPEC, resize=False).push_video(np.zeros((48, 80, 3), np.uint8), 0.0)
    Chunker(SPEC, resize=False).push_video(np.zeros((64, 64, 3), np.uint8), 0.0)


def test_resize_is_antialiased_and_keeps_gradients():
    """Scaling 320x240 down to 64x64 averages detail finer than a pixel of the output (no aliasing)
    and keeps a smooth ramp a ramp, within one level of the exact area average."""
    checker = (np.indices((240, 320)).sum(axis=0) % 2 * 255).astype(np.uint8)
    ramp = np.repeat(np.linspace(0, 255, 320)[None, :], 240, axis=0).round().astype(np.uint8)
    chunker = Chunker(SPEC)
    chunker.push_video(np.stack([checker, ramp, np.zeros_like(ramp)], axis=2), 0.0)
    chunker.push_audio(np.zeros(S, np.float32), 0.0, 16000, 1)
    frame = chunker.flush()[0].video[0]
    assert np.abs(frame[4:-4, 4:-4, 0].astype(int) - 127.5).max() <= 2
    columns = frame[32, :, 1].astype(int)
    exact = ramp[0].reshape(64, 5).mean(axis=1)
    assert np.all(np.diff(columns) >= 0) and np.abs(columns - exact)[2:-2].max() <= 1.5
    assert not frame[..., 2].any()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rate=st.sampled_from([16000, 44100, 48000, 22050]),
    fps=st.sampled_from([25.0, 30.0, 12.5]),
    data=st.data(),
)
def test_snippets_do_not_depend_on_packetisation_or_jitter(rate, fps, data):
    seconds = 2.0
    total = round(rate * seconds)
    cuts = data.draw(st.lists(st.integers(1, total - 1), max_size=40))
    jitter = st.floats(-0.02, 0.02)  # under the 0.04 s audio tolerance
    # frames at 30 fps lie 3.3 ms from a slot + video_tolerance at worst: video jitter stays below that
    a_jitter = data.draw(st.lists(jitter, min_size=len(cuts) + 1, max_size=len(cuts) + 1))
    v_jitter = data.draw(st.lists(st.floats(-0.003, 0.003), min_size=round(fps * seconds), max_size=round(fps * seconds)))
    pop_every = data.draw(st.integers(1, 50))
    reference, _ = run(items(fps, seconds, rate, list(range(0, total, 1024))))
    cut, _ = run(items(fps, seconds, rate, cuts, v_jitter, a_jitter), pop_every=pop_every)
    assert_same(reference, cut)


def test_audio_resampled_to_16k_mono_matches_the_signal():
    snippets, _ = run(items(25, 2.0, 44100, list(range(0, 88200, 700))))
    audio = np.concatenate([s.audio for s in snippets[:3]])
    expected = signal(16000, 2.0).mean(axis=1)[: len(audio)]
    assert np.abs(audio - expected)[50:].max() < 2e-3


def test_resampler_rejects_aliases_and_keeps_the_passband():
    n = np.arange(48000)
    for hz, keep in ((1000, True), (7000, True), (9000, False), (15000, False)):
        resampler = StreamingResampler(48000, 16000)
        out = np.concatenate([resampler.feed(np.sin(2 * np.pi * hz * n / 48000)), resampler.finish()])
        rms = np.sqrt(np.mean(out[500:-500] ** 2))
        assert (rms > 0.69) if keep else (rms < 1e-3), (hz, rms)


def test_layouts_stereo_planar_int16_interleaved_agree():
    pcm = signal(48000, 1.0)  # packed [S, 2]
    layouts = {
        "packed": pcm,
        "planar": np.ascontiguousarray(pcm.T),
        "interleaved": pcm.reshape(-1),
        "int16": (pcm * 32767).astype(np.int16),
        "float64": pcm.astype(np.float64),
    }
    results = {}
    for name, data in layouts.items():
        chunker = Chunker(SPEC)
        chunker.push_audio(data, 0.0, 48000, 2)
        results[name] = chunker.flush()[0].audio
    for name, audio in results.items():
        np.testing.assert_allclose(audio, results["packed"], atol=1e-4, err_msg=name)
    expected = signal(16000, 1.0).mean(axis=1)[:S]
    assert np.abs(results["packed"] - expected)[50:].max() < 2e-3


def test_bad_arguments_give_clear_errors():
    chunker = Chunker(SPEC)
    with pytest.raises(ValueError, match="uint8"):
        chunker.push_video(np.zeros((8, 8, 3), np.float32), 0.0)
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        chunker.push_video(np.zeros((8, 8, 5), np.uint8), 0.0)
    with pytest.raises(ValueError, match="number of seconds"):
        chunker.push_video(np.zeros((8, 8, 3), np.uint8), "soon")
    with pytest.raises(ValueError, match="dtype"):
        chunker.push_audio(np.zeros(100, np.uint8), 0.0, 16000, 1)
    with pytest.raises(ValueError, match="channels"):
        chunker.push_audio(np.zeros((100, 3), np.float32), 0.0, 16000, 2)
    with pytest.raises(ValueError, match="rate"):
        chunker.push_audio(np.zeros(100, np.float32), 0.0, 0, 1)
    with pytest.raises(ValueError, match="divide"):
        chunker.push_audio(np.zeros(101, np.float32), 0.0, 16000, 2)
    with pytest.raises(ValueError, match="VideoFrame"):
        chunker.push("frame")
    assert chunker.stats.snippets_emitted == 0 and chunker.t0 is None


@pytest.mark.parametrize("rate", [float("inf"), 2_000_000])
def test_an_audio_rate_beyond_any_interface_is_refused(rate):
    """The resampler's filter table grows with the rate (a prime rate near 1 GHz wanted 32 GiB);
    infinity raised an OverflowError."""
    with pytest.raises(ValueError, match="rate must be a whole number of Hz from 1 to 1000000"):
        Chunker(SPEC).push_audio(np.zeros(100, np.float32), 0.0, rate, 1)


def test_audio_gap_is_filled_with_flagged_silence():
    chunker = Chunker(SPEC)
    tone = signal(16000, 4.0, channels=1)[:, 0]
    for start in range(0, len(tone), 1600):
        t = start / 16000
        if 1.0 <= t < 2.3:
            continue  # 1.3 s missing
        chunker.push_audio(tone[start : start + 1600], t, 16000, 1)
        chunker.push_video(numbered_frame(start // 1600), t)
    snippets = chunker.pop_ready() + chunker.flush()
    assert [s.index for s in snippets] == list(range(7))
    assert chunker.stats.audio_gaps_filled == 1
    assert [s.audio_filled for s in snippets] == [False, True, True, True, False, False, True]
    audio = np.concatenate([s.audio for s in snippets])
    assert np.all(audio[16000:36800] == 0)  # the gap is silence
    np.testing.assert_array_equal(audio[:16000], tone[:16000])  # 16 kHz passes through untouched
    np.testing.assert_array_equal(audio[36800:40960], tone[36800:40960])  # placed by its stamp after the gap


def test_jitter_and_overlap_are_absorbed():
    tone = signal(16000, 2.0, channels=1)[:, 0]
    chunker = Chunker(SPEC)
    chunker.push_audio(tone[:8000], 0.0, 16000, 1)
    chunker.push_audio(tone[8000:16000], 0.5 + 0.03, 16000, 1)  # jitter within tolerance: placed by count
    chunker.push_audio(tone[14400:], 0.9, 16000, 1)  # repeats 0.1 s already placed: trimmed
    audio = np.concatenate([s.audio for s in chunker.flush()])
    np.testing.assert_array_equal(audio[:32000], tone)
    assert chunker.stats.audio_samples_trimmed == 1600 and chunker.stats.audio_gaps_filled == 0


def test_a_modality_that_stops_or_never_starts_does_not_stall():
    chunker = Chunker(SPEC)
    emitted = []
    for i in range(100):  # 4 s of audio; video stops after 1 s
        t = i * 0.04
        chunker.push_audio(np.full(640, 0.1, np.float32), t, 16000, 1)
        if t < 1.0:
            chunker.push_video(numbered_frame(i), t)
        emitted += chunker.pop_ready()
    # snippets run while data keeps coming, lagging by at most max_lag (2 snippets)
    assert [s.index for s in emitted] == [0, 1, 2, 3]
    assert not emitted[0].video_filled and emitted[1].video_filled and emitted[3].video_filled
    np.testing.assert_array_equal(emitted[3].video[0], emitted[1].video[-1])  # the last frame repeated
    assert not any(s.audio_filled for s in emitted)

    audio_only = Chunker(SPEC)
    for i in range(100):
        audio_only.push_audio(np.full(640, 0.1, np.float32), i * 0.04, 16000, 1)
    snippets = audio_only.pop_ready()
    assert len(snippets) == 4 and all(s.video_filled and not s.video.any() for s in snippets)  # black


def test_adversarial_stamps_are_dropped_and_counted():
    chunker = Chunker(SPEC)
    frame = numbered_frame(1)
    chunker.push_video(frame, 0.0)
    chunker.push_video(frame, float("nan"))
    chunker.push_audio(np.zeros(160, np.float32), float("inf"), 16000, 1)
    chunker.push_video(frame, -5.0)  # before t0
    chunker.push_video(frame, 0.0)  # duplicate
    chunker.push_video(frame, 0.5)
    chunker.push_video(frame, 0.3)  # out of order
    chunker.push_video(frame, 1e9)  # a lone leap far ahead
    nan_audio = np.full(1600, np.nan, np.float32)
    chunker.push_audio(nan_audio, 0.0, 16000, 1)
    stats = chunker.stats
    assert (stats.stamps_invalid, stats.video_frames_before_start, stats.video_frames_duplicate) == (2, 1, 1)
    assert (stats.video_frames_late, stats.stamps_jumped, stats.video_frames_accepted) == (1, 1, 2)
    assert stats.audio_samples_invalid_in == 1600
    for i in range(40):  # the stream carries on at its own clock
        chunker.push_video(frame, 0.5 + i * 0.08)
        chunker.push_audio(np.zeros(1280, np.float32), 0.1 + i * 0.08, 16000, 1)
    assert [s.index for s in chunker.pop_ready()] == [0, 1, 2, 3, 4]  # audio covers 3.3 s


def test_confirmed_clock_jump_skips_ahead_without_filling_forever():
    chunker = Chunker(SPEC)
    for i in range(20):
        chunker.push_video(numbered_frame(i), i * 0.08)
        chunker.push_audio(np.zeros(1280, np.float32), i * 0.08, 16000, 1)
    started = time.perf_counter()
    for i in range(40):  # the clock leaps a million seconds ahead and stays there (video confirms it first)
        chunker.push_video(numbered_frame(i), 1e6 + i * 0.08)
        chunker.push_audio(np.zeros(1280, np.float32), 1e6 + i * 0.08, 16000, 1)
    snippets = chunker.pop_ready() + chunker.flush()
    assert time.perf_counter() - started < 5
    stats = chunker.stats
    assert stats.stamps_jumped == 4 and stats.clock_jumps == 1 and stats.snippets_skipped > 1e6 / D - 100
    assert len(snippets) < 40
    after = [s for s in snippets if s.t0 >= 1e6 - D]
    assert after and not after[-2].audio_filled and not after[-2].video_filled


def test_sample_rate_change_mid_stream_is_seamless():
    chunker = Chunker(SPEC)
    first = signal(48000, 1.0, channels=1)[:, 0]
    n = np.arange(44100, 88200)
    second = (0.4 * np.sin(2 * np.pi * 440 * n / 44100) + 0.1 * np.sin(2 * np.pi * 3100 * n / 44100)).astype(np.float32)
    chunker.push_audio(first, 0.0, 48000, 1)
    chunker.push_audio(second, 1.0, 44100, 1)
    audio = np.concatenate([s.audio for s in chunker.flush()])
    assert chunker.stats.audio_rate_changes == 1 and chunker.stats.audio_gaps_filled == 0
    expected = signal(16000, 2.0, channels=1)[:, 0]
    error = np.abs(audio[:32000] - expected)
    # each resampler's filter edge (~1 ms) meets the other at the splice; no gap, no shift
    assert error[50:15980].max() < 2e-3 and error[16020:31950].max() < 2e-3
    assert error[15980:16020].max() < 0.1


def _saved_and_read_back(state: dict) -> dict:
    """A chunker state as a saved session file carries it (streamer.state_io, bytes and back)."""
    saved = SavedSession(fingerprint="f" * 64, tensors={}, chunker=state)
    return decode_session(encode_session(saved), fingerprint="f" * 64, spec={}, media=SPEC).chunker


def test_state_dict_round_trip_continues_identically():
    stream = items(25, 4.0, 44100, list(range(0, 44100 * 4, 999)))
    half = len(stream) // 2 + 3
    original = Chunker(SPEC)
    first = []
    for item in stream[:half]:
        original.push(item)
        first += original.pop_ready()
    restored = Chunker(SPEC)
    restored.load_state_dict(_saved_and_read_back(original.state_dict()))
    rest_a, _ = run(stream[half:], original)
    rest_b, _ = run(stream[half:], restored)
    assert_same(rest_a, rest_b)
    reference, _ = run(stream)
    assert_same(reference, first + rest_a)
    assert restored.stats == original.stats

    with pytest.raises(ValueError, match="media spec"):
        Chunker(MEDIA_PRESETS["base"]).load_state_dict(original.state_dict())


def _damaged(state: dict, path: tuple, value) -> dict:
    state = copy.deepcopy(state)
    parent = state
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value(parent[path[-1]]) if callable(value) else value
    return state


@pytest.mark.parametrize(("path", "value", "named"), [
    (("audio_end",), 0.0, "'audio_end' must be an integer"),
    (("pieces", 0, 1), np.zeros(3), "'pieces[0][1]' must be a 1-D float32 array"),
    (("segment", "resampler", "outputs"), lambda n: n + 1, "'segment.resampler.outputs' is"),
    (("segment", "inputs"), lambda n: n - 1, "'segment.inputs' is"),
    (("next_slot",), lambda n: n + 1, "'next_slot' is"),
    (("newest",), math.nan, "'newest' must be a finite number"),
    (("stats", "clock_jumps"), -1, "'stats.clock_jumps' must be an integer in"),
])
def test_a_damaged_state_is_refused_naming_the_field_and_nothing_changes(path, value, named):
    """Damage used to load and fail later (a TypeError on the next push, or gigabytes filled)."""
    saver = Chunker(SPEC)
    _pushed(items(25, 1.0, 44100, list(range(0, 44100, 999))), saver)
    state = _saved_and_read_back(saver.state_dict())
    assert state["segment"] is not None and state["pieces"], "the state holds a resampler part-way and audio"
    loader = Chunker(SPEC)
    _pushed(items(25, 0.5, 16000, list(range(0, 8000, 500))), loader)
    before = loader.state_dict()
    with pytest.raises(ValueError, match=re.escape(f"chunker state field {named}")):
        loader.load_state_dict(_damaged(state, path, value))
    np.testing.assert_equal(loader.state_dict(), before)
    loader.load_state_dict(state)  # undamaged, it loads


def _pushed(stream, chunker: Chunker) -> list:
    """The snippets ready after pushing every item, without flushing (the stream goes on)."""
    out = []
    for item in stream:
        chunker.push(item)
        out += chunker.pop_ready()
    return out


def _moved(stream, dt: float):
    return [replace(item, t=item.t + dt) for item in stream]


@pytest.mark.parametrize("clock", [0.0, 1000.0, -2.5])  # the new source's clock: from zero, far ahead, behind
def test_a_new_source_continues_where_the_stream_stopped(clock):
    first = items(25, 3 * D, 48000, list(range(0, 48000 * 2, 1000)))
    second = items(25, 3 * D, 44100, list(range(0, 44100 * 2, 1000)))  # another rate too
    chunker = Chunker(SPEC)
    run(first, chunker)
    chunker.start_source()
    continued, _ = run(_moved(second, clock), chunker)
    alone, _ = run(second)
    # exactly the second source's own snippets, moved to follow the first: nothing late, nothing filled
    assert [s.index for s in continued] == [3, 4, 5]
    assert [s.t0 for s in continued] == pytest.approx([s.t0 + 3 * D for s in alone])
    for x, y in zip(continued, alone):
        assert (x.video_filled, x.audio_filled) == (y.video_filled, y.audio_filled) == (False, False)
        np.testing.assert_array_equal(x.video, y.video)
        np.testing.assert_allclose(x.audio, y.audio, atol=1e-6)
    stats = chunker.stats
    assert stats.sources_rebased == 1
    assert stats.video_frames_late == stats.audio_samples_late == stats.audio_samples_trimmed == 0


def test_a_new_source_completes_a_partial_snippet():
    stream = items(25, 4 * D, 48000, list(range(0, 48000 * 3, 960)))
    cut = next(i for i, item in enumerate(stream) if item.t >= 1.5 * D)
    chunker = Chunker(SPEC)
    assert [s.index for s in _pushed(stream[:cut], chunker)] == [0]
    chunker.start_source()  # the next file starts at 0 on its own clock
    tail, _ = run(items(25, 2 * D, 48000, list(range(0, 48000 * 2, 960))), chunker)
    assert [s.index for s in tail] == [1, 2, 3]
    assert not any(s.video_filled or s.audio_filled for s in tail[:2])
    assert chunker.stats.sources_rebased == 1 and chunker.stats.video_frames_late == 0
    reds = tail[0].video[:, 0, 0, 0].astype(int)  # the red channel numbers the frames: 7 per frame
    drops = np.flatnonzero(np.diff(reds) < 0)
    assert len(drops) == 1 and reds[drops[0] + 1] <= 14, "the partial snippet shows the first source, then the second"


def test_the_rest_of_the_same_source_is_not_moved():
    stream = items(25, 3 * D, 48000, list(range(0, 48000 * 2, 1000)))
    cut = len(stream) // 2
    whole, _ = run(stream)
    chunker = Chunker(SPEC)
    head = _pushed(stream[:cut], chunker)
    chunker.start_source()  # e.g. a file resumed from where a saved session stopped
    restored = Chunker(SPEC)
    restored.load_state_dict(_saved_and_read_back(chunker.state_dict()))
    rest, _ = run(stream[cut:], restored)
    assert_same(whole, head + rest)
    assert restored.stats.sources_rebased == 0
