"""`streamer recipe`: every stage from the one before, resumable, ending in an evaluated export."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import subprocess
from pathlib import Path

import pytest

from streamer.cli import main
from model.checkpoint import read_config
from training import train
from training.config import kind_weights
from training.recipe import BUNDLED_RECIPE, RECIPES, Recipe, RecipeRun, Stage, stage_progress
from training.trainer import model_config
from training.world.vocab import SOUNDS

CHECKPOINTS = Path(__file__).parents[2] / "streamer" / "checkpoints"


def test_the_tiny_recipe_chains_its_stages(tmp_path, capsys):
    assert main(["recipe", "tiny", "--out", str(tmp_path / "r"), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    stages = RECIPES["tiny"].stages
    for index, stage in enumerate(stages, start=1):
        assert f"stage {index}/{len(stages)}: train" in printed
        assert f"--out {tmp_path / 'r'}/stage{index} " in printed
        assert f"--steps {stage.steps} " in printed
    assert "--init" not in printed.split("stage 2/")[0]  # stage 1 starts from nothing
    for index in range(2, len(stages) + 1):
        assert f"--init {tmp_path / 'r'}/stage{index - 1}" in printed
    assert "torch.distributed.run --nproc_per_node=2" in printed
    assert not (tmp_path / "r").exists()  # a dry run writes nothing

    assert main(["recipe", "nope", "--out", str(tmp_path)]) == 2
    assert "no recipe named 'nope'" in capsys.readouterr().err


MINI = Recipe(
    preset="tiny",
    stages=(Stage(steps=2, lr=1e-3, warmup=1, snippets="2-3", eval_every=0, align_weight=0.0),
            Stage(steps=2, lr=1e-3, warmup=1, seed=1, snippets="2-3", eval_every=0, keep_last=2)),
    batch=2, questions=2, wild=0.0, checkpoint_every=1, eval_clips_during_training=0, average_last=2,
    calibrate_watch=2, eval_clips=2,
)


@pytest.mark.slow
def test_a_stopped_recipe_continues_where_it_stopped(tmp_path):
    out = tmp_path / "run"
    ran: list[list[str]] = []

    def stop_at_stage_two(command, env):
        ran.append(command)
        if "stage2" in " ".join(command):
            return 130  # as if Ctrl-C stopped it before its first checkpoint
        return subprocess.call(command, env=env)

    said: list[str] = []
    assert RecipeRun("mini", MINI, out, processes=1, threads=1, run=stop_at_stage_two, say=said.append)() == 130
    assert stage_progress(out / "stage1") == 2 and stage_progress(out / "stage2") is None
    assert "run the same command again" in said[-1]

    ran.clear()
    assert RecipeRun("mini", MINI, out, processes=1, threads=1,
                     run=lambda command, env: ran.append(command) or subprocess.call(command, env=env))() == 0
    assert len(ran) == 1 and "stage2" in " ".join(ran[0])  # stage 1 was not trained again
    card = json.loads((out / "model" / "card.json").read_text())
    assert set(card["evaluation"]) == set(MINI.eval_splits)
    assert card["exported"]["averaged_checkpoints"] == ["step-00000001", "step-00000002"]
    assert card["exported"]["watch_calibration"]["clips"] == 2
    recipe = card["recipe"]
    assert [s["run"] for s in recipe["stages"]] == ["stage1", "stage2"]
    assert all(s["steps"] == 2 and s["wall_seconds"] > 0 for s in recipe["stages"])
    assert recipe["wall_seconds"] == pytest.approx(sum(s["wall_seconds"] for s in recipe["stages"]), abs=0.2)

    said.clear()
    ran.clear()
    assert RecipeRun("mini", MINI, out, processes=1, threads=1, run=lambda c, e: ran.append(c) or 1,
                     say=said.append)() == 0
    assert not ran and "export: done" in "\n".join(said) and "evaluation: done" in said[-2]


@pytest.mark.parametrize("folder", ["tiny", "tiny-24"])
def test_a_bundled_card_records_its_recipe_as_it_ran(folder):
    """The card's stage commands (as run) train what its recipe in RECIPES says, flag by flag; the
    default checkpoint's recipe is BUNDLED_RECIPE, the 24-stage one's `tiny`."""
    card = json.loads((CHECKPOINTS / folder / "card.json").read_text())
    recipe_name = card["recipe"]["name"]
    assert recipe_name == {"tiny": BUNDLED_RECIPE, "tiny-24": "tiny"}[folder]
    recipe = RECIPES[recipe_name]
    records = card["recipe"]["stages"]
    assert [r["run"] for r in records] == [f"stage{i}" for i in range(1, len(recipe.stages) + 1)]
    assert card["recipe"]["wall_seconds"] == pytest.approx(sum(r["wall_seconds"] for r in records), abs=0.2)
    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    for index, (record, stage) in enumerate(zip(records, recipe.stages)):
        ran = train.config_from_args(parser.parse_args(shlex.split(record["command"].split("-m training.train", 1)[1])))
        command = recipe.train_command(index, Path("r"), processes=1, threads=1, resume=False)
        assert command[1:3] == ["-m", "training.train"]
        planned = train.config_from_args(parser.parse_args(command[3:]))
        assert record["steps"] == stage.steps == ran.steps
        for name in ("lr", "warmup", "seed", "snippets", "curriculum", "kind_weights", "off_palette", "latent_window",
                     "decoder_layers", "memory_update", "window_dropout", "age_code", "age_slopes", "length_scale", "wild", "batch",
                     "questions_per_clip", "first_sight", "first_sight_tokens", "first_sight_age_slopes",
                     "first_sight_query_slopes", "first_sight_age_code", "first_sight_only", "first_sight_drills", "clip_drills",
                     "first_sight_pointer", "first_sight_company", "first_sight_hearing", "first_sight_onsets",
                     "company_only", "first_sight_read", "read_kinds", "read_sounds_apart", "first_sight_lookup",
                     "lr_scales"):
            assert getattr(ran, name) == getattr(planned, name), (record["run"], name)
        if index > 0 or recipe_name != "tiny":  # the 24-stage model's stage 1 ran before the alignment head existed
            assert ran.align_weight == planned.align_weight, record["run"]


def _planned_configs(recipe: Recipe) -> list[dict]:
    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    planned = []
    for index in range(len(recipe.stages)):
        command = recipe.train_command(index, Path("r"), processes=1, threads=1, resume=False)
        assert ("--init" in command) == (index > 0)
        planned.append(dataclasses.asdict(model_config(train.config_from_args(parser.parse_args(command[3:])))))
    return planned


def _tiny24_config() -> dict:
    return dataclasses.asdict(read_config(CHECKPOINTS / "tiny-24"))


def test_the_bundled_card_meets_the_understanding_targets_in_its_time():
    """The default checkpoint's card: world:test 85% or more and every kind 60% or more,
    compositional 75% or more, wild within 10 points of test, the memory kinds on long within 10
    points of test, and its recipe's stages within about 2.5 hours."""
    card = json.loads((CHECKPOINTS / "tiny" / "card.json").read_text())
    splits = card["evaluation"]
    test, long = splits["world:test"], splits["world:long"]["per_kind"]
    assert test["overall"] >= 0.85 and min(k["accuracy"] for k in test["per_kind"].values()) >= 0.60
    assert splits["world:compositional"]["overall"] >= 0.75
    assert splits["world:wild"]["overall"] >= test["overall"] - 0.10
    for kind in ("count_sound", "sound_of", "who_made", "order", "first_shape", "first_color"):
        assert long[kind]["accuracy"] >= test["per_kind"][kind]["accuracy"] - 0.10, kind
    assert card["recipe"]["wall_seconds"] <= 2.5 * 3600 * 1.02


