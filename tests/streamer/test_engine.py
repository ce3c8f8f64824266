"""Engine and Session mechanics on a real, randomly initialised tiny model and world clips.

A random model answers nonsense, but deterministic nonsense: every test here compares the
engine against the model driven by hand, or one way of streaming against another, so the
answers and state tensors must agree exactly (or to float tolerance across batch sizes).
"""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
import torch

from model import ModelConfig, StreamerModel
from streamer import Engine
from streamer.engine import CheckpointNotFound
from streamer.session import NOTHING_SEEN
from streamer.sources import File, MissingTrackWarning
from streamer.media import AudioBlock, VideoFrame
from streamer.state_io import StateError
from training.world.clip import Clip, WorldConfig

QUESTION = "what color is the circle?"
WORLD = WorldConfig.preset("test", snippets=(6, 6))


class ClipItems:
    """A clip as timestamped frames and 0.1 s PCM blocks, interleaved by time (a plain source)."""

    def __init__(self, clip: Clip, *, live: bool = False, start: float = 0.0, end: float | None = None,
                 block: int = 1600, video: bool = True, audio: bool = True, clock: float = 0.0) -> None:
        self.is_live = live
        fps, rate = clip.spec.fps, clip.spec.sample_rate
        end = clip.duration if end is None else end
        frames = [VideoFrame(clock + j / fps, clip.frames[j])
                  for j in range(len(clip.frames)) if video and start <= j / fps < end]
        blocks = [AudioBlock(clock + i / rate, clip.audio[i : i + block, None], rate, 1)
                  for i in range(0, len(clip.audio), block) if audio and start <= i / rate < end]
        self.items = sorted(frames + blocks, key=lambda item: item.t)

    def __iter__(self):
        return iter(self.items)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-random")
    StreamerModel(ModelConfig.from_name("tiny")).save(folder)
    return folder


@pytest.fixture(scope="module")
def engine(checkpoint):
    with Engine.load(checkpoint, device="cpu") as engine:
        yield engine


@pytest.fixture(scope="module")
def clips():
    return [Clip.generate(WORLD.seed_start + i, WORLD) for i in range(4)]


def _by_hand(model: StreamerModel, clip: Clip, snippets: int | None = None) -> tuple[dict, str]:
    """The model stepped snippet by snippet over the clip's own snippets, then asked."""
    state = model.init_state(1)
    for snippet in clip.snippets()[:snippets]:
        state = model.step(state, torch.from_numpy(snippet.video[None]), torch.from_numpy(snippet.audio[None]))
    return state, "".join(model.answer(state, QUESTION)).strip()


def _state_of(session) -> dict:
    return session.snapshot().tensors


def _assert_same_state(a: dict, b: dict, atol: float = 0.0) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=atol, msg=f"state[{key!r}] differs")


def test_stream_matches_the_model_stepped_by_hand(engine, clips):
    clip = clips[0]
    session = engine.session()
    updates = list(session.stream(ClipItems(clip)))
    assert [u.index for u in updates] == list(range(clip.n_snippets))
    assert updates[-1].t1 == pytest.approx(clip.duration)
    assert all(u.dropped == 0 and u.latency_ms > 0 and u.batch_size >= 1 for u in updates)
    state, text = _by_hand(engine.model, clip)
    _assert_same_state(_state_of(session), state)
    answer = session.ask(QUESTION)
    assert answer.text == text
    assert answer.t == pytest.approx(clip.duration) and answer.index == clip.n_snippets - 1
    assert "".join(session.ask_stream(QUESTION)).strip() == text
    earlier = session.ask(QUESTION, at=updates[2])  # exactly as of the third snippet
    assert (earlier.t, earlier.index) == (updates[2].t1, 2)
    assert earlier.text == _by_hand(engine.model, clip, snippets=3)[1]
    with pytest.raises(ValueError, match="this session"):
        engine.session().ask(QUESTION, at=updates[2])
    session.close()


def test_separate_video_and_audio_sources_make_one_stream(engine, clips):
    clip = clips[1]
    session = engine.session()
    updates = list(session.stream(ClipItems(clip, audio=False), ClipItems(clip, video=False)))
    assert [u.index for u in updates] == list(range(clip.n_snippets))
    _assert_same_state(_state_of(session), _by_hand(engine.model, clip)[0])
    session.close()


def test_live_sources_on_different_clocks_are_aligned(engine, clips):
    clip = clips[1]
    camera = ClipItems(clip, audio=False, live=True, clock=5000.0)  # e.g. a v4l2 monotonic clock
    microphone = ClipItems(clip, video=False, live=True)  # seconds since the device opened
    session = engine.session(max_queued=64)
    updates = list(session.stream(camera, microphone))
    assert len(updates) + session.dropped in (clip.n_snippets, clip.n_snippets + 1)
    assert updates[0].t0 < 1.0, "the streams were not put on one clock"
    session.close()


