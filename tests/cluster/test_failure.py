"""A worker process killed mid-stream: its sessions continue elsewhere with nothing lost, the
other worker's sessions never notice, and no Ray process outlives the cluster."""

from __future__ import annotations

import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from ray_cluster import start_cluster

from streamer.cluster import Restore

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
ray = pytest.importorskip("ray", reason="the cluster mode needs Ray (pip install 'streamer[cluster]')")


def test_a_killed_worker_loses_nothing_and_the_other_is_unaffected(clips, reference):
    local, cluster = start_cluster(checkpoint_every=3)
    try:
        sessions = [cluster.session() for _ in range(6)]
        placed = [s.worker for s in sessions]
        victim = placed[0]
        assert len(set(placed)) == 2
        pid = cluster.worker_pid(victim)
        go = threading.Event()

        def run(i):
            updates = []
            for update in sessions[i].stream(clips[i].source()):
                updates.append(update)
                if i == 0 and len(updates) == 2:
                    os.kill(pid, signal.SIGKILL)
                    go.set()
            return updates, [sessions[i].ask(q.text).text for q in clips[i].questions]

        with ThreadPoolExecutor(len(sessions)) as pool:
            results = list(pool.map(run, range(len(sessions))))
        assert go.is_set()
        for i, (session, (updates, said)) in enumerate(zip(sessions, results)):
            assert said == reference[i], f"session {i} on {session.worker}"
            assert [u.index for u in updates] == list(range(len(updates))), "nothing lost, nothing repeated"
            restored = [u.restored for u in updates if u.restored is not None]
            if placed[i] == victim:
                assert len(session.restores) == 1 and isinstance(session.restores[0], Restore)
                assert session.restores[0].from_worker == victim
                assert session.restores[0].lost_s == 0.0 and session.restores[0].replayed <= 3
                assert restored in ([], session.restores), "a restore during the stream is told on the next update"
            else:
                assert session.restores == [] and restored == [], "the other worker's sessions are not touched"
        for session in sessions:
            session.close()
    finally:
        cluster.close()
        ray.shutdown()
        local.close()
    assert local.processes() == []
