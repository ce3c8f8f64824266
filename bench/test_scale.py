"""Concurrent real-time streams in one process, as the number of live sessions grows
(bench/concurrent.py says what is measured and when streams count as real time).

A sweep, not a function called over and over: each count is one pytest-benchmark entry run
once (`pedantic`, one round; its time is the run's wall time) and its measurements are in
`extra_info`. On a CPU every stream decodes its own copy of the camera-like file (decode +
chunk + step, what a server does per peer); on a GPU the streams are world clips already at
the model's size, since decoding a thousand H.264 streams would measure the CPU, not the engine.
"""

from __future__ import annotations

import pytest

from bench.concurrent import run_streams
from bench.feeds import FirstSeconds, LoopedClip
from bench.machine import resolve_device
from bench.sizes import SIZES
from streamer.engine import Engine
from streamer.sources import File


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """The counts swept depend on the device: 1 -> 64 on a CPU, 1 -> 1024 on a GPU (bench/sizes.py)."""
    if "streams" in metafunc.fixturenames:
        sizes = SIZES[metafunc.config.getoption("--bench-size")]
        on_gpu = resolve_device(metafunc.config.getoption("--bench-device")).type == "cuda"
        counts = sizes.scale_streams_gpu if on_gpu else sizes.scale_streams_cpu
        metafunc.parametrize("streams", counts, ids=[f"streams{n}" for n in counts])


@pytest.mark.timeout(1800)
def test_concurrent_streams(benchmark, streams, bundled_model, encoded_file, world_clips, sizes, device):
    seconds = sizes.scale_seconds
    if device.type == "cuda":
        source_kind = "world clips at the model's size (no decoding)"

        def source(i):
            return lambda: LoopedClip(world_clips[i % len(world_clips)], seconds, realtime=True)
    else:
        source_kind = "camera-like file, decoded per stream (320x240 H.264 25 fps + AAC 48 kHz)"

        def source(i):
            return lambda: FirstSeconds(File(encoded_file, realtime=True), seconds)

    with Engine(bundled_model) as engine:
        result = benchmark.pedantic(run_streams, args=(engine, [source(i) for i in range(streams)]), rounds=1)
    benchmark.extra_info.update(source=source_kind, **result)
    assert result["streams"] == streams and result["dropped"] == 0