def test_batched_sessions_match_one_at_a_time(engine, clips):
    alone = [_by_hand(engine.model, clip) for clip in clips]
    sessions = [engine.session() for _ in clips]
    steps_before, snippets_before = engine.stats["steps"], engine.stats["snippets"]
    errors = []

    def run(session, clip):
        try:
            for _ in session.stream(ClipItems(clip)):
                pass
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=pair) for pair in zip(sessions, clips)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    steps = engine.stats["steps"] - steps_before
    snippets = engine.stats["snippets"] - snippets_before
    assert snippets == sum(c.n_snippets for c in clips)
    assert steps < snippets, "sessions streaming together were never stepped in one batch"
    for session, (state, text) in zip(sessions, alone):
        _assert_same_state(_state_of(session), state, atol=1e-4)
        assert session.ask(QUESTION).text == text
        session.close()


def test_ask_from_another_thread_while_streaming(engine, clips):
    clip = clips[1]
    session = engine.session()
    answers, stop = [], threading.Event()

    def asker():
        while not stop.is_set():
            answers.append(session.ask(QUESTION, max_new_tokens=4))

    thread = threading.Thread(target=asker)
    thread.start()
    updates = []
    for update in session.stream(ClipItems(clip)):
        updates.append(update)
        time.sleep(0.02)  # give the asker turns mid-stream
    stop.set()
    thread.join()
    assert len(updates) == clip.n_snippets
    assert len(answers) >= 2
    times = [a.t for a in answers]
    assert times == sorted(times), "an answer saw an older state than the answer before it"
    assert any(0 < t < clip.duration for t in times), "no question was answered mid-stream"
    assert all(a.tokens <= 4 and a.latency_ms > 0 for a in answers)
    session.close()


def test_save_load_continue_equals_uninterrupted(engine, checkpoint, clips, tmp_path):
    clip = clips[2]
    cut = 2.5 * clip.spec.snippet_seconds + 0.03  # mid-snippet: the chunker holds pending data
    first = engine.session()
    list(first.stream(ClipItems(clip, end=cut), flush=False))
    path = first.save(tmp_path / "state.msgpack")
    first.close()
    with Engine.load(checkpoint, device="cpu") as elsewhere:  # "resume a stream elsewhere"
        resumed = elsewhere.load_session(path)
        assert resumed.steps == 2 and resumed.t == pytest.approx(2 * clip.spec.snippet_seconds)
        updates = list(resumed.stream(ClipItems(clip, start=cut)))
        assert [u.index for u in updates] == list(range(2, clip.n_snippets))
        state, text = _by_hand(elsewhere.model, clip)
        _assert_same_state(_state_of(resumed), state)
        assert resumed.ask(QUESTION).text == text
        resumed.close()


def test_leaving_a_stream_early_keeps_its_data(engine, clips, tmp_path):
    clip = clips[3]
    session = engine.session(max_queued=2)
    items = iter(ClipItems(clip))
    for update in session.stream(items):
        break  # the rest stays in `items`; snippets already cut stay queued
    saved_path = session.save(tmp_path / "early.msgpack")
    rest = list(items)
    list(session.stream(rest))
    state, text = _by_hand(engine.model, clip)
    _assert_same_state(_state_of(session), state)
    resumed = engine.load_session(saved_path)  # the save held the queued snippets too
    list(resumed.stream(rest))
    _assert_same_state(_state_of(resumed), state)
    assert resumed.ask(QUESTION).text == text
    session.close()
    resumed.close()


def _by_hand_over(model: StreamerModel, clips: list[Clip]) -> tuple[dict, str]:
    """The model stepped over each clip's own snippets, one clip after the other, then asked."""
    state = model.init_state(1)
    for clip in clips:
        for snippet in clip.snippets():
            state = model.step(state, torch.from_numpy(snippet.video[None]), torch.from_numpy(snippet.audio[None]))
    return state, "".join(model.answer(state, QUESTION)).strip()


def test_a_new_source_continues_a_session_or_its_save(engine, clips, tmp_path):
    first, second = clips[0], clips[1]  # both clocks start at 0
    session = engine.session()
    list(session.stream(ClipItems(first)))
    path = session.save(tmp_path / "first.msgpack")
    resumed = engine.load_session(path)
    state, text = _by_hand_over(engine.model, [first, second])
    expected = list(range(first.n_snippets, first.n_snippets + second.n_snippets))
    for continuing in (session, resumed):
        updates = list(continuing.stream(ClipItems(second)))
        assert [u.index for u in updates] == expected
        assert updates[0].t0 == pytest.approx(first.duration)
        assert not any(u.video_filled or u.audio_filled for u in updates), "the new source's media was dropped"
        _assert_same_state(_state_of(continuing), state)
        assert continuing.ask(QUESTION).text == text
        continuing.close()


