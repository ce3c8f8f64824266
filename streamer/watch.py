"""Standing queries and the moment index: what a session is told, and what it can look up.

Both live in the model's alignment space (model/align.py): a snippet and a phrase are unit
vectors, and their score is a cosine similarity in [-1, 1].

- A `Watch` fires an `Event` when its phrase's score crosses its threshold, then stays
  quiet until the score has fallen `REARM_GAP` below the threshold again (hysteresis), so
  one appearance is one event even when the score wavers around the threshold.
- `WatchTable` holds the watches of every session of an engine as one matrix, so each
  batched step scores all of them in one matrix product.
- `SnippetIndex` keeps every stepped snippet's vector and times in a bounded ring and
  answers `search` with spans of neighbouring snippets.
"""

from __future__ import annotations

import math
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

REARM_GAP = 0.1  # a fired watch re-arms once its score is this far below the threshold
SPAN_MARGIN = 0.05  # a span grows over neighbours scoring at least min(threshold, peak) - this
DEFAULT_INDEX_HOURS = 4.0  # stream hours a session's index holds by default
INDEX_DTYPE = np.float16  # vectors are unit length: half precision keeps ~3 decimals of the score


@dataclass(frozen=True)
class Event:
    """A watch fired: its phrase scored `score` on snippet `index` ([t0, t1) stream seconds)."""

    watch: int
    phrase: str
    index: int
    t0: float
    t1: float
    score: float
    checked: bool = False  # the watch's check question confirmed it (see `Watch.check`)

    def to_dict(self) -> dict[str, Any]:
        return {"watch": self.watch, "phrase": self.phrase, "index": self.index, "t0": round(self.t0, 3),
                "t1": round(self.t1, 3), "score": round(self.score, 4), "checked": self.checked}


@dataclass(frozen=True)
class Moment:
    """A span of neighbouring snippets that matches a search: [start, end) stream seconds,
    snippets `first`..`last`, scored by its best snippet."""

    start: float
    end: float
    score: float
    first: int
    last: int

    def to_dict(self) -> dict[str, Any]:
        return {"start": round(self.start, 3), "end": round(self.end, 3), "score": round(self.score, 4),
                "first": self.first, "last": self.last}


@dataclass(eq=False)
class Watch:
    """A standing query of one session. `check`, when given, is a (question, expected answer)
    pair asked through the decoder when the score crosses: the event fires only if the answer
    matches, trading a little latency for precision. A crossing whose check says no still
    disarms the watch, so one appearance costs at most one check."""

    phrase: str
    threshold: float
    vector: torch.Tensor = field(repr=False)  # [dim] unit vector of the phrase
    check: tuple[str, str] | None = None
    id: int = 0  # numbered by its session from 1
    armed: bool = True
    fired: int = 0  # events so far

    def update(self, score: float) -> bool:
        """Feed one snippet's score; True when it fires (crossing up while armed)."""
        if self.armed and score >= self.threshold:
            self.armed = False
            return True
        if not self.armed and score < self.threshold - REARM_GAP:
            self.armed = True
        return False

    def to_dict(self) -> dict[str, Any]:
        """What a saved session keeps of the watch (the vector is recomputed from the phrase)."""
        return {"id": self.id, "phrase": self.phrase, "threshold": self.threshold,
                "check": list(self.check) if self.check else None, "armed": self.armed, "fired": self.fired}


def fire_indices(scores: np.ndarray, threshold: float) -> list[int]:
    """Where a fresh watch would fire along a run of snippet scores (the same rule as `Watch.update`)."""
    watch = Watch("", threshold, torch.zeros(0))
    return [i for i, s in enumerate(scores.tolist()) if watch.update(s)]


@dataclass(frozen=True)
class SnippetScores:
    """What the scheduler hands a session after a step: its snippet's vector [dim] and the
    scores of its watches, computed for the watch set's `version` (stale if it changed since)."""

    vector: np.ndarray
    scores: np.ndarray
    version: int


