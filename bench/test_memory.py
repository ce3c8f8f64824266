"""Memory against stream length, side by side in one run: the engine (TTM memory, windowed
latent model) against a full-history model built from the same parts and against re-running
the model over the whole history at each question (bench/memory.py runs each arm in a
process of its own and says how each is measured).

A sweep run once (`pedantic`, one round: its time is the whole sweep's); the measurements
are in `extra_info["arms"]`.
"""

from __future__ import annotations

import pytest

from bench.memory import ARMS, run_arm


@pytest.mark.timeout(7200)
def test_memory_against_stream_length(benchmark, sizes, device, threads, tmp_path):
    def sweep():
        return {arm: run_arm(arm, list(sizes.memory_minutes if arm == "engine" else sizes.baseline_minutes),
                             str(device), threads, tmp_path / f"{arm}.json", timeout_s=3600)
                for arm in ARMS}

    arms = benchmark.pedantic(sweep, rounds=1)
    benchmark.extra_info["arms"] = arms
    assert [row["minutes"] for row in arms["engine"]["rows"]] == sorted(sizes.memory_minutes)
    assert all(arms[arm]["rows"] for arm in ARMS)
