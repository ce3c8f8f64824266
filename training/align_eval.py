"""Standing queries and moment retrieval, measured against the world's truth.

For each clip the model's snippet vectors are computed once (`embed_clip`, the same
function streaming computes) and scored against phrases of the world's grammar
(training/world/phrases.py), in three groups:

- single: one attribute, "red square" or "drum";
- motion: "red square moving left", "blue circle standing still";
- binding: "blue circle makes a drum".

Watches: a phrase's appearances are the runs of snippets where it is true (unclear snippets
at a run's edge belong to it); its onset is the run's first true snippet. A watch run along
the clip (the runtime's own hysteresis, `streamer.watch.fire_indices`) fires events; an
event within one snippet of an unmatched onset is a hit, any other event a false alarm.
Phrases one word away from the truth (the clip's hard negatives) are watched too, so a
watch that fires on any red shape pays for it. Reported: precision, recall, F1 and the
detection delay in snippets.

Retrieval: for each phrase true somewhere in a clip, the runtime's span search
(`streamer.watch.top_spans`) ranks spans; R@k counts a query when one of its k best spans
overlaps a true appearance with temporal IoU >= 0.5, and mean tIoU is that of the best span.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from model import StreamerModel
from streamer.watch import fire_indices, top_spans
from training.world.clip import World, WorldConfig
from training.world.phrases import SnippetTruth, clip_phrases
from training.world.vocab import COLORS, SHAPES, SOUNDS

GROUPS = ("single", "motion", "binding")
IOU_HIT = 0.5


def phrase_group(phrase: str) -> str | None:
    """Which group a grammar phrase belongs to (None: bare shapes, "nothing on screen", "silence")."""
    if phrase in SOUNDS:
        return "single"
    if " makes a " in phrase:
        return "binding"
    words = phrase.split()
    if len(words) == 2 and words[0] in COLORS and words[1] in SHAPES:
        return "single"
    if len(words) >= 3 and words[0] in COLORS and words[1] in SHAPES:
        return "motion"
    return None


def appearances(targets: list[int]) -> list[tuple[int, int, int]]:
    """(start, onset, end) of each appearance: a maximal run of true-or-unclear snippets holding
    a true one, [start, end) in snippets, onset its first true snippet."""
    runs, k = [], 0
    while k < len(targets):
        if targets[k] == 0:
            k += 1
            continue
        start = k
        while k < len(targets) and targets[k] != 0:
            k += 1
        trues = [i for i in range(start, k) if targets[i] == 1]
        if trues:
            runs.append((start, trues[0], k))
    return runs


def tiou(a: tuple[int, int], b: tuple[int, int]) -> float:
    inter = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union else 0.0


@dataclass
class GroupTally:
    events: int = 0
    hits: int = 0
    onsets: int = 0
    found: int = 0
    delays: list[int] = field(default_factory=list)
    queries: int = 0
    r1: int = 0
    r5: int = 0
    iou_sum: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        precision = self.hits / self.events if self.events else 0.0
        recall = self.found / self.onsets if self.onsets else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out = {"watch": {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
                         "events": self.events, "appearances": self.onsets,
                         "mean_delay_snippets": round(float(np.mean(self.delays)), 3) if self.delays else None}}
        if self.queries:
            out["retrieval"] = {"queries": self.queries, "r@1": round(self.r1 / self.queries, 4),
                                "r@5": round(self.r5 / self.queries, 4),
                                "mean_tiou": round(self.iou_sum / self.queries, 4)}
        return out


@dataclass
class ClipVectors:
    """One clip's snippet vectors [T, dim] and alignment truth."""

    vectors: np.ndarray
    truths: tuple[SnippetTruth, ...]
    negatives: tuple[str, ...]


def embed_world(model: StreamerModel, split: str, clips: int, start: int = 0) -> list[ClipVectors]:
    """Snippet vectors and truth of `clips` clips of a world split."""
    world = World(WorldConfig.preset(split, spec=model.cfg.media, questions_per_clip=0))
    out = []
    for i in range(start, start + clips):
        clip = world.clip(i)
        video = torch.from_numpy(np.ascontiguousarray(clip.video_snippets()))[None]
        audio = torch.from_numpy(np.ascontiguousarray(clip.audio_snippets()))[None]
        vectors = model.embed_clip(video, audio)[0].float().cpu().numpy()
        phrases = clip_phrases(clip)
        out.append(ClipVectors(vectors, phrases.truths, phrases.negatives))
    return out


def clip_queries(clip: ClipVectors) -> tuple[list[str], list[str]]:
    """(phrases true somewhere in the clip, hard negatives never true in it), grouped phrases only."""
    true = sorted({p for t in clip.truths for p in t.true if phrase_group(p)})
    never = sorted(p for p in clip.negatives
                   if phrase_group(p) and all(t.target(p) != 1 for t in clip.truths))
    return true, never


