"""Random item sequences through the chunker: stamps going backwards, gaps, jumps of 2**32 s,
duplicates, NaN, odd frame sizes and audio layouts. The chunker must return sane snippets
(or refuse an item with a ValueError), never hang, and a state saved mid-stream must carry on
exactly as the chunker it was saved from."""

from __future__ import annotations

import numpy as np
from fuzz_helpers import assert_clear_error, assert_sane_snippets, budget, within
from hypothesis import example, given
from hypothesis import strategies as st

from model.media import AudioBlock, MediaSpec, VideoFrame
from streamer.chunker import Chunker

SPEC = MediaSpec(height=16, width=16, fps=12.5, frames_per_snippet=2)  # 0.16 s snippets, as the micro model
MAX_SNIPPETS = 5000  # far above what a few dozen items may cover: more means a runaway fill

# how the next stamp relates to the last one
_steps = st.one_of(
    st.floats(0.0, 0.2),  # ordinary pacing and jitter
    st.floats(-0.5, 0.0),  # backwards
    st.just(0.0),  # a duplicate
    st.floats(0.5, 40.0),  # gaps, some past max_jump and max_fill
    st.sampled_from([2.0**32, -(2.0**32), 2.0**32 / 90000, 1e12]),  # wrapped 32-bit clocks, absurd stamps
)
_odd_stamps = st.sampled_from([float("nan"), float("inf"), float("-inf")])


@st.composite
def _items(draw) -> list[tuple[str, object]]:
    """Items, with the occasional `start_source` between them."""
    t = draw(st.sampled_from([0.0, 5.0, -3.0, 2.0**32 - 1.0]))
    out: list[tuple[str, object]] = []
    for _ in range(draw(st.integers(1, 40))):
        op = draw(st.sampled_from(["video", "video", "audio", "audio", "new_source"]))
        if op == "new_source":
            out.append(("new_source", None))
            continue
        t = t + draw(_steps)
        stamp = draw(_odd_stamps) if draw(st.integers(0, 19)) == 0 else t
        if op == "video":
            h, w = draw(st.integers(1, 24)), draw(st.integers(1, 24))
            layout = draw(st.sampled_from([(h, w, 3), (h, w), (h, w, 4)]))
            out.append(("item", VideoFrame(stamp, np.full(layout, draw(st.integers(0, 255)), np.uint8))))
        else:
            rate = draw(st.sampled_from([16000, 48000, 44100, 8000, 22050, 1000]))
            channels = draw(st.integers(1, 3))
            count = draw(st.integers(0, 3000))
            pcm = np.full((count, channels), draw(st.floats(-2.0, 2.0)), np.float32)
            if count and draw(st.integers(0, 9)) == 0:
                pcm[count // 2] = np.nan
            out.append(("item", AudioBlock(stamp, pcm, rate, channels)))
    return out


def _run(chunker: Chunker, ops: list[tuple[str, object]], flush: bool = True) -> list:
    snippets = []
    for op, item in ops:
        if op == "new_source":
            chunker.start_source()
            continue
        try:
            chunker.push(item)
        except ValueError as exc:  # a bad item is refused, the stream goes on
            assert_clear_error(exc, (ValueError,))
        snippets += chunker.pop_ready()
        assert len(snippets) < MAX_SNIPPETS, "the chunker emitted a runaway number of snippets"
    if flush:
        snippets += chunker.flush()
    return snippets


def _audio(t: float, rate: int, count: int) -> tuple[str, AudioBlock]:
    return "item", AudioBlock(t, np.zeros((count, 1), np.float32), rate, 1)


# Found by this property: a confirmed clock jump whose first audio was still inside the
# resampler set the audio end 47721 s ahead with no samples placed there yet, so the long
# silence was not skipped and one pop_ready() built ~300k filled snippets (3 GB).
JUMP_WITH_AUDIO_IN_THE_RESAMPLER = [_audio(5.0, 1000, 368), _audio(5.01208, 22050, 244),
                                    _audio(47726.87, 1000, 1334), _audio(47726.87, 8000, 1051),
                                    _audio(47728.57, 22050, 28)]


@budget(25)
@given(_items())
@example(JUMP_WITH_AUDIO_IN_THE_RESAMPLER)
def test_random_item_sequences_give_sane_snippets(ops):
    snippets = within(lambda: _run(Chunker(SPEC), ops))
    assert_sane_snippets(snippets, SPEC)


@budget(12)
@given(_items(), _items())
def test_a_state_saved_mid_stream_goes_on_exactly(first, second):
    """Never lose state: save after `first`, load into a fresh chunker, and both continue alike."""
    original = Chunker(SPEC)
    head = within(lambda: _run(original, first, flush=False))
    resumed = Chunker(SPEC)
    resumed.load_state_dict(original.state_dict())
    tail_a = within(lambda: _run(original, second))
    tail_b = within(lambda: _run(resumed, second))
    assert_sane_snippets(head + tail_a, SPEC)
    assert len(tail_a) == len(tail_b)
    for a, b in zip(tail_a, tail_b):
        assert (a.index, a.t0, a.t1, a.video_filled, a.audio_filled) == (b.index, b.t0, b.t1, b.video_filled,
                                                                        b.audio_filled)
        np.testing.assert_array_equal(a.video, b.video)
        np.testing.assert_array_equal(a.audio, b.audio)


def _paths(state: object, prefix: tuple = ()) -> list[tuple]:
    """Every leaf's path in a nested state dict."""
    if isinstance(state, dict):
        return [p for key, value in state.items() for p in _paths(value, prefix + (key,))] or [prefix]
    if isinstance(state, (list, tuple)) and state:
        return [p for i, value in enumerate(state) for p in _paths(value, prefix + (i,))]
    return [prefix]


def _replaced(state: object, path: tuple, value: object) -> object:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(state, dict):
        return {**state, head: _replaced(state[head], rest, value)}
    items = list(state)
    items[head] = _replaced(items[head], rest, value)
    return type(state)(items) if isinstance(state, tuple) else items


_garbage = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5), st.binary(max_size=8), st.lists(st.integers(-3, 3), max_size=3),
    st.builds(lambda n: np.zeros(n, np.float32), st.integers(0, 4)),
    st.builds(lambda n: np.zeros((n, 5, 3), np.uint8), st.integers(0, 2)),
)