class WatchSet:
    """One session's watches with thresholds and armed flags as arrays, so a step's hysteresis
    over thousands of watches is a few numpy operations, not a loop over Watch objects (which
    are brought up to date only where a flag flipped). `version` changes with every add and
    remove; its matrix is built when first needed after one."""

    def __init__(self, dim: int, lock: threading.Lock | None = None, on_change=None) -> None:
        self.dim = dim
        self.watches: list[Watch] = []  # rows in order
        self._by_id: dict[int, Watch] = {}
        self.version = 0
        self._lock = lock or threading.Lock()  # the table's, so it always reads a consistent set
        self._on_change = on_change
        self._thresholds = np.zeros(0, np.float64)
        self._armed = np.zeros(0, bool)
        self._matrix: torch.Tensor | None = torch.zeros(0, dim)

    def __len__(self) -> int:
        return len(self.watches)

    def find(self, watch_id: int) -> Watch | None:
        return self._by_id.get(watch_id)

    def holds(self, watch: Watch) -> bool:
        return self._by_id.get(watch.id) is watch

    def add(self, watches: list[Watch]) -> None:
        with self._lock:
            self.watches.extend(watches)
            self._by_id.update((w.id, w) for w in watches)
            self._thresholds = np.concatenate((self._thresholds, [w.threshold for w in watches]))
            self._armed = np.concatenate((self._armed, np.array([w.armed for w in watches], bool)))
            self._changed()

    def remove(self, watch: Watch) -> None:
        with self._lock:
            row = next(i for i, w in enumerate(self.watches) if w is watch)
            del self.watches[row]
            del self._by_id[watch.id]
            self._thresholds = np.delete(self._thresholds, row)
            self._armed = np.delete(self._armed, row)
            self._changed()

    def _changed(self) -> None:
        self.version += 1
        self._matrix = None
        if self._on_change is not None:
            self._on_change()

    def matrix(self) -> tuple[torch.Tensor, int]:
        """The phrase vectors [n, dim] (float32, CPU) and the version they belong to."""
        with self._lock:
            if self._matrix is None:
                self._matrix = (torch.stack([w.vector.float().cpu() for w in self.watches]) if self.watches
                                else torch.zeros(0, self.dim))
            return self._matrix, self.version

    def scores_for(self, scored: SnippetScores) -> np.ndarray:
        """`scored.scores` if they belong to the current watches, else computed here (a watch
        was added or removed between the step's product and this call)."""
        if scored.version == self.version:
            return scored.scores
        matrix, _ = self.matrix()
        return (matrix @ torch.from_numpy(np.asarray(scored.vector, np.float32))).numpy()

    def fire(self, scores: np.ndarray) -> list[tuple[Watch, float]]:
        """Hysteresis of every watch at once (the rule of `Watch.update`): the watches that fire
        on this snippet, with their scores."""
        if not self.watches:
            return []
        scores = np.asarray(scores, np.float64)
        armed, thresholds = self._armed, self._thresholds
        firing = armed & (scores >= thresholds)
        rearming = ~armed & (scores < thresholds - REARM_GAP)
        if not (firing.any() or rearming.any()):
            return []
        armed[firing], armed[rearming] = False, True
        for row in np.flatnonzero(rearming):
            self.watches[row].armed = True
        fired = []
        for row in np.flatnonzero(firing):
            watch = self.watches[row]
            watch.armed = False
            fired.append((watch, float(scores[row])))
        return fired


