"""The primitives of standing queries and moment search, on hand-built scores and vectors:
hysteresis (one event per appearance), the batched scoring of every session's watches, the
bounded moment index and its spans, and the event feed a reader drains from any thread."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from streamer.events import EventFeed
from streamer.watch import (REARM_GAP, Event, SnippetIndex, Watch, WatchSet, WatchTable, fire_indices,
                            index_capacity, top_spans)

DIM = 64

# A hand-built timeline of one phrase's score per snippet, threshold 0.5: it appears at
# snippet 2 (wavering around the threshold, but never clearly below it), is gone by 7,
# and appears again at 9; snippet 12 comes back without having gone clearly away.
TIMELINE = [0.1, 0.3, 0.62, 0.48, 0.55, 0.45, 0.6, 0.2, 0.35, 0.71, 0.7, 0.42, 0.58, 0.1]
APPEARANCES = [2, 9]


def _unit(rows: int, seed: int = 0) -> torch.Tensor:
    return F.normalize(torch.randn(rows, DIM, generator=torch.Generator().manual_seed(seed)), dim=-1)


class Owner:
    """Stands for a session: anything the table can hold a weak reference to."""


def _event(i: int) -> Event:
    return Event(watch=1, phrase="drum", index=i, t0=i * 0.64, t1=(i + 1) * 0.64, score=0.6)


def test_a_watch_fires_once_per_appearance_on_a_hand_built_timeline():
    assert fire_indices(np.array(TIMELINE), 0.5) == APPEARANCES
    watch = Watch("drum", 0.5, torch.zeros(DIM))
    assert [i for i, s in enumerate(TIMELINE) if watch.update(s)] == APPEARANCES
    # the score must fall REARM_GAP below the threshold before the watch fires again
    assert fire_indices(np.array([0.6, 0.5 - REARM_GAP + 1e-3, 0.6, 0.5 - REARM_GAP - 1e-3, 0.6]), 0.5) == [0, 4]


def test_the_vectorised_hysteresis_of_a_watch_set_is_the_rule_of_one_watch():
    """WatchSet.fire runs all watches at once; each must fire exactly where Watch.update would."""
    rng = np.random.default_rng(1)
    thresholds = [0.2, 0.35, 0.5, 0.5, 0.65, 0.8]
    watches = [Watch(f"phrase {i}", t, torch.zeros(DIM), id=i + 1) for i, t in enumerate(thresholds)]
    watch_set = WatchSet(DIM)
    watch_set.add(watches)
    waves = 0.5 + 0.4 * np.sin(np.arange(200)[:, None] / 6 + np.arange(len(watches)))  # slow swings...
    timeline = waves + rng.normal(0, 0.06, waves.shape)  # ...that waver around each threshold
    fired = {w.id: [] for w in watches}
    for step, scores in enumerate(timeline):
        for watch, score in watch_set.fire(scores):
            assert score == scores[watch.id - 1]
            fired[watch.id].append(step)
    for i, watch in enumerate(watches):
        assert fired[watch.id] == fire_indices(timeline[:, i], thresholds[i]), watch
        assert fired[watch.id], "every threshold is crossed"
    # the Watch objects' flags follow the arrays (what a saved session writes)
    for i, watch in enumerate(watches):
        mirror = Watch("", thresholds[i], torch.zeros(0))
        for s in timeline[:, i]:
            mirror.update(s)
        assert watch.armed == mirror.armed


def test_the_table_scores_every_session_in_one_product_and_a_stale_score_is_redone():
    table = WatchTable(DIM)
    owners = [Owner(), Owner(), Owner()]  # the third has no watches
    sets = [table.watch_set(owner) for owner in owners]
    phrases = _unit(7, seed=2)
    sets[0].add([Watch(f"a{i}", 0.5, phrases[i], id=i + 1) for i in range(4)])
    sets[1].add([Watch(f"b{i}", 0.5, phrases[4 + i], id=i + 1) for i in range(3)])
    assert len(table) == 7
    snippets = _unit(3, seed=3)
    scored = table.score(owners, snippets)
    np.testing.assert_allclose(scored[0].scores, (snippets[0] @ phrases[:4].T).numpy(), atol=1e-6)
    np.testing.assert_allclose(scored[1].scores, (snippets[1] @ phrases[4:].T).numpy(), atol=1e-6)
    assert scored[2].scores.shape == (0,)
    np.testing.assert_allclose(scored[2].vector, snippets[2].numpy())
    assert all(sets[i].scores_for(scored[i]) is scored[i].scores for i in range(2))
    # a watch added between the product and the hysteresis: the scores are recomputed for the new set
    sets[0].add([Watch("late", 0.5, phrases[6], id=5)])
    redone = sets[0].scores_for(scored[0])
    np.testing.assert_allclose(redone, (snippets[0] @ torch.cat([phrases[:4], phrases[6:]]).T).numpy(), atol=1e-6)
    sets[0].remove(sets[0].find(2))
    assert [w.id for w in sets[0].watches] == [1, 3, 4, 5] and sets[0].find(2) is None
    table.drop(owners[1])
    assert len(table) == 4 and table.score(owners[1:2], snippets[1:2])[0].scores.shape == (0,)


def test_a_collected_owner_leaves_the_table():
    """Owners are keyed by id(): a session dropped without close() must not leave its watches to
    whatever object gets its id next."""
    table = WatchTable(DIM)
    owner = Owner()
    table.watch_set(owner).add([Watch("drum", 0.5, _unit(1)[0], id=1)])
    assert len(table) == 1
    del owner
    assert len(table) == 0


def test_search_finds_a_planted_snippet_and_spans_merge_neighbours():
    index = SnippetIndex(DIM, capacity=1000)
    background = _unit(300, seed=4)
    planted = _unit(1, seed=5)[0]
    for i, vector in enumerate(background):
        if i in (120, 121, 122):  # the event lasts three snippets
            vector = F.normalize(planted + 0.05 * vector, dim=0)
        index.add(vector.numpy(), i, i * 0.64, (i + 1) * 0.64)
    (best, *_rest) = index.search(planted.numpy(), k=3, threshold=0.5)
    assert (best.first, best.last) == (120, 122)
    assert best.start == pytest.approx(120 * 0.64) and best.end == pytest.approx(123 * 0.64)
    assert best.score > 0.99
    assert all(m.score < 0.5 for m in _rest) and len(_rest) == 2
    # spans never merge across a gap in the indices (snippets dropped by a live source)
    assert top_spans(np.array([0.9, 0.9, 0.9]), np.array([4, 5, 7]), 5, 0.5) == [(0, 2, 0.9), (2, 3, 0.9)]
    with pytest.raises(ValueError, match="k >= 1"):
        index.search(planted.numpy(), k=0, threshold=0.5)


def test_the_index_is_a_bounded_ring_of_at_most_2_kb_a_snippet():
    capacity, n = 500, 1300
    index = SnippetIndex(DIM, capacity)
    vectors = _unit(n, seed=6).numpy()
    for i in range(n):
        index.add(vectors[i], i, float(i), i + 1.0)
        if i == 99:
            assert index.nbytes / 100 <= 2048  # storage grows with the stream, not to the whole ring at once
    assert len(index) == capacity
    assert SnippetIndex.bytes_per_snippet(DIM) == 152 <= 2048
    assert index.nbytes == capacity * SnippetIndex.bytes_per_snippet(DIM)
    kept, indices, times = index.ordered()
    np.testing.assert_array_equal(indices, np.arange(n - capacity, n))  # the newest, oldest first
    np.testing.assert_allclose(kept, vectors[n - capacity:], atol=2e-3)  # float16
    np.testing.assert_array_equal(times[:, 0], np.arange(n - capacity, n))
    back = SnippetIndex.from_state_dict(index.state_dict())
    assert back.capacity == capacity and all(np.array_equal(a, b) for a, b in zip(back.ordered(), index.ordered()))
    smaller = SnippetIndex.from_state_dict(index.state_dict(), capacity=10)
    np.testing.assert_array_equal(smaller.ordered()[1], np.arange(n - 10, n))
    assert index_capacity(4.0, 0.64) == 22500
    with pytest.raises(ValueError, match="positive number of hours"):
        index_capacity(0, 0.64)


def test_the_event_feed_is_bounded_and_never_blocks_the_writer():
    feed = EventFeed(maxsize=3)
    started = time.perf_counter()
    for i in range(10):
        feed.put(_event(i))
    assert time.perf_counter() - started < 0.1
    assert feed.dropped == 7 and [e.index for e in feed.drain()] == [7, 8, 9]
    assert feed.get(timeout=0.01) is None
    threading.Timer(0.05, feed.put, args=(_event(11),)).start()
    assert feed.get(timeout=5).index == 11
    feed.put(_event(12))
    feed.close()
    assert [e.index for e in feed] == [12]  # what was buffered, then the end
    feed.put(_event(13))  # a closed feed ignores late events
    assert feed.drain() == []


def test_the_event_feed_wakes_an_asyncio_reader_from_another_thread():
    feed = EventFeed()

    def writer() -> None:
        for i in range(5):
            time.sleep(0.01)
            feed.put(_event(i))
        feed.close()

    async def read() -> list[int]:
        threading.Thread(target=writer).start()
        return [event.index async for event in feed]

    assert asyncio.run(asyncio.wait_for(read(), 10)) == [0, 1, 2, 3, 4]