def test_the_fast_recipe_trains_the_24_stage_models_parts_from_its_first_step():
    """`tiny-fast` starts from nothing with the very model the 24 stages of `tiny` grew into."""
    recipe = RECIPES["tiny-fast"]
    tiny24 = _tiny24_config()
    for index, planned in enumerate(_planned_configs(recipe)):
        planned["align"]["watch_threshold"] = tiny24["align"]["watch_threshold"]  # the export calibrates it
        assert planned == tiny24, index
    assert sum(s.steps for s in recipe.stages) < sum(s.steps for s in RECIPES["tiny"].stages) / 10


def test_the_lean_recipe_grows_only_the_window_and_ends_as_the_24_stage_model():
    """`tiny-lean` runs its first stage with a latent window of 8 and no drills, then is the 24-stage model."""
    recipe = RECIPES["tiny-lean"]
    tiny24 = _tiny24_config()
    planned = _planned_configs(recipe)
    for config in planned:
        config["align"]["watch_threshold"] = tiny24["align"]["watch_threshold"]
    first = _tiny24_config()
    first["latent"]["window"] = 8
    assert planned[0] == first
    assert planned[1:] == [tiny24] * (len(planned) - 1)
    assert not recipe.stages[0].first_sight_drills and recipe.stages[-1].first_sight_drills


def test_the_long_lean_recipe_moves_steps_from_seeing_to_remembering():
    """`tiny-lean-long` is tiny-lean's model and stages; only how many steps each stage takes differs."""
    lean, long = RECIPES["tiny-lean"], RECIPES["tiny-lean-long"]
    assert _planned_configs(long) == _planned_configs(lean)
    for short_stage, long_stage in zip(lean.stages, long.stages, strict=True):
        assert dataclasses.replace(long_stage, steps=short_stage.steps, eval_every=short_stage.eval_every) == short_stage
    assert long.stages[0].steps < lean.stages[0].steps and long.stages[-1].steps > lean.stages[-1].steps
    assert long.stages[0].steps > long.stages[0].curriculum  # clips reach 32 snippets before the window grows


