"""Tokenizer (byte-level UTF-8) and configs (presets, JSON round trip, validation)."""

from __future__ import annotations

import json

import pytest
import torch

from model import MEDIA_PRESETS, ModelConfig, StreamerModel, Tokenizer


def test_any_text_round_trips_and_streams_utf8_safely():
    tok = Tokenizer()
    text = "what colour is the 🟥 — ünïcödé?"
    ids = tok.encode(text)
    assert max(ids) < 256 and tok.decode(ids) == text
    pieces = list(tok.stream_decode(ids + [tok.end_id]))
    assert "".join(pieces) == text and "\ufffd" not in "".join(pieces)
    assert tok.question_ids(" hi ")[0] == tok.question_id and tok.answer_ids("red")[-1] == tok.end_id


def test_tokenizer_file_round_trip_and_refusal(tmp_path):
    tok = Tokenizer()
    tok.save(tmp_path / "tokenizer.json")
    assert Tokenizer.load(tmp_path / "tokenizer.json").to_dict() == tok.to_dict()
    (tmp_path / "tokenizer.json").write_text(json.dumps({"format": "bpe"}))
    with pytest.raises(ValueError, match="byte-level"):
        Tokenizer.load(tmp_path / "tokenizer.json")


@pytest.mark.parametrize("name", ["tiny", "base", "paper"])
def test_presets_round_trip_through_json(name):
    cfg = ModelConfig.from_name(name)
    assert ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert cfg.media == MEDIA_PRESETS[name]


def test_bad_configs_name_the_field():
    with pytest.raises(ValueError, match="unknown model preset"):
        ModelConfig.from_name("huge")
    cfg = ModelConfig.from_name("tiny").to_dict()
    cfg["combiner"]["kind"] = "lstm"
    with pytest.raises(ValueError, match="combiner.kind"):
        ModelConfig.from_dict(cfg)
    cfg = ModelConfig.from_name("tiny").to_dict()
    cfg["encoder"]["tube_size"] = 24
    with pytest.raises(ValueError, match="tube_size"):
        ModelConfig.from_dict(cfg)


def test_paper_preset_is_about_the_paper_budget():
    with torch.device("meta"):
        model = StreamerModel(ModelConfig.from_name("paper"))
    total = sum(p.numel() for p in model.parameters())
    vit = sum(p.numel() for p in model.encoder.blocks.parameters())
    assert 600e6 < vit < 700e6  # ViT-H/32 layers x 1280
    assert 1.8e9 < total < 3.5e9


def test_state_bytes_depend_only_on_config_and_batch():
    tiny = ModelConfig.from_name("tiny")
    assert StreamerModel.state_bytes(tiny, 1) < 512 * 1024
    assert StreamerModel.state_bytes(tiny, 4) == 4 * StreamerModel.state_bytes(tiny, 1)


def test_model_info_command_prints_components_and_state(capsys):
    from streamer.cli import main

    assert main(["model-info", "--preset", "paper"]) == 0
    text = capsys.readouterr().out
    for word in ("encoder", "combiner", "latent", "decoder", "total", "memory", "bytes"):
        assert word in text
