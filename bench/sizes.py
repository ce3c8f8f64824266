"""How much each benchmark runs, by name: `full` (`make bench`), `quick` (`make bench-quick`,
about two minutes) and `smoke` (CI, with benchmarks disabled: every code path once).

One table of sizes rather than sizes spread over the tests, so a run's results say exactly
what was measured (the name is stored with them) and the quick run stays quick.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sizes:
    name: str
    file_seconds: float  # the encoded camera-like file: end-to-end real-time factor, and the scale streams
    rtf_rounds: int  # times the file is streamed end to end
    step_rounds: int  # snippets stepped one by one for the step latency
    questions: int  # questions asked for the answer latency
    scale_seconds: float  # media seconds every concurrent stream plays
    scale_streams_cpu: tuple[int, ...]
    scale_streams_gpu: tuple[int, ...]
    memory_minutes: tuple[float, ...]  # stream lengths at which memory is read (the engine streams to the last)
    baseline_minutes: tuple[float, ...]  # where the baselines are probed (they fail early, so they start small)
    model_batches: tuple[int, ...] = (1, 4, 16, 64)
    watch_counts: tuple[int, ...] = (1000,)  # watches spread over 16 batched sessions (the target)
    cluster_streams: tuple[int, ...] = (2,)  # live streams on the in-process engine and on 1 and 2 cluster workers


SIZES = {
    "full": Sizes(
        name="full", file_seconds=60.0, rtf_rounds=3, step_rounds=300, questions=120, scale_seconds=30.0,
        scale_streams_cpu=(1, 2, 4, 8, 16, 24, 32, 40, 48, 64),
        scale_streams_gpu=(1, 4, 16, 64, 128, 256, 512, 768, 1024),
        memory_minutes=(1, 5, 15, 30, 60, 120, 240),
        baseline_minutes=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 15, 30, 60, 120, 240),
        cluster_streams=(1, 4, 8, 16),
    ),
    "quick": Sizes(
        name="quick", file_seconds=10.0, rtf_rounds=2, step_rounds=100, questions=40, scale_seconds=5.0,
        scale_streams_cpu=(1, 16, 32), scale_streams_gpu=(1, 64, 256),
        memory_minutes=(1, 5, 10), baseline_minutes=(0.05, 0.25, 1, 5, 10), cluster_streams=(1, 8),
    ),
    "smoke": Sizes(
        name="smoke", file_seconds=2.0, rtf_rounds=1, step_rounds=2, questions=2, scale_seconds=1.5,
        scale_streams_cpu=(2,), scale_streams_gpu=(2,),
        memory_minutes=(0.05, 0.1), baseline_minutes=(0.02, 0.05), model_batches=(1, 4),
    ),
}