class WatchTable:
    """Every watch of every session of an engine: each batched step's snippet vectors [B, dim]
    times one matrix of all watches gives all scores in one product. Each session has a
    `WatchSet` here; a session that closes (or is collected) leaves the table."""

    def __init__(self, dim: int, device: torch.device | str = "cpu") -> None:
        self.dim = dim
        self.device = torch.device(device)
        self._lock = threading.Lock()
        self._sets: dict[int, WatchSet] = {}  # by id(owner); dropped before the owner's id can be reused
        self._matrix: torch.Tensor | None = None
        self._columns: dict[int, tuple[slice, int]] = {}  # id(owner) -> its rows and their version

    def watch_set(self, owner: object) -> WatchSet:
        """A new, empty set of watches scored for `owner` (a session)."""
        watches = WatchSet(self.dim, self._lock, self._invalidate)
        with self._lock:
            self._sets[id(owner)] = watches
            self._matrix = None
        weakref.finalize(owner, self._forget, id(owner), watches)
        return watches

    def drop(self, owner: object) -> None:
        """Stop scoring `owner`'s watches (a closing session; the set itself stays with it)."""
        with self._lock:
            if self._sets.pop(id(owner), None) is not None:
                self._matrix = None

    def _forget(self, key: int, watches: WatchSet) -> None:
        with self._lock:
            if self._sets.get(key) is watches:
                del self._sets[key]
                self._matrix = None

    def _invalidate(self) -> None:  # called with the lock held, by a set that changed
        self._matrix = None

    def __len__(self) -> int:
        with self._lock:
            return sum(len(s) for s in self._sets.values())

    def score(self, owners: list[object], vectors: torch.Tensor) -> list[SnippetScores]:
        """Row b's vector and the scores of owners[b]'s watches: `vectors` [B, dim] are the
        snippets just stepped. One matrix product over all watches of all sessions."""
        with self._lock:
            if self._matrix is None:
                self._rebuild()
            matrix, columns = self._matrix, self._columns
        rows = vectors.float()
        scores = (rows @ matrix.T).cpu().numpy() if matrix.shape[0] else None  # [B, W]
        rows = rows.cpu().numpy()
        empty = np.zeros(0, np.float32)
        out = []
        for b, owner in enumerate(owners):
            column = columns.get(id(owner))
            if column is None or scores is None:
                out.append(SnippetScores(rows[b], empty, -1))
            else:
                out.append(SnippetScores(rows[b], scores[b, column[0]], column[1]))
        return out

    def _rebuild(self) -> None:  # with the lock held
        parts, columns, start = [], {}, 0
        for key, watches in self._sets.items():
            if not watches.watches:
                continue
            if watches._matrix is None:
                watches._matrix = torch.stack([w.vector.float().cpu() for w in watches.watches])
            parts.append(watches._matrix)
            columns[key] = (slice(start, start + len(watches.watches)), watches.version)
            start += len(watches.watches)
        self._matrix = (torch.cat(parts) if parts else torch.zeros(0, self.dim)).to(self.device)
        self._columns = columns