def test_a_new_source_resumed_from_its_saved_position_continues_exactly(engine, clips, tmp_path):
    first, second = clips[2], clips[3]
    cut = 1.5 * second.spec.snippet_seconds + 0.03  # the second source's own clock, mid-snippet
    session = engine.session()
    list(session.stream(ClipItems(first)))
    list(session.stream(ClipItems(second, end=cut), flush=False))
    path = session.save(tmp_path / "mid-second.msgpack")
    session.close()
    resumed = engine.load_session(path)
    list(resumed.stream(ClipItems(second, start=cut)))  # the rest of the same source, on its own clock
    _assert_same_state(_state_of(resumed), _by_hand_over(engine.model, [first, second])[0])
    resumed.close()


class SlowModel(StreamerModel):
    """The tiny model with a fixed extra cost per step: an engine slower than real time."""

    delay_s = 0.05

    def step(self, state, video, audio):
        time.sleep(self.delay_s)
        return super().step(state, video, audio)


@pytest.fixture(scope="module")
def slow_engine():
    torch.manual_seed(1)
    with Engine(SlowModel(ModelConfig.from_name("tiny")), max_queued=3) as engine:
        yield engine


def test_live_source_faster_than_the_engine_drops_oldest_snippets(slow_engine):
    clip = Clip.generate(7, WorldConfig.preset("test", snippets=(40, 40)))
    session = slow_engine.session()
    updates = list(session.stream(ClipItems(clip, live=True)))
    dropped = sum(u.dropped for u in updates)
    assert dropped > 0 and dropped == session.dropped == updates[-1].dropped_total
    assert len(updates) + dropped == clip.n_snippets, "every snippet is either stepped or counted as dropped"
    assert max(u.queued for u in updates) <= session.max_queued, "the live queue grew past its bound"
    assert max(u.lag_s for u in updates) > 0
    indices = [u.index for u in updates]
    assert indices == sorted(indices) and indices[-1] == clip.n_snippets - 1, "drops must be oldest first"
    session.close()


def test_offline_source_drops_nothing_on_a_slow_engine(slow_engine):
    clip = Clip.generate(8, WorldConfig.preset("test", snippets=(12, 12)))
    session = slow_engine.session()
    updates = list(session.stream(ClipItems(clip)))
    assert [u.index for u in updates] == list(range(clip.n_snippets))
    assert session.dropped == 0 and max(u.queued for u in updates) <= session.max_queued
    session.close()


def test_async_stream_and_ask(engine, clips):
    clip = clips[0]

    async def main():
        session = engine.session()
        indices = [update.index async for update in session.astream(ClipItems(clip))]
        answer = await session.aask(QUESTION)
        session.close()
        return indices, answer

    indices, answer = asyncio.run(main())
    assert indices == list(range(clip.n_snippets))
    assert answer.text == _by_hand(engine.model, clip)[1]


def test_state_from_another_model_is_refused(engine, tmp_path):
    torch.manual_seed(5)
    with Engine(StreamerModel(ModelConfig.from_name("tiny"))) as other:
        path = other.session().save(tmp_path / "other.msgpack")
    with pytest.raises(StateError, match="different model"):
        engine.load_session(path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(StateError):
        engine.load_session(path)


def test_clear_errors(engine, tmp_path, clips):
    with pytest.raises(CheckpointNotFound, match="no config.json"):
        Engine.load(tmp_path)
    session = engine.session()
    with pytest.raises(ValueError, match="non-empty question"):
        session.ask("  ")
    updates = session.stream(ClipItems(clips[0]))
    next(updates)
    with pytest.raises(RuntimeError, match="already streaming"):
        next(session.stream(ClipItems(clips[0])))
    updates.close()
    bad = [VideoFrame(0.0, np.zeros((4, 4), dtype=np.float32))]
    with pytest.raises(ValueError, match="uint8"):
        list(session.stream(bad))
    session.close()


def test_a_file_without_media_or_with_one_picture_is_warned_about_and_answered_honestly(engine, tmp_path, media):
    session = engine.session()
    with pytest.warns(MissingTrackWarning, match="no video track"):
        assert list(session.stream(File(media.silent_wav(tmp_path / "silent.wav")))) == []
    answer = session.ask(QUESTION)
    assert (answer.text, answer.snippets, answer.seen) == (NOTHING_SEEN, 0, False)
    resumed = engine.load_session(session.save(tmp_path / "fresh.msgpack"))
    assert resumed.ask(QUESTION).text == NOTHING_SEEN
    picture = engine.session()
    with pytest.warns(MissingTrackWarning, match="no audio track: every snippet's audio is silence"):
        assert len(list(picture.stream(File(media.one_png(tmp_path / "one.png"))))) == 1
    answer = picture.ask(QUESTION)
    assert answer.snippets == 1 and answer.seen and answer.text != NOTHING_SEEN


def test_a_device_this_machine_lacks_is_refused_in_one_sentence(checkpoint):
    """`--device tpu` and `--device cuda` without a GPU ended in torch's RuntimeError tracebacks."""
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        Engine.load(checkpoint, device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            Engine.load(checkpoint, device="cuda")
    else:
        with pytest.raises(ValueError, match="CUDA GPU"):
            Engine.load(checkpoint, device=f"cuda:{torch.cuda.device_count()}")
