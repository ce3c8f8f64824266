"""The training flags come from TrainConfig's fields: every field has its flag, and parsing
the flags gives back the config they describe."""

from __future__ import annotations

import argparse
from dataclasses import asdict, fields

import pytest

from training.config import (TrainConfig, TrainingError, add_config_arguments, config_from_flags, lr_scales,
                             snippet_range)
from training.train import add_arguments, config_from_args


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    return parser


def test_every_field_has_a_flag_and_no_flag_lacks_a_field():
    dests = {action.dest for action in _parser()._actions if action.dest != "help"}
    assert dests == {f.name for f in fields(TrainConfig)}


def test_defaults_parse_to_the_default_config():
    cfg = config_from_flags(_parser().parse_args(["--out", "runs/x"]))
    assert asdict(cfg) == {**asdict(TrainConfig()), "out": "runs/x"}


def test_flags_parse_to_their_fields():
    args = ["--out", "r", "--steps", "7", "--batch", "4", "--micro-batch", "2", "--lr", "1e-3", "--snippets", "2-5",
            "--questions", "3", "--wild", "0.5", "--strict", "--amp", "off", "--threads", "1", "--init", "ckpt",
            "--checkpoint-every", "0", "--no-progress", "--text-weight", "2"]
    cfg = config_from_flags(_parser().parse_args(args))
    assert (cfg.steps, cfg.batch, cfg.micro_batch, cfg.lr, cfg.snippets) == (7, 4, 2, 1e-3, (2, 5))
    assert (cfg.questions_per_clip, cfg.wild, cfg.strict, cfg.amp, cfg.threads) == (3, 0.5, True, "off", 1)
    assert (cfg.init, cfg.checkpoint_every, cfg.progress, cfg.text_weight) == ("ckpt", 1, False, 2.0)
    cfg.validate()


def test_steps_and_epochs_exclude_each_other_and_out_is_required(capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(["--out", "r", "--steps", "1", "--epochs", "1"])
    assert "not allowed with argument" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _parser().parse_args([])
    assert "--out" in capsys.readouterr().err


def test_finetune_raises_the_text_weight_of_the_preset():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    cfg = config_from_args(parser.parse_args(["--out", "r", "--init", "ckpt", "--finetune"]))
    assert cfg.text_weight == 10.0


def test_snippet_ranges():
    assert snippet_range("4-16") == (4, 16) and snippet_range("6") == (6, 6)
    with pytest.raises(argparse.ArgumentTypeError, match="A-B or A"):
        snippet_range("four")


def test_lure_drills_are_a_share_of_the_clip_drills():
    def cfg(*flags: str) -> TrainConfig:
        return config_from_flags(_parser().parse_args(["--out", "r", "--first-sight", "0.5", "--first-sight-tokens",
                                                       *flags]))

    cfg("--clip-drills", "8", "--lure-drills", "0.5").validate()
    for flags in (["--lure-drills", "0.5"], ["--clip-drills", "8", "--lure-drills", "1.5"]):
        with pytest.raises(TrainingError, match="--lure-drills is a share of the clip drills"):
            cfg(*flags).validate()


def test_lr_scales_parse_to_prefixes_and_multiples():
    assert lr_scales("decoder.blocks.3.=10, decoder.head=0.5") == (("decoder.blocks.3.", 10.0), ("decoder.head", 0.5))
    with pytest.raises(argparse.ArgumentTypeError, match="--lr-scales takes NAME=NUMBER"):
        lr_scales("decoder.blocks.3.")
