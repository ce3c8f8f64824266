"""The cluster's parts without Ray: placement, the inbox, the worker driven in process, the
front's share of a saved session, checkpoints that check themselves."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest

from streamer import Engine
from streamer.chunker import Chunker
from streamer.cluster.engine import ClusterConfig, rendezvous
from streamer.cluster.session import WorkerLost
from streamer.cluster.worker import Checkpoint, EngineWorker, SessionNotHeld, SnippetInbox, WorkerConfig
from streamer.state_io import split_front, with_front


def test_rendezvous_is_stable_spreads_and_moves_only_the_new_workers_share():
    names = [f"worker-{i}" for i in range(4)]
    keys = [f"session-{i}" for i in range(2000)]
    placed = {key: rendezvous(key, names) for key in keys}
    assert placed == {key: rendezvous(key, list(reversed(names))) for key in keys}, "order of workers is irrelevant"
    counts = [sum(1 for v in placed.values() if v == name) for name in names]
    assert min(counts) > 400, counts
    grown = {key: rendezvous(key, names + ["worker-4"]) for key in keys}
    moved = [key for key in keys if grown[key] != placed[key]]
    assert all(grown[key] == "worker-4" for key in moved) and 300 < len(moved) < 500
    with pytest.raises(WorkerLost, match="no worker"):
        rendezvous("x", [])


def test_cluster_config_refuses_nonsense():
    with pytest.raises(ValueError, match="at least one worker"):
        ClusterConfig(workers=0)
    with pytest.raises(ValueError, match="at least 1"):
        ClusterConfig(checkpoint_every=0)
    assert ClusterConfig.from_name("gpu").device == "cuda"
    with pytest.raises(ValueError, match="unknown cluster preset"):
        ClusterConfig.from_name("huge")


def test_inbox_hands_snippets_out_in_the_order_they_were_sent():
    inbox = SnippetInbox()
    got = []
    reader = threading.Thread(target=lambda: got.extend(inbox))
    reader.start()
    for seq in (2, 0, 3, 1):
        inbox.put(seq, f"snippet {seq}")
    with pytest.raises(ValueError, match="already sent"):
        inbox.put(1, "again")
    inbox.put(5, "after a gap")  # never handed out: 4 never came
    inbox.close()
    reader.join(5)
    assert got == [f"snippet {i}" for i in range(4)]


def test_checkpoint_knows_when_its_bytes_were_damaged():
    checkpoint = Checkpoint.of(3, 1.92, b"state bytes")
    assert checkpoint.intact()
    assert not replace(checkpoint, data=b"state bytez").intact()


@pytest.fixture(scope="module")
def worker():
    worker = EngineWorker(WorkerConfig("worker-0", device="cpu"))
    yield worker
    worker.shutdown()


def _snippets(worker, clip):
    return list(Chunker(worker.engine.media).snippets(clip.source()))


def test_worker_steps_answers_and_checkpoints_like_an_engine(worker, clips, reference):
    clip = clips[1]
    worker.open("a", None, 4, None)
    updates = [worker.step("a", seq, (s.index, s.t0, s.t1, s.video_filled, s.audio_filled), s.video, s.audio)
               for seq, s in enumerate(_snippets(worker, clip))]
    assert [u.index for u in updates] == list(range(len(updates)))
    assert all(u._state is None and u._owner is None for u in updates), "no tensors travel back"
    assert [worker.ask("a", q.text).text for q in clip.questions] == reference[1]
    checkpoint = worker.snapshot("a")
    assert checkpoint.intact() and checkpoint.steps == len(updates)
    worker.open("b", checkpoint.data, 4, None)  # the same state under another id answers the same
    assert [worker.ask("b", q.text).text for q in clip.questions] == reference[1]
    assert worker.held() == ["a", "b"] and worker.info()["sessions"] == 2
    final = worker.close_session("a", keep=True)
    assert final.steps == len(updates) and worker.held() == ["b"]
    with pytest.raises(SessionNotHeld, match="does not hold session a"):
        worker.ask("a", "what color is the circle?")
    worker.close_session("b")


def test_front_share_of_a_saved_session_travels_and_comes_back(clips):
    clip = clips[2]
    items = list(clip.source())
    with Engine.load(device="cpu") as engine:
        session = engine.session()
        list(session.stream(items[: len(items) // 2], flush=False))
        data = session.to_bytes()
        worker_bytes, chunker, pending = split_front(data, engine.media)
        assert pending == [] and chunker["pieces"], "the half cut mid-snippet: the tail is the front's"
        Chunker(engine.media).load_state_dict(chunker)
        whole = with_front(worker_bytes, chunker, pending)
        resumed = engine.restore_session(whole)
        assert resumed.steps == session.steps and resumed.t == session.t
        list(resumed.stream(items[len(items) // 2:]))
        list(session.stream(items[len(items) // 2:]))
        question = clip.questions[0].text
        assert resumed.ask(question).text == session.ask(question).text
