"""Small measuring helpers the benchmarks share: percentiles, process and state memory, device sync."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import numpy as np
import torch

from model.state import State

PERCENTILES = (50, 95, 99)


def percentiles(samples: Iterable[float], qs: tuple[int, ...] = PERCENTILES) -> dict[str, float]:
    """{"p50": ..., "p95": ..., "p99": ...} (numpy's linear interpolation); empty for no samples."""
    values = np.asarray(list(samples), dtype=np.float64)
    if values.size == 0:
        return {}
    return {f"p{q}": float(v) for q, v in zip(qs, np.percentile(values, qs))}


def rss_bytes() -> int:
    """Resident set size of this process, from /proc (Linux)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except FileNotFoundError:
        pass
    raise RuntimeError("the memory benchmark reads VmRSS from /proc/self/status, which only Linux has")


def available_bytes() -> int:
    """Memory the kernel says can still be allocated without swapping (MemAvailable)."""
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no MemAvailable in /proc/meminfo (Linux only)")


def free_bytes_on(device: torch.device) -> int:
    """Memory still free where a baseline's history lives: the GPU's, or the machine's."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return available_bytes()


def state_bytes(state: State) -> int:
    return sum(tensor.numel() * tensor.element_size() for tensor in state.values())


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so a timer measures it and not just its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_ms(fn: Callable[[], object], device: torch.device) -> float:
    """Wall milliseconds of one call, including the GPU work it queued."""
    started = time.perf_counter()
    fn()
    synchronize(device)
    return (time.perf_counter() - started) * 1e3
