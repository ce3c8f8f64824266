"""The scheduler's batch follows the load: every ready stream in one model call, bounded by memory.

Lanes here are streams reduced to what the scheduler sees (snippets waiting, a state, the
batches that carried them), stepped by the real tiny model; they open all at once behind a
gate, so the first round finds every one of them ready.
"""

from __future__ import annotations

import threading
from collections import deque

import pytest
import torch

from model import ModelConfig, StreamerModel
from streamer.scheduler import Scheduler, StepInfo
from training.world.clip import Clip, WorldConfig

SNIPPETS = 2
WORLD = WorldConfig.preset("test", snippets=(SNIPPETS, SNIPPETS))


class GatedLane:
    """Snippets queued before the gate opens; records each batch size and any failure."""

    def __init__(self, model: StreamerModel, clip: Clip, gate: threading.Event) -> None:
        self.pending = deque(clip.snippets())
        self.state = model.init_state(1)
        self.gate = gate
        self.in_flight = False
        self.batch_sizes: list[int] = []
        self.errors: list[BaseException] = []
        self.done = threading.Event()

    def take_ready(self):
        if not self.gate.is_set() or self.in_flight or not self.pending:
            return None
        self.in_flight = True
        return self.pending.popleft(), self.state

    def finish_step(self, state, info: StepInfo) -> None:
        self.state, self.in_flight = state, False
        self.batch_sizes.append(info.batch_size)
        if not self.pending:
            self.done.set()

    def fail_step(self, error: BaseException) -> None:
        self.errors.append(error)
        self.done.set()


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return StreamerModel(ModelConfig.from_name("tiny")).eval()


@pytest.fixture(scope="module")
def clips():
    return [Clip.generate(WORLD.seed_start + i, WORLD) for i in range(24)]


def _alone(model: StreamerModel, clip: Clip) -> dict:
    state = model.init_state(1)
    for snippet in clip.snippets():
        state = model.step(state, torch.from_numpy(snippet.video[None]), torch.from_numpy(snippet.audio[None]))
    return state


def _run(scheduler: Scheduler, model: StreamerModel, clips: list[Clip]) -> list[GatedLane]:
    gate = threading.Event()
    lanes = [GatedLane(model, clip, gate) for clip in clips]
    for lane in lanes:
        scheduler.add(lane)
    gate.set()
    scheduler.wake()
    for lane in lanes:
        assert lane.done.wait(60), "a lane was never stepped"
    scheduler.close()
    return lanes


def _assert_as_if_alone(model, lanes, clips) -> None:
    for lane, clip in zip(lanes, clips):
        assert not lane.errors
        for key, value in _alone(model, clip).items():
            torch.testing.assert_close(lane.state[key], value, rtol=0, atol=1e-4, msg=f"state[{key!r}] differs")


def test_every_ready_stream_is_stepped_in_one_batch(model, clips):
    scheduler = Scheduler(model.step, "cpu")
    lanes = _run(scheduler, model, clips)
    assert [lane.batch_sizes for lane in lanes] == [[len(clips)] * SNIPPETS] * len(clips), \
        "24 ready streams should take one model call per round, not several"
    assert scheduler.steps == SNIPPETS
    _assert_as_if_alone(model, lanes, clips)


def test_a_given_bound_is_kept_and_no_stream_starves(model, clips):
    scheduler = Scheduler(model.step, "cpu", max_batch=4)
    lanes = _run(scheduler, model, clips[:10])
    assert max(max(lane.batch_sizes) for lane in lanes) == 4
    assert all(len(lane.batch_sizes) == SNIPPETS for lane in lanes)
    _assert_as_if_alone(model, lanes, clips[:10])


def test_a_batch_that_runs_out_of_memory_is_split_and_bounds_the_next(model, clips):
    def step_within_memory(state, video, audio):
        if video.shape[0] > 8:
            raise torch.OutOfMemoryError(f"out of memory (this test's device holds 8 streams, not {video.shape[0]})")
        return model.step(state, video, audio)

    scheduler = Scheduler(step_within_memory, "cpu")
    lanes = _run(scheduler, model, clips[:20])
    assert scheduler.max_batch == 5, "20 -> 10 (still too many) -> 5: the half that fit bounds later batches"
    assert {size for lane in lanes for size in lane.batch_sizes} == {5}
    _assert_as_if_alone(model, lanes, clips[:20])


def test_one_stream_that_runs_out_of_memory_fails_only_its_step(model, clips):
    def no_memory(state, video, audio):
        raise torch.OutOfMemoryError("out of memory")

    scheduler = Scheduler(no_memory, "cpu", max_batch=1)
    lanes = _run(scheduler, model, clips[:2])
    assert all(isinstance(lane.errors[0], torch.OutOfMemoryError) for lane in lanes)
