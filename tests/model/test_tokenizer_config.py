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
    for word in ("encoder", "combiner", "latent", "decoder", "align", "total", "memory", "bytes"):
        assert word in text
    assert "alignment head: 64 dimensions, watch threshold 0.5, moment index 152 bytes a snippet" in text


def _tiny_with(section: str | None, key: str, value) -> dict:
    data = ModelConfig.from_name("tiny").to_dict()
    (data[section] if section else data)[key] = value
    return data


@pytest.mark.parametrize("section, key, value, message", [
    ("encoder", "layers", 2.5, "encoder.layers must be a whole number, got 2.5"),
    ("media", "height", "64", "media.height must be a whole number, got '64'"),
    ("media", "fps", -12.5, "media.fps must be more than zero, got -12.5"),
    ("media", "fps", float("nan"), "media.fps must be a finite number, got nan"),
    ("decoder", "heads", True, "decoder.heads must be a whole number, got True"),
    ("encoder", "motion", 1, "encoder.motion must be true or false, got 1"),
    ("combiner", "kind", 5, "combiner.kind must be a string, got 5"),
    ("combiner", "window", 0, "combiner.window must be more than zero or null, got 0"),
    ("loss", "video", -0.1, "loss.video must be zero or more, got -0.1"),
    (None, "init_std", "0.02", "init_std must be a finite number, got '0.02'"),
    (None, "name", None, "name must be a string, got None"),
    ("encoder", "n_fft", 100, "encoder.n_fft=100 must be at least encoder.hop=160"),
    ("decoder", "max_question_tokens", 1, "decoder.max_question_tokens=1 leaves no room"),
])
def test_config_values_of_the_wrong_type_or_range_name_the_field(section, key, value, message):
    with pytest.raises(ValueError) as refused:
        ModelConfig.from_dict(_tiny_with(section, key, value))
    assert message in str(refused.value)


def test_zero_loss_weights_and_streaming_without_a_combiner_window_are_allowed():
    cfg = ModelConfig.from_dict(_tiny_with("loss", "latent", 0))
    assert cfg.loss.latent == 0
    assert ModelConfig.from_dict(_tiny_with("combiner", "window", None)).combiner.window is None
    assert ModelConfig.from_dict(_tiny_with("media", "fps", 25)).media.fps == 25  # a whole number is a number


@pytest.mark.parametrize("section, key", [("decoder", "layers"), ("media", "sample_rate"), (None, "init_std"),
                                          (None, "loss")])
def test_a_missing_key_is_an_error_naming_it(section, key):
    data = ModelConfig.from_name("tiny").to_dict()
    del (data[section] if section else data)[key]
    name = f"{section}.{key}" if section else key
    with pytest.raises(ValueError, match=f"lacks {name}; the file is incomplete"):
        ModelConfig.from_dict(data)


def test_keys_older_configs_lack_still_get_their_legacy_values():
    data = ModelConfig.from_name("tiny").to_dict()
    del data["encoder"]["motion"], data["encoder"]["positions"]
    data["media"]["frames_per_chunk"] = data["media"].pop("frames_per_snippet")
    cfg = ModelConfig.from_dict(data)
    assert (cfg.encoder.motion, cfg.encoder.positions, cfg.media.frames_per_snippet) == (False, "learned", 8)


@pytest.mark.parametrize("text, message", [
    ("[1, 2]", "must be a JSON object, got list"),
    (json.dumps(_tiny_with(None, "media", 3)), "section 'media' must be a JSON object, got 3"),
])
def test_a_config_json_that_is_not_an_object_is_refused(tmp_path, text, message):
    from model.checkpoint import read_config

    (tmp_path / "config.json").write_text(text)
    with pytest.raises(ValueError, match=message):
        read_config(tmp_path)


def test_a_programmatic_config_is_checked_too():
    from model.config import EncoderConfig

    with pytest.raises(ValueError, match="encoder.layers must be a whole number, got 2.5"):
        ModelConfig(encoder=EncoderConfig(layers=2.5))
    with pytest.raises(ValueError, match="media must be a MediaSpec, got dict"):
        ModelConfig(media={"height": 64})
