"""Standing queries: what scoring watches adds to a batched step of 16 streams.

Each round steps 16 streams in one batch (the model call the scheduler makes), then does
the work a model with an alignment head adds after it, exactly as the engine and the
sessions do it: the snippets' embedding, one product over every watch of every session
(`WatchTable.score`), and per session the moment index and the hysteresis of its watches
(`WatchSet.fire`). That work is timed twice per round, once with `watches` spread over the
16 sessions and once with none, so both see the same machine load. The benchmark's own
statistics are the whole round; `extra_info` has the medians of each part and the ratios.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bench.measure import synchronize
from bench.sizes import SIZES
from model import ModelConfig, StreamerModel
from streamer.watch import SnippetIndex, Watch, WatchTable, index_capacity

SESSIONS = 16


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "watches" in metafunc.fixturenames:
        counts = SIZES[metafunc.config.getoption("--bench-size")].watch_counts
        metafunc.parametrize("watches", counts, ids=[f"watches{n}" for n in counts])


@pytest.fixture(scope="module")
def align_model(bundled_model, device) -> StreamerModel:
    """The bundled model when it has an alignment head; else `tiny` with a random one (what the
    scoring costs depends on the head's size, not on its weights)."""
    if bundled_model.can_align:
        return bundled_model
    torch.manual_seed(0)
    return StreamerModel(ModelConfig.from_name(bundled_model.cfg.name)).to(device).eval()


class SessionShare:
    """One session's share of the work after a step: its watches and its moment index."""

    def __init__(self, table: WatchTable, watches: list[Watch], dim: int, capacity: int) -> None:
        self.watches = table.watch_set(self)
        self.watches.add(watches)
        self.index = SnippetIndex(dim, capacity)

    def finish(self, scored, k: int, seconds: float) -> None:
        self.index.add(scored.vector, k, k * seconds, (k + 1) * seconds)
        self.watches.fire(self.watches.scores_for(scored))


def _lanes(model: StreamerModel, device: torch.device, count: int) -> tuple[WatchTable, list[SessionShare]]:
    dim, threshold = model.cfg.align.dim, model.cfg.align.watch_threshold
    vectors = F.normalize(torch.randn(count, dim, generator=torch.Generator().manual_seed(1)), dim=-1)
    table = WatchTable(dim, device)
    capacity = index_capacity(4.0, model.cfg.media.snippet_seconds)
    shares = np.array_split(np.arange(count), SESSIONS)
    lanes = [SessionShare(table, [Watch(f"phrase {i}", threshold, vectors[i], id=i + 1) for i in share], dim, capacity)
             for share in shares]
    return table, lanes


def test_watch_scoring(benchmark, align_model, bundled_model, world_clips, device, sizes, watches):
    model = align_model
    snippets = world_clips[0].snippets()[:SESSIONS]
    video = torch.from_numpy(np.stack([s.video for s in snippets])).to(device)
    audio = torch.from_numpy(np.stack([s.audio for s in snippets])).to(device)
    state = model.init_state(SESSIONS, device=device)
    seconds = model.cfg.media.snippet_seconds
    armed, bare = _lanes(model, device, watches), _lanes(model, device, 0)
    times: dict[str, list[float]] = {"step": [], "added": [], "added_without_watches": []}
    rounds = {"k": 0}

    def after_step(table: WatchTable, lanes: list[SessionShare], new_state) -> None:
        scored = table.score(lanes, model.embed_snippet(new_state))
        for lane, row in zip(lanes, scored):
            lane.finish(row, rounds["k"], seconds)
        synchronize(device)

    def one_round() -> None:
        started = time.perf_counter()
        new_state = model.step(state, video, audio)
        synchronize(device)
        stepped = time.perf_counter()
        after_step(*armed, new_state)
        scored = time.perf_counter()
        after_step(*bare, new_state)
        times["step"].append(stepped - started)
        times["added"].append(scored - stepped)
        times["added_without_watches"].append(time.perf_counter() - scored)
        rounds["k"] += 1

    with torch.no_grad():
        benchmark.pedantic(one_round, rounds=sizes.step_rounds, warmup_rounds=min(3, sizes.step_rounds))
    ms = {name: 1e3 * float(np.median(values)) for name, values in times.items()}
    benchmark.extra_info.update(
        sessions=SESSIONS, watches=watches, align_dim=model.cfg.align.dim,
        head="bundled" if model is bundled_model else "random weights",
        step_ms=ms["step"], added_ms=ms["added"], added_without_watches_ms=ms["added_without_watches"],
        watches_ms=ms["added"] - ms["added_without_watches"],  # what the watches themselves cost
        added_ratio=ms["added"] / ms["step"], watches_ratio=(ms["added"] - ms["added_without_watches"]) / ms["step"],
        index_bytes_per_snippet=SnippetIndex.bytes_per_snippet(model.cfg.align.dim),
    )
    assert all(len(lane.index) == rounds["k"] for lane in armed[1])
