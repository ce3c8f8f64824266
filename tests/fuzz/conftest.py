"""The fuzz suite's guard rails: a runaway allocation fails the example with a MemoryError
(which hypothesis then shrinks) instead of taking the machine's memory and the CI job with it."""

from __future__ import annotations

import resource
from pathlib import Path

import pytest

HEADROOM = 4 * 2**30  # bytes of address space a fuzz test may add to what the process already maps


def _mapped_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[0]) * resource.getpagesize()


@pytest.fixture(autouse=True)
def memory_cap():
    if not Path("/proc/self/statm").exists():  # not Linux: no cap, the hang guard still holds
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = _mapped_bytes() + HEADROOM
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
