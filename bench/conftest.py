"""Fixtures of the benchmark suite (`make bench`; see bench/README.md).

Options: `--bench-size full|quick|smoke` (bench/sizes.py), `--bench-device auto|cpu|cuda`,
`--bench-threads N` (torch CPU threads; the `tiny` targets are for 2 cores). Every benchmark's
`extra_info` carries the machine, the versions, the device and the size it ran with.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from bench.feeds import write_camera_file
from bench.machine import device_slug, machine_info, resolve_device, versions
from bench.sizes import SIZES, Sizes
from model import StreamerModel
from streamer.engine import BUNDLED_CHECKPOINT
from training.world.clip import Clip, WorldConfig

COMBINERS = ("ttm", "transformer")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("streamer benchmarks")
    group.addoption("--bench-size", choices=sorted(SIZES), default="full",
                    help="how much each benchmark runs: full (make bench), quick (~2 min), smoke (CI)")
    group.addoption("--bench-device", choices=("auto", "cpu", "cuda"), default="auto",
                    help="where the model runs (auto: cuda when available)")
    group.addoption("--bench-threads", type=int, default=2, help="torch CPU threads (default 2: the tiny targets)")


@pytest.fixture(scope="session")
def sizes(pytestconfig) -> Sizes:
    return SIZES[pytestconfig.getoption("--bench-size")]


@pytest.fixture(scope="session")
def device(pytestconfig) -> torch.device:
    return resolve_device(pytestconfig.getoption("--bench-device"))


@pytest.fixture(scope="session", autouse=True)
def threads(pytestconfig) -> int:
    count = pytestconfig.getoption("--bench-threads")
    torch.set_num_threads(count)
    return count


@pytest.fixture(scope="session")
def run_info(device, threads, sizes) -> dict:
    """What every result is stored with; the load average is read once, before anything runs."""
    return {"machine": machine_info(device, threads), "versions": versions(), "device": device_slug(device),
            "size": sizes.name}


@pytest.fixture(autouse=True)
def _record_run_info(request, run_info) -> None:
    if "benchmark" in request.fixturenames:
        request.getfixturevalue("benchmark").extra_info.update(run_info)


@pytest.fixture(scope="session")
def bundled_model(device) -> StreamerModel:
    """The model users run: the bundled `tiny` checkpoint (TTM combiner)."""
    return StreamerModel.load(BUNDLED_CHECKPOINT, device=device)


@pytest.fixture(scope="session", params=COMBINERS)
def combiner_model(request, bundled_model, device) -> tuple[str, StreamerModel]:
    """`tiny` with each combiner: the bundled checkpoint (TTM), and the same configuration with
    the Transformer combiner. No trained checkpoint of that exists, so its weights are random:
    its speed is its own, its answers (and so their length) are not a trained model's."""
    if request.param == "ttm":
        return "ttm", bundled_model
    cfg = bundled_model.cfg
    cfg = dataclasses.replace(cfg, combiner=dataclasses.replace(cfg.combiner, kind="transformer"))
    torch.manual_seed(0)
    return "transformer", StreamerModel(cfg).to(device).eval()


@pytest.fixture(scope="session")
def world_clips() -> list[Clip]:
    """Test-split world clips of 16 snippets (10.24 s) with their questions."""
    config = WorldConfig.preset("test", snippets=(16, 16))
    return [Clip.generate(config.seed_start + i, config) for i in range(8)]


@pytest.fixture(scope="session")
def encoded_file(tmp_path_factory, world_clips, sizes):
    """A camera-like H.264 + AAC file (320x240, 25 fps, 48 kHz), written once per run."""
    seconds = max(sizes.file_seconds, sizes.scale_seconds)
    return write_camera_file(tmp_path_factory.mktemp("media") / "camera.mp4", world_clips[0], seconds)