def _mid_stream_state() -> dict:
    rng = np.random.default_rng(0)
    chunker = Chunker(SPEC)
    for j in range(5):
        chunker.push_video(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8), j / 25)
    chunker.push_audio((0.1 * rng.standard_normal((3000, 2))).astype(np.float32), 0.0, 44100, 2)
    chunker.pop_ready()
    return chunker.state_dict()


STATE = _mid_stream_state()
PATHS = _paths(STATE)


# Pushed after loading the damaged states below: a frame and a block of audio.
PUSHES = [("item", VideoFrame(0.3, np.zeros((8, 8, 3), np.uint8))),
          ("item", AudioBlock(0.3, np.zeros((800, 1), np.float32), 16000, 1))]


# Found by this property before load_state_dict checked the fields: each damaged state loaded,
# then failed on the next push or flush as the comment says (or on load, with no field named).
@budget(80)
@given(st.lists(st.tuples(st.sampled_from(PATHS), _garbage), min_size=1, max_size=3), _items())
@example([(("audio_end",), 0.0)], PUSHES)  # TypeError: slice indices must be integers
@example([(("pieces", 0, 1), 0.0)], PUSHES)  # TypeError: len() of unsized object
@example([(("runs", 0, 0), None)], PUSHES)  # TypeError on load
@example([(("suspects", "video"), None)], PUSHES)  # TypeError on load
@example([(("last_raw",), False)], PUSHES)  # RuntimeError from torch, scaling the "frame"
@example([(("segment", "resampler", "rate_in"), False)], PUSHES)  # ZeroDivisionError
@example([(("segment", "resampler", "rate_in"), 999999937)], PUSHES)  # a 32 GiB filter table on load
@example([(("segment", "resampler", "inputs"), 2**40)], PUSHES)  # 2.9 TiB of filter positions
@example([(("segment", "resampler", "history_start"), -(2**40))], PUSHES)  # IndexError
@example([(("newest",), 2.0**40)], PUSHES)  # filled snippets up to the "newest" stamp: out of memory
@example([(("segment", "t"), 2.0**40), (("newest",), 2.0**40)], PUSHES)  # the same, audio "ending" there
@example([(("t0",), -1e308)], PUSHES)  # OverflowError: stamp - t0 is infinite
def test_a_damaged_chunker_state_is_refused_or_works(damage, ops):
    """A saved chunker state with garbage in its fields: `load_state_dict` refuses it with a
    ValueError, or the chunker it loads into still cuts sane snippets."""
    state = STATE
    for path, value in damage:
        state = _replaced(state, path, value)
    chunker = Chunker(SPEC)
    try:
        chunker.load_state_dict(state)
    except ValueError as exc:
        assert_clear_error(exc, (ValueError,))
        return
    snippets = within(lambda: _run(chunker, ops))
    assert_sane_snippets(snippets, SPEC)