def test_the_even_lean_recipe_draws_one_length_a_step_and_sees_longer():
    """`tiny-lean-even` is tiny-lean's model and stages with one clip length a step and more seeing steps."""
    lean, even = RECIPES["tiny-lean"], RECIPES["tiny-lean-even"]
    assert _planned_configs(even) == _planned_configs(lean)
    for lean_stage, even_stage in zip(lean.stages, even.stages, strict=True):
        assert even_stage.one_length_a_step and "--one-length-a-step" in even_stage.train_flags()
        assert dataclasses.replace(even_stage, steps=lean_stage.steps, eval_every=lean_stage.eval_every,
                                   one_length_a_step=False) == lean_stage
    assert even.stages[0].steps > lean.stages[0].steps
    assert [s.steps for s in even.stages[1:]] == [s.steps for s in lean.stages[1:]]


def test_the_binding_recipe_is_the_even_recipe_and_a_long_binding_stage():
    """`tiny-lean-bind` runs tiny-lean-even's stages unchanged (so its finished runs carry over), then
    one stage of 32-64-snippet clips that draws the binding and counting kinds most."""
    even, bind = RECIPES["tiny-lean-even"], RECIPES["tiny-lean-bind"]
    assert bind.stages[:-1] == even.stages and bind.preset == even.preset
    assert _planned_configs(bind)[:-1] == _planned_configs(even)
    last = bind.stages[-1]
    assert last.snippets == "32-64" and last.one_length_a_step and last.lr < even.stages[-1].lr
    weights = dict(kind_weights(last.kind_weights))
    assert min(weights["who_made"], weights["sound_of"], weights["count_sound"]) > max(
        w for kind, w in weights.items() if kind not in ("who_made", "sound_of", "count_sound"))


def test_the_company_recipe_is_the_binding_recipe_with_company_on_its_last_stage():
    """`tiny-lean-company` differs from tiny-lean-bind only in the first-sight tokens' company, which
    its last stage adds over the same finished runs; its variants add it a stage earlier
    (`-early`) or answer half the `sound_of` questions from the tokens alone (`-only`)."""
    bind, company = RECIPES["tiny-lean-bind"], RECIPES["tiny-lean-company"]
    assert company.stages[:-1] == bind.stages[:-1]
    assert company.stages[-1] == dataclasses.replace(bind.stages[-1], first_sight_company=True)
    planned = _planned_configs(company)
    assert [c["decoder"]["first_sight_company"] for c in planned] == [False] * (len(planned) - 1) + [True]
    early = RECIPES["tiny-lean-company-early"]
    assert early.stages[:2] == bind.stages[:2] and early.stages[3] == company.stages[3]
    assert early.stages[2] == dataclasses.replace(bind.stages[2], first_sight_company=True)
    only = RECIPES["tiny-lean-company-only"]
    assert only.stages == (*company.stages[:-1], dataclasses.replace(company.stages[-1], company_only=0.5))
    assert "--company-only" in only.train_command(len(only.stages) - 1, Path("r"), 1, 1, resume=False)


def test_the_hearing_recipe_is_the_early_company_recipe_hearing_its_sounds_apart():
    """`tiny-lean-hearing` differs from tiny-lean-company-early only in the hearing head, which its
    last two stages add over the same finished runs of the first two."""
    early, hearing = RECIPES["tiny-lean-company-early"], RECIPES["tiny-lean-hearing"]
    assert hearing.stages[:2] == early.stages[:2]
    assert hearing.stages[2:] == tuple(dataclasses.replace(s, first_sight_hearing=True) for s in early.stages[2:])
    planned = _planned_configs(hearing)
    assert [c["decoder"]["first_sight_sounds"] for c in planned] == [0, 0, len(SOUNDS), len(SOUNDS)]
    assert "--first-sight-hearing" in hearing.train_command(2, Path("r"), 1, 1, resume=False)
    counting = RECIPES["tiny-lean-counting"]
    assert counting.stages == (*hearing.stages[:-1], dataclasses.replace(hearing.stages[-1], first_sight_onsets=True))
    assert [c["decoder"]["first_sight_onsets"] for c in _planned_configs(counting)] == [False] * 3 + [True]
    read = RECIPES["tiny-lean-read-sound"]
    assert read.stages == (*counting.stages[:-1], dataclasses.replace(counting.stages[-1], first_sight_read=0.2,
                                                                      read_kinds="sound_of"))
    last = read.train_command(3, Path("r"), 1, 1, resume=False)
    assert last[last.index("--read-kinds") + 1] == "sound_of" and last[last.index("--first-sight-read") + 1] == "0.2"
    named = RECIPES["tiny-lean-read-named"]
    assert named.stages == (*read.stages[:-1], dataclasses.replace(read.stages[-1],
                                                                   read_kinds="sound_of,count_sound,who_made"))
    apart = RECIPES["tiny-lean-read-apart"]
    assert apart.stages == (*named.stages[:-1], dataclasses.replace(named.stages[-1], read_sounds_apart=True))
    assert "--read-sounds-apart" in apart.train_command(3, Path("r"), 1, 1, resume=False)
    assert "--read-sounds-apart" not in named.train_command(3, Path("r"), 1, 1, resume=False)
    lookup = RECIPES["tiny-lean-lookup"]
    assert lookup.stages == (*counting.stages[:-1], dataclasses.replace(counting.stages[-1], first_sight_lookup=True))
    assert [c["decoder"]["first_sight_lookup"] for c in _planned_configs(lookup)] == [False] * 3 + [True]
