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

import itertools
import math
import threading
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


_WATCH_IDS = itertools.count(1)


@dataclass(eq=False)
class Watch:
    """A standing query of one session. `check`, when given, is a (question, expected answer)
    pair asked through the decoder when the score crosses: the event fires only if the answer
    matches, trading a little latency for precision."""

    phrase: str
    threshold: float
    vector: torch.Tensor  # [dim] unit vector of the phrase
    check: tuple[str, str] | None = None
    id: int = field(default_factory=lambda: next(_WATCH_IDS))
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


class WatchTable:
    """Every watch of every session as rows of one matrix, grouped by session: a batched step's
    snippet vectors [B, dim] times the matrix gives all scores in one product."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._lock = threading.Lock()
        self._by_owner: dict[int, list[Watch]] = {}
        self._matrix: torch.Tensor | None = None
        self._columns: dict[int, slice] = {}

    def add(self, owner: object, watch: Watch) -> None:
        with self._lock:
            self._by_owner.setdefault(id(owner), []).append(watch)
            self._matrix = None

    def remove(self, owner: object, watch: Watch) -> bool:
        with self._lock:
            watches = self._by_owner.get(id(owner), [])
            if watch not in watches:
                return False
            watches.remove(watch)
            if not watches:
                del self._by_owner[id(owner)]
            self._matrix = None
            return True

    def drop(self, owner: object) -> None:
        """Forget every watch of `owner` (a closing session)."""
        with self._lock:
            if self._by_owner.pop(id(owner), None) is not None:
                self._matrix = None

    def watches(self, owner: object) -> list[Watch]:
        with self._lock:
            return list(self._by_owner.get(id(owner), []))

    def __len__(self) -> int:
        with self._lock:
            return sum(len(w) for w in self._by_owner.values())

    def score(self, owners: list[object], vectors: torch.Tensor) -> list[tuple[list[Watch], np.ndarray]]:
        """Scores of each row's own watches: `vectors` [B, dim] are the snippets just stepped,
        row b belonging to owners[b]. One matrix product over all watches of all sessions."""
        with self._lock:
            if self._matrix is None:
                self._rebuild()
            matrix, columns = self._matrix, self._columns
            groups = {key: list(ws) for key, ws in self._by_owner.items()}
        if matrix is None or matrix.shape[0] == 0:
            return [([], np.zeros(0, np.float32)) for _ in owners]
        scores = (vectors.float() @ matrix.to(vectors.device).T).cpu().numpy()  # [B, W]
        out = []
        for b, owner in enumerate(owners):
            key = id(owner)
            span = columns.get(key)
            out.append((groups.get(key, []), scores[b, span] if span is not None else np.zeros(0, np.float32)))
        return out

    def _rebuild(self) -> None:
        rows, columns, start = [], {}, 0
        for key, watches in self._by_owner.items():
            columns[key] = slice(start, start + len(watches))
            rows.extend(w.vector.float().cpu() for w in watches)
            start += len(watches)
        self._matrix = torch.stack(rows) if rows else torch.zeros(0, self.dim)
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

    def _ordered(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Vectors, indices and times oldest first."""
        n = len(self)
        if self._count <= self.capacity:
            order = np.arange(n)
        else:
            order = (np.arange(n) + self._count) % self.capacity
        return self._vectors[order], self._index[order], self._times[order]

    def search(self, query: np.ndarray, k: int, threshold: float) -> list[Moment]:
        """The `k` best spans for a phrase vector `query` [dim], best first."""
        if k < 1:
            raise ValueError(f"search needs k >= 1 moments, got {k}")
        vectors, indices, times = self._ordered()
        if not len(indices):
            return []
        scores = vectors.astype(np.float32) @ np.asarray(query, np.float32)
        return [Moment(float(times[a, 0]), float(times[b - 1, 1]), peak, int(indices[a]), int(indices[b - 1]))
                for a, b, peak in top_spans(scores, indices, k, threshold)]

    def state_dict(self) -> dict[str, Any]:
        vectors, indices, times = self._ordered()
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
