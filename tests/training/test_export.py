"""`streamer export`: a half-size copy of a checkpoint whose card no longer claims the old evaluation."""

from __future__ import annotations

import json

import torch
from safetensors import safe_open

from model import ModelConfig, StreamerModel
from model.checkpoint import CHECKSUM, weights_checksum
from streamer.cli import main


def test_export_writes_float16_weights_and_a_card_without_the_old_evaluation(tmp_path, capsys):
    model = StreamerModel(ModelConfig.from_name("tiny"))
    source = tmp_path / "run"  # a training run: its `latest` names the checkpoint to export
    checkpoint = source / "checkpoints" / "step-00000010"
    model.save(checkpoint)
    card = {"command": "python -m training.train ...", "fingerprint": model.fingerprint(),
            "evaluation": {"world:test": {"overall": 0.5}}}
    (checkpoint / "card.json").write_text(json.dumps(card))
    (checkpoint / "trainer.json").write_text("{}")
    (source / "latest").write_text("step-00000010")
    (source / "curves.png").write_bytes(b"\x89PNG not really")

    out = tmp_path / "shipped"
    assert main(["export", str(source), str(out)]) == 0
    assert "float16" in capsys.readouterr().out
    assert (out / "model.safetensors").stat().st_size < 0.55 * (checkpoint / "model.safetensors").stat().st_size
    assert (out / "curves.png").read_bytes() == (source / "curves.png").read_bytes()
    exported = json.loads((out / "card.json").read_text())
    assert exported["command"] == card["command"]
    assert "evaluation" not in exported
    assert exported["fingerprint"] == StreamerModel.load(out).fingerprint() != card["fingerprint"]
    assert exported["exported"] == {"from_fingerprint": card["fingerprint"], "weights_dtype": "float16"}
    for written in (checkpoint, out):  # the weights checksum travels with every checkpoint written
        with safe_open(str(written / "model.safetensors"), "pt") as weights:
            tensors = {name: weights.get_tensor(name) for name in weights.keys()}
            assert weights.metadata()[CHECKSUM] == weights_checksum(tensors)

    assert main(["export", str(source), str(out)]) == 2
    assert "already holds a checkpoint" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "missing"), str(tmp_path / "x")]) == 2
    assert "does not exist" in capsys.readouterr().err


def _run_with_checkpoints(root, models):
    for step, model in enumerate(models, start=1):
        checkpoint = root / "checkpoints" / f"step-{step:08d}"
        model.save(checkpoint)
        (checkpoint / "card.json").write_text(json.dumps({"command": "train", "fingerprint": model.fingerprint()}))
        (checkpoint / "trainer.json").write_text("{}")
    (root / "latest").write_text(f"step-{len(models):08d}")


def test_average_last_ships_the_mean_of_the_last_checkpoints(tmp_path, capsys):
    models = [StreamerModel(ModelConfig.from_name("tiny")) for _ in range(3)]  # three different initialisations
    _run_with_checkpoints(tmp_path / "run", models)

    out = tmp_path / "averaged"
    assert main(["export", str(tmp_path / "run"), str(out), "--dtype", "float32", "--average-last", "2"]) == 0
    shipped = StreamerModel.load(out).state_dict()
    first, second = models[1].state_dict(), models[2].state_dict()
    for name, value in shipped.items():
        if value.is_floating_point():
            torch.testing.assert_close(value, (first[name] + second[name]) / 2)
    card = json.loads((out / "card.json").read_text())
    assert card["exported"]["averaged_checkpoints"] == ["step-00000002", "step-00000003"]
    assert card["exported"]["from_fingerprint"] not in {m.fingerprint() for m in models}

    assert main(["export", str(tmp_path / "run"), str(tmp_path / "x"), "--average-last", "4"]) == 2
    assert "keeps 3 checkpoint(s), fewer than the 4" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "run" / "checkpoints" / "step-00000003"), str(tmp_path / "y"),
                 "--average-last", "2"]) == 2
    assert "needs a training run folder" in capsys.readouterr().err
