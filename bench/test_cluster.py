"""The cluster engine against the in-process one, in the same run (ratios), on a local Ray cluster.

- overhead: world clips streamed offline one after another, and questions asked, through an
  in-process `Engine` and through `streamer.connect` with one worker: milliseconds per
  snippet and per answer, and their ratio;
- live streams: `bench/concurrent.py`'s sweep (real-time world clips, questions meanwhile)
  on the in-process engine and on clusters of 1 and 2 workers;
- restore: a worker killed while sessions stream; the time until each session continues.

Skipped without Ray (`pip install 'streamer[cluster]'`). On one machine the workers share
its cores with the front, so these figures say what the cluster costs, not what more
machines would add.
"""

from __future__ import annotations

import os
import signal
import statistics
import threading
import time

import pytest

from bench.concurrent import run_streams
from bench.feeds import LoopedClip
from streamer.engine import Engine

ray = pytest.importorskip("ray", reason="the cluster benchmarks need Ray (pip install 'streamer[cluster]')")

from streamer.cluster import ClusterConfig, ClusterEngine  # noqa: E402
from streamer.cluster.local import LocalCluster  # noqa: E402

pytestmark = pytest.mark.timeout(1800)


class _Cluster:
    """A local Ray cluster with `workers` engine workers, torch `threads` each."""

    def __init__(self, workers: int, threads: int, **overrides) -> None:
        self.local = LocalCluster(num_cpus=max(4, workers + 2))
        try:
            ray.init(address=self.local.address, namespace="streamer", log_to_driver=False)
            self.engine = ClusterEngine(ClusterConfig(workers=workers, threads_per_worker=threads, **overrides))
        except BaseException:
            ray.shutdown()
            self.local.close()
            raise

    def close(self) -> None:
        self.engine.close()
        ray.shutdown()
        self.local.close()


def _offline_costs(engine, clips) -> dict:
    """Per snippet and per answer wall time of clips streamed one after another."""
    snippets, stream_s, answers_ms = 0, 0.0, []
    for clip in clips:
        session = engine.session()
        started = time.perf_counter()
        snippets += sum(1 for _ in session.stream(clip.source()))
        stream_s += time.perf_counter() - started
        for question in clip.questions:
            started = time.perf_counter()
            session.ask(question.text)
            answers_ms.append((time.perf_counter() - started) * 1e3)
        session.close()
    return {"ms_per_snippet": stream_s * 1e3 / snippets, "answer_ms_median": statistics.median(answers_ms),
            "snippets": snippets, "answers": len(answers_ms)}


def test_cluster_overhead(benchmark, bundled_model, world_clips, threads):
    """One session at a time, so the figures are per-call costs rather than batching gains."""
    cluster = _Cluster(1, threads)
    try:
        _offline_costs(cluster.engine, world_clips[:1])  # warm both paths up
        with Engine(bundled_model) as engine:
            _offline_costs(engine, world_clips[:1])
            in_process = _offline_costs(engine, world_clips)
        on_cluster = benchmark.pedantic(_offline_costs, args=(cluster.engine, world_clips), rounds=1)
    finally:
        cluster.close()
    benchmark.extra_info.update(
        in_process=in_process, cluster=on_cluster,
        step_ratio=on_cluster["ms_per_snippet"] / in_process["ms_per_snippet"],
        answer_ratio=on_cluster["answer_ms_median"] / in_process["answer_ms_median"],
        step_overhead_ms=on_cluster["ms_per_snippet"] - in_process["ms_per_snippet"],
        answer_overhead_ms=on_cluster["answer_ms_median"] - in_process["answer_ms_median"])


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "live_streams" in metafunc.fixturenames:
        from bench.sizes import SIZES

        counts = SIZES[metafunc.config.getoption("--bench-size")].cluster_streams
        metafunc.parametrize("live_streams", counts, ids=[f"streams{n}" for n in counts])
        metafunc.parametrize("where", ["in-process", "workers1", "workers2"])


def test_cluster_live_streams(benchmark, where, live_streams, bundled_model, world_clips, sizes, threads):
    """`run_streams` as in test_scale, on world clips (no decoding: the front's decoding would
    dominate on 2 cores), so the in-process and cluster figures differ only by the cluster."""
    sources = [lambda i=i: LoopedClip(world_clips[i % len(world_clips)], sizes.scale_seconds, realtime=True)
               for i in range(live_streams)]
    if where == "in-process":
        with Engine(bundled_model) as engine:
            result = benchmark.pedantic(run_streams, args=(engine, sources), rounds=1)
    else:
        cluster = _Cluster(int(where.removeprefix("workers")), threads)
        try:
            result = benchmark.pedantic(run_streams, args=(cluster.engine, sources), rounds=1)
        finally:
            cluster.close()
    benchmark.extra_info.update(where=where, **result)
    assert result["streams"] == live_streams and result["dropped"] == 0


def test_cluster_restore(benchmark, world_clips, sizes, threads):
    """Four sessions stream on two workers; one worker's process is killed with SIGKILL. Timed:
    the restore of each session that lived there (reopen from its checkpoint on the other worker
    and replay the snippets since)."""
    cluster = _Cluster(2, threads, checkpoint_every=8)
    try:
        sessions = [cluster.engine.session() for _ in range(4)]
        victim = sessions[0].worker
        pid = cluster.engine.worker_pid(victim)

        def run(i: int) -> None:
            for n, _ in enumerate(sessions[i].stream(LoopedClip(world_clips[i], sizes.scale_seconds))):
                if i == 0 and n == 1:
                    os.kill(pid, signal.SIGKILL)

        def trial() -> list:
            threads_ = [threading.Thread(target=run, args=(i,)) for i in range(len(sessions))]
            for thread in threads_:
                thread.start()
            for thread in threads_:
                thread.join()
            return [r for s in sessions for r in s.restores]

        restores = benchmark.pedantic(trial, rounds=1)
    finally:
        cluster.close()
    assert restores and all(r.lost_s == 0.0 for r in restores)
    benchmark.extra_info.update(restores=len(restores), took_s=[round(r.took_s, 3) for r in restores],
                                replayed=[r.replayed for r in restores])
