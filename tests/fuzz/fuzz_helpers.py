"""Shared parts of the fuzz suite: the hypothesis budget, a hang guard, and the checks every
property ends with (a sane result, or one of the documented errors)."""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from typing import TypeVar

import numpy as np
from hypothesis import HealthCheck, settings

from model.media import MediaSpec, Snippet

T = TypeVar("T")

# CI runs a small fixed budget, derandomized so a failure reproduces on every run;
# STREAMER_FUZZ_EXAMPLES=2000 (and STREAMER_FUZZ_RANDOM=1 for fresh seeds) fuzzes longer locally.
EXAMPLES = int(os.environ.get("STREAMER_FUZZ_EXAMPLES", "0")) or None
DERANDOMIZE = os.environ.get("STREAMER_FUZZ_RANDOM", "") != "1"
HANG_SECONDS = float(os.environ.get("STREAMER_FUZZ_HANG_S", "20"))


def budget(examples: int) -> settings:
    """Settings for one property: `examples` in CI, or the STREAMER_FUZZ_EXAMPLES override."""
    return settings(
        max_examples=EXAMPLES or examples,
        deadline=None,  # the hang guard bounds each example; a loaded CI machine must not flake on timing
        derandomize=DERANDOMIZE,
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                               HealthCheck.data_too_large],
    )


class Hung(AssertionError):
    """A call did not return within the hang guard."""


def within(call: Callable[[], T], seconds: float = HANG_SECONDS) -> T:
    """`call()` on a daemon thread: its result or its exception, or `Hung` if it never returns."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["result"] = call()
        except BaseException as exc:  # handed to the caller, who decides whether it is allowed
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="fuzz-call", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise Hung(f"the call did not return within {seconds:g} s")
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["result"]  # type: ignore[return-value]


def assert_clear_error(exc: BaseException, allowed: tuple[type[BaseException], ...]) -> None:
    """A documented error type with a message a user can act on."""
    assert isinstance(exc, allowed), f"{type(exc).__name__} is not one of {[a.__name__ for a in allowed]}: {exc!r}"
    assert str(exc).strip(), f"{type(exc).__name__} without a message"


def assert_sane_snippets(snippets: list[Snippet], spec: MediaSpec) -> None:
    """Snippets on the fixed grid, in order, with the spec's shapes and finite audio."""
    last_index = None
    for s in snippets:
        if last_index is not None:
            assert s.index > last_index, f"snippet index went from {last_index} to {s.index}"
        last_index = s.index
        assert math.isfinite(s.t0) and math.isfinite(s.t1), (s.t0, s.t1)
        assert s.t1 > s.t0
        slack = 1e-6 + 8 * math.ulp(abs(s.t1))  # stamps near 2**32 s keep only microseconds
        assert abs(s.t1 - s.t0 - spec.snippet_seconds) <= slack, (s.t0, s.t1)
        assert s.video.dtype == np.uint8
        assert s.video.shape == (spec.frames_per_snippet, spec.height, spec.width, 3), s.video.shape
        assert s.audio.dtype == np.float32 and s.audio.shape == (spec.samples_per_snippet,), s.audio.shape
        assert np.isfinite(s.audio).all(), "non-finite audio samples in a snippet"
    times = [s.t0 for s in snippets]
    assert times == sorted(times) and len(set(times)) == len(times), "snippet times are not increasing"
