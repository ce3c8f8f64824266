"""The streaming resampler: the same bits whatever the packetisation, and the filter it documents."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.audio import StreamingResampler

RATES = [48000, 44100, 32000, 22050, 16000, 8000, 96000]


def _resampled(x: np.ndarray, rate: int, cuts: list[int]) -> np.ndarray:
    resampler = StreamingResampler(rate, 16000)
    edges = [0, *sorted(set(cuts)), len(x)]
    return np.concatenate([*(resampler.feed(x[a:b]) for a, b in zip(edges, edges[1:])), resampler.finish()])


@settings(max_examples=30, deadline=None)
@given(rate=st.sampled_from(RATES), data=st.data())
def test_any_split_of_the_input_gives_the_same_bits(rate, data):
    x = np.random.default_rng(rate).uniform(-1, 1, rate // 4)
    cuts = data.draw(st.lists(st.integers(0, len(x)), max_size=30))
    ones = data.draw(st.integers(0, len(x) - 8))  # a run of one-sample blocks too
    whole = _resampled(x, rate, [])
    np.testing.assert_array_equal(_resampled(x, rate, cuts + list(range(ones, ones + 8))), whole)
    assert len(whole) == -(-len(x) * 16000 // rate)


def _direct(resampler: StreamingResampler, x: np.ndarray) -> np.ndarray:
    """Output m straight from the definition: the phase row of m at its input position, zeros around x."""
    half, out = resampler.half, []
    padded = np.concatenate([np.zeros(half), x, np.zeros(2 * half + 1)])
    for m in range(-(-len(x) * resampler.up // resampler.down)):
        base, phase = resampler._positions(np.array([m]))
        start = int(base[0]) + 1  # input index base - half + 1 in padded coordinates
        out.append(padded[start : start + 2 * half] @ resampler.bank[int(phase[0])])
    return np.array(out)


def test_every_output_is_its_phase_row_over_its_input_window():
    for rate in (48000, 44100, 8000):
        x = np.random.default_rng(1).uniform(-1, 1, 3001)
        resampler = StreamingResampler(rate, 16000)
        expected = _direct(StreamingResampler(rate, 16000), x)
        got = np.concatenate([resampler.feed(x[:1000]), resampler.feed(x[1000:]), resampler.finish()])
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12, err_msg=str(rate))
