"""The alignment evaluation's bookkeeping: appearances, matching events to onsets, spans."""

from __future__ import annotations

import numpy as np
import torch

from model import ModelConfig, StreamerModel
from training.align_eval import ClipVectors, appearances, evaluate_alignment, phrase_group, tiou
from training.world.phrases import SnippetTruth


def test_appearances_are_runs_holding_a_true_snippet_with_unclear_edges():
    assert appearances([0, -1, 1, 1, 0, 0, -1, 0, 1]) == [(1, 2, 4), (8, 8, 9)]
    assert appearances([-1, -1, 0]) == []


def test_groups_and_temporal_iou():
    assert phrase_group("red square") == phrase_group("drum") == "single"
    assert phrase_group("red square moving left") == phrase_group("red square standing still") == "motion"
    assert phrase_group("red square makes a drum") == "binding"
    assert phrase_group("square") is None and phrase_group("silence") is None
    assert tiou((0, 4), (2, 6)) == 2 / 6 and tiou((0, 2), (2, 4)) == 0.0


def _clip_of(model, phrase: str, present: list[bool], negatives=()) -> ClipVectors:
    """Snippet vectors that are exactly the phrase's vector where it is true, its opposite elsewhere."""
    vector = model.embed_text([phrase])[0].numpy()
    rows = [vector if p else -vector for p in present]
    truths = tuple(SnippetTruth(frozenset({phrase} if p else set()), frozenset()) for p in present)
    return ClipVectors(np.stack(rows), truths, tuple(negatives))


def test_a_perfect_embedding_scores_every_appearance_once_and_finds_its_span():
    torch.manual_seed(0)
    model = StreamerModel(ModelConfig.from_name("tiny")).eval()
    clip = _clip_of(model, "drum", [False, True, True, False, False, True, False, False], negatives=("whistle",))
    tallies = evaluate_alignment(model, [clip], threshold=0.99)
    watch = tallies["single"].to_dict()["watch"]
    assert (watch["events"], watch["appearances"], watch["f1"]) == (2, 2, 1.0)
    retrieval = tallies["single"].to_dict()["retrieval"]
    assert retrieval["r@1"] == 1.0 and retrieval["mean_tiou"] == 1.0


def test_a_watch_that_fires_everywhere_pays_in_precision():
    torch.manual_seed(0)
    model = StreamerModel(ModelConfig.from_name("tiny")).eval()
    clip = _clip_of(model, "drum", [False, True, False, False], negatives=("whistle",))
    tallies = evaluate_alignment(model, [clip], threshold=-1.0)  # every watch fires at once
    watch = tallies["single"].to_dict()["watch"]
    assert watch["events"] == 2 and watch["precision"] == 0.5  # drum near its onset hits; whistle is false
