"""`streamer eval`: the streaming evaluation, its table and JSON, and the bundled checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from model import ModelConfig, StreamerModel
from training.evaluate import EvalResult, evaluate, load_eval_clips, normalise

BUNDLED = Path(__file__).resolve().parents[2] / "streamer" / "checkpoints" / "tiny"


def test_table_and_json_format():
    result = EvalResult(data="world:test", clips=3)
    for kind, ok in [("color_now", True), ("color_now", False), ("order", True), ("who_made", False)]:
        result.add(kind, ok)
    assert result.table().splitlines() == [
        "kind       accuracy  correct  total",
        "---------  --------  -------  -----",
        "color_now     50.0%        1      2",
        "order        100.0%        1      1",
        "who_made       0.0%        0      1",
        "---------  --------  -------  -----",
        "overall       50.0%        2      4",
    ]
    assert result.to_dict() == {
        "data": "world:test", "clips": 3, "questions": 4, "overall": 0.5,
        "per_kind": {"color_now": {"accuracy": 0.5, "correct": 1, "total": 2},
                     "order": {"accuracy": 1.0, "correct": 1, "total": 1},
                     "who_made": {"accuracy": 0.0, "correct": 0, "total": 1}},
    }


def test_exact_match_only_trims():
    assert normalise("  red circle\n") == "red circle"
    assert normalise("Red circle") != "red circle"


def test_evaluate_streams_every_question_at_its_ask_time():
    torch.manual_seed(0)
    model = StreamerModel(ModelConfig.from_name("tiny")).eval()
    clips = load_eval_clips("world:test", model.cfg.media, clips=2)
    result = evaluate(model, clips, batch=2, data="world:test", max_new_tokens=4, progress=False)
    assert sum(result.total.values()) == sum(len(c.questions) for c in clips) > 0
    # Every answer that was not right is kept for inspection with what was generated.
    assert len(result.mistakes) == sum(result.total.values()) - sum(result.correct.values())
    # ... and when it was asked: a clip may ask the same question at two times.
    asked = {(c.name, q.text, q.ask_snippets) for c in clips for q in c.questions}
    assert all((m["clip"], m["question"], m["ask_snippets"]) in asked for m in result.mistakes)

    # Streaming the clips one at a time gives the same verdicts as a batch of two.
    alone = EvalResult("x")
    for clip in clips:
        one = evaluate(model, [clip], batch=1, max_new_tokens=4, progress=False)
        for kind in one.kinds():
            alone.total[kind] = alone.total.get(kind, 0) + one.total[kind]
            alone.correct[kind] = alone.correct.get(kind, 0) + one.correct.get(kind, 0)
    assert alone.total == result.total and alone.correct == result.correct


def test_world_long_is_four_times_longer():
    media = ModelConfig.from_name("tiny").media
    test = load_eval_clips("world:test", media, clips=4)
    long = load_eval_clips("world:long", media, clips=3)
    assert max(len(c.video) for c in test) <= 16 <= min(len(c.video) for c in long)


def test_eval_command_reports_bad_input(tmp_path, capsys):
    from streamer.cli import main

    assert main(["eval", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    model = StreamerModel(ModelConfig.from_name("tiny"))
    model.save(tmp_path / "ckpt")
    assert main(["eval", str(tmp_path / "ckpt"), "--data", "world:nowhere", "--no-progress"]) == 2
    assert "unknown world split" in capsys.readouterr().err


def test_eval_command_prints_a_table_or_json_and_updates_card(tmp_path, capsys):
    """The table used to end in a line of JSON even without --json."""
    from streamer.cli import main

    model = StreamerModel(ModelConfig.from_name("tiny"))
    model.save(tmp_path / "ckpt")
    out = tmp_path / "eval.json"
    common = [str(tmp_path / "ckpt"), "--clips", "1", "--max-new-tokens", "4", "--no-progress"]
    assert main(["eval", *common, "--json-out", str(out), "--card"]) == 0
    printed = capsys.readouterr().out
    assert "kind" in printed and "overall" in printed and "{" not in printed
    assert main(["eval", *common, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)  # stdout is the JSON alone
    assert report == json.loads(out.read_text())
    assert report["fingerprint"] == model.fingerprint()
    card = json.loads((tmp_path / "ckpt" / "card.json").read_text())
    assert card["evaluation"]["world:test"] == report["results"]["world:test"]


@pytest.mark.skipif(not (BUNDLED / "model.safetensors").is_file(),
                    reason="no bundled checkpoint yet: train one with `streamer train --preset tiny --data world` "
                           "and copy its latest checkpoint to streamer/checkpoints/tiny/")
def test_bundled_checkpoint_answers_fixed_world_questions():
    """The kinds the card reports as learned are answered on fresh fixed clips too (the card is not stale)."""
    model = StreamerModel.load(BUNDLED).eval()
    card = json.loads((BUNDLED / "card.json").read_text())
    assert card["fingerprint"] == model.fingerprint()
    for split in ("world:test", "world:compositional", "world:long", "world:wild"):
        assert split in card["evaluation"]
    per_kind = card["evaluation"]["world:test"]["per_kind"]
    learned = {kind for kind, row in per_kind.items() if row["accuracy"] >= 0.8}
    assert {"color_now", "sound_now"} <= learned, per_kind
    clips = load_eval_clips("world:test", model.cfg.media, clips=10)
    for clip in clips:
        clip.questions = [q for q in clip.questions if q.kind in learned]
    result = evaluate(model, clips, progress=False)
    assert sum(result.total.values()) >= 20
    assert result.overall >= 0.75, result.mistakes
