"""One worker thread that steps many streams together, one batched model call per step.

Sessions are independent, so the cheapest way to serve many of them on one device is to
gather one ready snippet from each, stack their state rows into a batch, call the model
once and hand each row back. Sessions ("lanes") join and leave at any time; a lane that
has nothing ready is simply not part of the next batch, and streams at different times
are batched together because every state tensor is batch-first.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Callable, Protocol

import numpy as np
import torch

from model.media import Snippet
from model.state import State
from streamer.watch import SnippetScores

StepFn = Callable[[State, torch.Tensor, torch.Tensor], State]
# After a batched step: what each row's lane is handed besides its state (its snippet's
# alignment vector and watch scores), from the lanes in row order and the new state.
AfterStepFn = Callable[[list["Lane"], State], Sequence[SnippetScores]]


@dataclass(frozen=True)
class StepInfo:
    """How the batch that carried one snippet went."""

    batch_size: int
    step_ms: float  # wall time of the batched model call (and the watch scoring after it)
    finished_at: float  # time.perf_counter() when the new state was ready
    scores: SnippetScores | None = None  # this row's snippet vector and watch scores (models that align)


class Lane(Protocol):
    """What the scheduler needs from a stream (Session implements it)."""

    def take_ready(self) -> tuple[Snippet, State] | None:
        """Pop the next snippet and the state rows it applies to, or None if not ready."""

    def finish_step(self, state: State, info: StepInfo) -> None:
        """Receive the new state rows (batch 1) after the snippet taken last was stepped."""

    def fail_step(self, error: BaseException) -> None:
        """The batched step raised; the snippet taken last was not applied."""


def stack_states(states: list[State]) -> State:
    """Concatenate batch-1 states row-wise (one row per stream)."""
    if len(states) == 1:
        return states[0]
    return {key: torch.cat([s[key] for s in states], dim=0) for key in states[0]}


def row_of(state: State, i: int) -> State:
    """The batch-1 state of row i; a clone so one stream never pins the whole batch's memory."""
    return {key: value[i : i + 1].clone() for key, value in state.items()}


class Scheduler:
    """Owns the model step: a daemon thread that steps every ready lane in one batched call.

    The batch follows the load: each round takes one snippet from every lane that has one,
    since one call over B streams costs less than the same streams split over several calls
    (a fixed cap of 16 made 20 streams take two calls a round and fall behind real time).
    What bounds it is memory: `max_batch` when given; otherwise a call that runs out of
    device memory is split in halves and retried, and the half becomes the bound from then
    on. With more ready lanes than the bound, lanes are served round-robin so none starves.
    """

    def __init__(self, step: StepFn, device: torch.device | str, *, max_batch: int | None = None,
                 after_step: AfterStepFn | None = None) -> None:
        if max_batch is not None and max_batch < 1:
            raise ValueError(f"max_batch must be at least 1 (or None: every ready stream), got {max_batch}")
        self._step = step
        self._after_step = after_step
        self._device = torch.device(device)
        self.max_batch = max_batch  # None: no bound until a step runs out of memory
        self._lanes: list[weakref.ref[Lane]] = []  # weak: a session dropped without close() leaves
        self._cond = threading.Condition()
        self._work = False
        self._closed = False
        self._next = 0  # round-robin start
        self._thread: threading.Thread | None = None
        self.steps = 0
        self.snippets = 0
        self.busy_s = 0.0

    # lanes --------------------------------------------------------------------------
    def add(self, lane: Lane) -> None:
        with self._cond:
            if self._closed:
                raise RuntimeError("the engine is closed; create a new Engine to start sessions")
            self._lanes.append(weakref.ref(lane))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="streamer-scheduler", daemon=True)
                self._thread.start()
            self._work = True
            self._cond.notify_all()

    def remove(self, lane: Lane) -> None:
        with self._cond:
            self._lanes = [ref for ref in self._lanes if ref() is not None and ref() is not lane]

    def wake(self) -> None:
        """Tell the worker a lane may have become ready."""
        with self._cond:
            self._work = True
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    @property
    def mean_batch(self) -> float:
        return self.snippets / self.steps if self.steps else 0.0

    # worker -------------------------------------------------------------------------
    def _gather(self) -> list[tuple[Lane, Snippet, State]]:
        with self._cond:
            self._lanes = [ref for ref in self._lanes if ref() is not None]
            lanes = [lane for lane in (ref() for ref in self._lanes) if lane is not None]
            start = self._next % len(lanes) if lanes else 0
        batch: list[tuple[Lane, Snippet, State]] = []
        for offset in range(len(lanes)):
            lane = lanes[(start + offset) % len(lanes)]
            taken = lane.take_ready()
            if taken is not None:
                batch.append((lane, *taken))
                if self.max_batch is not None and len(batch) >= self.max_batch:
                    with self._cond:
                        self._next = start + offset + 1
                    break
        return batch

    def _run(self) -> None:
        torch.set_grad_enabled(False)
        while True:
            with self._cond:
                while not self._work and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                self._work = False
            batch = self._gather()
            if not batch:
                continue
            self._step_batch(batch)
            with self._cond:
                self._work = True  # lanes may hold more snippets

    def _step_batch(self, batch: list[tuple[Lane, Snippet, State]]) -> None:
        started = time.perf_counter()
        out_of_memory = False
        try:
            state = stack_states([rows for _, _, rows in batch])
            video = torch.from_numpy(np.stack([s.video for _, s, _ in batch])).to(self._device)
            audio = torch.from_numpy(np.stack([s.audio for _, s, _ in batch])).to(self._device)
            new_state = self._step(state, video, audio)
            scores = self._after_step([lane for lane, _, _ in batch], new_state) if self._after_step else None
            if self._device.type == "cuda":
                torch.cuda.synchronize(self._device)
        except Exception as error:  # hand the failure to each stream; the worker keeps serving others
            out_of_memory = isinstance(error, torch.OutOfMemoryError) and len(batch) > 1
            if not out_of_memory:
                for lane, _, _ in batch:
                    lane.fail_step(error)
                return
        if out_of_memory:  # retried outside the handler, so the failed call's tensors are freed first
            self._split(batch)
            return
        finished = time.perf_counter()
        info = StepInfo(batch_size=len(batch), step_ms=(finished - started) * 1e3, finished_at=finished)
        self.steps += 1
        self.snippets += len(batch)
        self.busy_s += finished - started
        for i, (lane, _, _) in enumerate(batch):
            row_info = info if scores is None else replace(info, scores=scores[i])
            lane.finish_step(new_state if len(batch) == 1 else row_of(new_state, i), row_info)

    def _split(self, batch: list[tuple[Lane, Snippet, State]]) -> None:
        """Step a batch that ran out of memory as two halves; the half bounds every later batch.
        The step is functional (the lanes' states are untouched by the failed call), so a retry is safe."""
        half = len(batch) // 2
        self.max_batch = half if self.max_batch is None else min(self.max_batch, half)
        self._step_batch(batch[:half])
        self._step_batch(batch[half:])