class SnippetIndex:
    """A ring of the last `capacity` stepped snippets of one stream: vector (float16), snippet
    index and times. 2·dim + 24 bytes a snippet (152 B for dim 64); storage grows by doubling,
    so a short stream never holds the full ring."""

    def __init__(self, dim: int, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"the moment index needs room for at least one snippet, got capacity {capacity}")
        self.dim = dim
        self.capacity = capacity
        self._vectors = np.zeros((0, dim), INDEX_DTYPE)
        self._index = np.zeros(0, np.int64)
        self._times = np.zeros((0, 2), np.float64)
        self._count = 0  # snippets ever added; the ring holds the last min(count, capacity)

    @staticmethod
    def bytes_per_snippet(dim: int) -> int:
        return dim * np.dtype(INDEX_DTYPE).itemsize + 8 + 16

    @property
    def nbytes(self) -> int:
        return self._vectors.nbytes + self._index.nbytes + self._times.nbytes

    def __len__(self) -> int:
        return min(self._count, self.capacity)

    def add(self, vector: np.ndarray, index: int, t0: float, t1: float) -> None:
        slot = self._count % self.capacity
        if slot >= len(self._index):
            self._grow()
        self._vectors[slot] = vector
        self._index[slot] = index
        self._times[slot] = (t0, t1)
        self._count += 1

    def _grow(self) -> None:
        size = min(self.capacity, max(64, 2 * len(self._index)))
        self._vectors = np.concatenate((self._vectors, np.zeros((size - len(self._vectors), self.dim), INDEX_DTYPE)))
        self._index = np.concatenate((self._index, np.zeros(size - len(self._index), np.int64)))
        self._times = np.concatenate((self._times, np.zeros((size - len(self._times), 2), np.float64)))

    def ordered(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Copies of the vectors, indices and times, oldest first (search them without holding
        whatever guards the index)."""
        n = len(self)
        if self._count <= self.capacity:
            order = np.arange(n)
        else:
            order = (np.arange(n) + self._count) % self.capacity
        return self._vectors[order], self._index[order], self._times[order]

    def search(self, query: np.ndarray, k: int, threshold: float) -> list[Moment]:
        """The `k` best spans for a phrase vector `query` [dim], best first."""
        return search_spans(*self.ordered(), query, k, threshold)

    def state_dict(self) -> dict[str, Any]:
        vectors, indices, times = self.ordered()
        return {"dim": self.dim, "capacity": self.capacity, "vectors": vectors, "index": indices, "times": times}

    @classmethod
    def from_state_dict(cls, data: dict[str, Any], capacity: int | None = None) -> SnippetIndex:
        """Rebuild a saved index (into `capacity` if given: the newest snippets are kept)."""
        try:
            dim = int(data["dim"])
            vectors = np.asarray(data["vectors"], INDEX_DTYPE)
            indices = np.asarray(data["index"], np.int64)
            times = np.asarray(data["times"], np.float64)
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"the saved moment index is malformed ({err})") from None
        n = len(indices)
        if vectors.shape != (n, dim) or times.shape != (n, 2) or not np.isfinite(times).all():
            raise ValueError("the saved moment index is malformed (its arrays do not agree)")
        index = cls(dim, capacity or int(data.get("capacity", max(n, 1))))
        keep = slice(max(0, n - index.capacity), n)
        for vector, i, (t0, t1) in zip(vectors[keep], indices[keep], times[keep]):
            index.add(vector, int(i), float(t0), float(t1))
        return index


def search_spans(vectors: np.ndarray, indices: np.ndarray, times: np.ndarray, query: np.ndarray, k: int,
                 threshold: float) -> list[Moment]:
    """The `k` best spans of an index's contents (`SnippetIndex.ordered`) for `query` [dim]."""
    if k < 1:
        raise ValueError(f"search needs k >= 1 moments, got {k}")
    if not len(indices):
        return []
    scores = vectors.astype(np.float32) @ np.asarray(query, np.float32)
    return [Moment(float(times[a, 0]), float(times[b - 1, 1]), peak, int(indices[a]), int(indices[b - 1]))
            for a, b, peak in top_spans(scores, indices, k, threshold)]


def top_spans(scores: np.ndarray, indices: np.ndarray, k: int, threshold: float) -> list[tuple[int, int, float]]:
    """Up to `k` spans [a, b) of positions in time order, best peak first. A span grows from
    its peak over consecutive snippets (indices one apart) that score at least
    min(threshold, peak) - SPAN_MARGIN and belong to no better span."""
    order = np.argsort(-scores, kind="stable")
    used = np.zeros(len(scores), bool)
    spans = []
    for peak_at in order:
        if len(spans) >= k:
            break
        if used[peak_at]:
            continue
        peak = float(scores[peak_at])
        floor = min(threshold, peak) - SPAN_MARGIN
        a = b = int(peak_at)
        while a > 0 and not used[a - 1] and indices[a - 1] == indices[a] - 1 and scores[a - 1] >= floor:
            a -= 1
        while b + 1 < len(scores) and not used[b + 1] and indices[b + 1] == indices[b] + 1 and scores[b + 1] >= floor:
            b += 1
        used[a:b + 1] = True
        spans.append((a, b + 1, peak))
    return spans


def index_capacity(hours: float, snippet_seconds: float) -> int:
    """Snippets in `hours` of stream."""
    if not (hours > 0 and math.isfinite(hours)):
        raise ValueError(f"the moment index holds a positive number of hours, got {hours}")
    return max(1, math.ceil(hours * 3600 / snippet_seconds))