@dataclass
class ScoredQuery:
    """One phrase watched along one clip: its group, per-snippet scores and true appearances."""

    group: str
    scores: np.ndarray
    runs: list[tuple[int, int, int]]


def score_queries(model: StreamerModel, clips: list[ClipVectors]) -> list[ScoredQuery]:
    """Every clip's phrases (true ones and hard negatives) scored along the clip, once, so
    thresholds can be swept without recomputing anything."""
    cache: dict[str, np.ndarray] = {}
    out = []
    for clip in clips:
        true, never = clip_queries(clip)
        missing = [p for p in true + never if p not in cache]
        if missing:
            for p, v in zip(missing, model.embed_text(missing).float().cpu().numpy()):
                cache[p] = v
        for phrase in true + never:
            targets = [t.target(phrase) for t in clip.truths]
            out.append(ScoredQuery(phrase_group(phrase), clip.vectors @ cache[phrase], appearances(targets)))
    return out


def tally(queries: list[ScoredQuery], threshold: float, retrieval: bool = True) -> dict[str, GroupTally]:
    """Watch (and retrieval) tallies per group at watch threshold `threshold`."""
    tallies = {g: GroupTally() for g in GROUPS}
    for query in queries:
        counts, runs = tallies[query.group], query.runs
        events = fire_indices(query.scores, threshold)
        counts.events += len(events)
        counts.onsets += len(runs)
        matched = set()
        for e in events:
            hit = next((j for j, (_, onset, _) in enumerate(runs) if j not in matched and abs(e - onset) <= 1), None)
            if hit is not None:
                matched.add(hit)
                counts.hits += 1
                counts.delays.append(e - runs[hit][1])
        counts.found += len(matched)
        if retrieval and runs:
            spans = top_spans(query.scores, np.arange(len(query.scores)), 5, threshold)
            ious = [max(tiou((a, b), (s, e)) for s, _, e in runs) for a, b, _ in spans]
            counts.queries += 1
            counts.r1 += int(bool(ious) and ious[0] >= IOU_HIT)
            counts.r5 += int(any(i >= IOU_HIT for i in ious))
            counts.iou_sum += ious[0] if ious else 0.0
    return tallies


def evaluate_alignment(model: StreamerModel, clips: list[ClipVectors], threshold: float,
                       retrieval: bool = True) -> dict[str, GroupTally]:
    """Watch and retrieval tallies per group over `clips` at watch threshold `threshold`."""
    return tally(score_queries(model, clips), threshold, retrieval)


def calibrate_threshold(model: StreamerModel, clips: list[ClipVectors],
                        candidates: np.ndarray | None = None) -> tuple[float, float]:
    """The watch threshold with the best mean F1 over the three groups on `clips` (the world's
    val split), and that F1. The grid is fine (0.005): near its best, a trained head's mean F1
    moves by about 0.01 per 0.005 of threshold, and sounds on an empty screen score within a
    few thousandths of it."""
    candidates = np.round(np.arange(0.2, 0.9001, 0.005), 3) if candidates is None else candidates
    queries = score_queries(model, clips)
    best = (float(candidates[0]), -1.0)
    for threshold in candidates:
        tallies = tally(queries, float(threshold), retrieval=False)
        f1 = float(np.mean([tallies[g].to_dict()["watch"]["f1"] for g in GROUPS]))
        if f1 > best[1]:
            best = (float(threshold), f1)
    return best


def alignment_report(model: StreamerModel, split: str, clips: int, threshold: float | None = None) -> dict[str, Any]:
    """Watch and retrieval figures per group on a world split, as the card stores them."""
    threshold = model.cfg.align.watch_threshold if threshold is None else threshold
    tallies = evaluate_alignment(model, embed_world(model, split, clips), threshold)
    return {"data": f"world:{split}", "clips": clips, "threshold": threshold,
            "groups": {g: t.to_dict() for g, t in tallies.items()}}


def alignment_table(report: dict[str, Any]) -> str:
    """A fixed-width table of `alignment_report`: one row per group."""
    lines = ["group    watch P  watch R  watch F1  delay  |  R@1    R@5   mean tIoU  queries",
             "-------  -------  -------  --------  -----  |  -----  -----  ---------  -------"]
    for group, figures in report["groups"].items():
        w, r = figures["watch"], figures.get("retrieval")
        delay = "-" if w["mean_delay_snippets"] is None else f"{w['mean_delay_snippets']:+.2f}"
        row = f"{group:<7}  {w['precision']:7.3f}  {w['recall']:7.3f}  {w['f1']:8.3f}  {delay:>5}  |  "
        row += f"{r['r@1']:5.3f}  {r['r@5']:5.3f}  {r['mean_tiou']:9.3f}  {r['queries']:7d}" if r else "-"
        lines.append(row)
    return "\n".join(lines)
