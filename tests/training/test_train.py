"""The training pipeline end to end on real (small) runs of the tiny preset on the CPU."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from model import StreamerModel
from model.checkpoint import CHECKSUM, weights_checksum
from training import checkpointing
from training.metrics import read_metrics
from training.train import cli as train_cli
from training.trainer import FAST_PART_LR_SCALE, parameter_groups
from training.world.first_sight import FIRST_SIGHT_CLASSES
from training.world.vocab import SOUNDS

REPO = Path(__file__).resolve().parents[2]
# Short clips, two per step, two threads: a step takes about a second on two cores.
FAST = ["--batch", "2", "--snippets", "2-3", "--questions", "4", "--warmup", "2", "--threads", "2",
        "--no-progress"]


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(checkpointing.latest_checkpoint(run_dir) / "model.safetensors"))


def _tuned_over(init_run: Path, run: Path, *flags: str) -> tuple[dict[str, torch.Tensor], StreamerModel]:
    """One step at a vanishing learning rate from `init_run`'s checkpoint with `flags`: the
    checkpoint's weights and the model the run saved."""
    assert train_cli(["--out", str(run), "--steps", "1", "--init", str(checkpointing.latest_checkpoint(init_run)),
                      *flags, "--lr", "1e-9", *FAST]) == 0
    return _weights(init_run), StreamerModel.load(checkpointing.latest_checkpoint(run))


def _assert_kept(old: dict[str, torch.Tensor], tuned: dict[str, torch.Tensor], *changed: str) -> None:
    """Every weight of `old` but those named `changed` is in `tuned` unchanged."""
    for name, tensor in old.items():
        if name not in changed:
            torch.testing.assert_close(tuned[name], tensor, atol=1e-6, rtol=0)


def _optimizer(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(checkpointing.latest_checkpoint(run_dir) / checkpointing.OPTIMIZER_FILE))


def _subprocess_env(threads: int = 2) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = str(threads)
    return env


def _wait_for_steps(run_dir: Path, steps: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            pytest.fail(f"training exited early with {proc.returncode}:\n{out}")
        path = run_dir / "metrics.jsonl"
        if path.is_file() and sum(1 for r in read_metrics(run_dir) if r["kind"] == "train") >= steps:
            return
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"no {steps} training steps within {timeout} s")


@pytest.fixture(scope="module")
def one_step_run(tmp_path_factory) -> Path:
    """A finished one-step run, copied by the tests that tamper with it."""
    run = tmp_path_factory.mktemp("runs") / "one"
    assert train_cli(["--out", str(run), "--steps", "1", *FAST]) == 0
    return run


@pytest.mark.slow
def test_interrupt_resume_is_bit_exact_then_eval(tmp_path, capsys):
    """SIGINT saves and exits; --resume then ends with exactly the weights and optimizer
    state of an uninterrupted run; the result evaluates through `streamer eval`."""
    steps = ["--steps", "4", "--checkpoint-every", "100"]
    straight = tmp_path / "straight"
    assert train_cli(["--out", str(straight), *steps, *FAST]) == 0

    interrupted = tmp_path / "interrupted"
    proc = subprocess.Popen(
        [sys.executable, "-m", "training.train", "--out", str(interrupted), *steps, *FAST],
        cwd=REPO, env=_subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    _wait_for_steps(interrupted, 1, proc)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGINT, out
    assert "stopped by SIGINT" in out and "--resume" in out
    stopped_at = checkpointing.read_trainer_state(checkpointing.latest_checkpoint(interrupted))["step"]
    assert 1 <= stopped_at < 4

    assert train_cli(["--out", str(interrupted), *steps, *FAST, "--resume"]) == 0
    a, b = _weights(straight), _weights(interrupted)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ from the uninterrupted run"
    oa, ob = _optimizer(straight), _optimizer(interrupted)
    assert oa.keys() == ob.keys() and all(torch.equal(oa[k], ob[k]) for k in oa)

    log = read_metrics(interrupted)
    train_steps = [r["step"] for r in log if r["kind"] == "train"]
    assert train_steps == [1, 2, 3, 4]  # the log is continuous over the interruption
    losses = {r["step"]: r["loss"] for r in read_metrics(straight) if r["kind"] == "train"}
    assert all(losses[r["step"]] == r["loss"] for r in log if r["kind"] == "train")

    from streamer.cli import main as streamer_main

    capsys.readouterr()
    assert streamer_main(["eval", str(interrupted), "--data", "world:test", "--clips", "2",
                          "--no-progress", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["results"]["world:test"]["clips"] == 2


@pytest.mark.slow
def test_sigkill_during_checkpointing_leaves_a_loadable_latest(tmp_path):
    """Killed at an arbitrary moment while saving every step, `latest` names a complete
    checkpoint that loads and resumes."""
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "training.train", "--out", str(run), "--steps", "50",
         "--checkpoint-every", "1", *FAST],
        cwd=REPO, env=_subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    _wait_for_steps(run, 2, proc)
    time.sleep(0.3)  # somewhere inside a step or a save
    proc.kill()
    proc.wait()
    latest = checkpointing.latest_checkpoint(run)
    assert latest is not None
    model = StreamerModel.load(latest)
    state = checkpointing.read_trainer_state(latest)
    assert state["step"] >= 1
    assert load_file(str(latest / checkpointing.OPTIMIZER_FILE))
    assert model.fingerprint() == json.loads((latest / "card.json").read_text())["fingerprint"]
    assert train_cli(["--out", str(run), "--steps", str(state["step"] + 1), "--checkpoint-every", "1",
                      *FAST, "--resume"]) == 0
    assert not any(p.name.startswith(".tmp-") for p in (run / "checkpoints").iterdir())


def test_interrupted_write_never_replaces_latest(one_step_run, tmp_path):
    """Leftovers of a crash mid-write (a partial temporary folder) are ignored and cleaned."""
    run = tmp_path / "run"
    shutil.copytree(one_step_run, run)
    before = checkpointing.latest_checkpoint(run)
    partial = run / "checkpoints" / ".tmp-step-00000002-999"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"\x00" * 17)  # torn write
    assert checkpointing.latest_checkpoint(run) == before
    StreamerModel.load(before)

    model = StreamerModel.load(before)
    optimizer = torch.optim.AdamW(model.parameters())
    saved = checkpointing.save_checkpoint(run, 2, model, optimizer, {"data_identity": {}}, {"note": "x"})
    assert checkpointing.latest_checkpoint(run) == saved
    assert not partial.exists()


def test_resume_rejects_another_architecture(one_step_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(one_step_run, run)
    assert train_cli(["--out", str(run), "--steps", "2", *FAST, "--preset", "base", "--resume"]) == 1
    err = capsys.readouterr().err
    assert "another architecture" in err and "tiny" in err


def test_resume_rejects_a_changed_data_order(one_step_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(one_step_run, run)
    args = ["--out", str(run), "--steps", "2", *FAST, "--resume"]
    args[args.index("--batch") + 1] = "4"
    assert train_cli(args) == 1
    assert "batch" in capsys.readouterr().err


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(one_step_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(one_step_run, run)
    latest = checkpointing.latest_checkpoint(run)
    weights = load_file(str(latest / "model.safetensors"))
    name = next(k for k, v in weights.items() if v.is_floating_point() and v.dim() == 2)
    weights[name] = torch.full_like(weights[name], float("nan"))
    save_file(weights, str(latest / "model.safetensors"))  # no checksum: as older code wrote it
    assert train_cli(["--out", str(run), "--steps", "3", *FAST, "--resume"]) == 1
    assert f"tensor {name} holds NaN or infinite values" in capsys.readouterr().err  # refused on load

    weights[name] = torch.full_like(weights[name], 3e38)  # finite, but the first step overflows
    save_file(weights, str(latest / "model.safetensors"))
    before = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert train_cli(["--out", str(run), "--steps", "3", *FAST, "--resume"]) == 1
    err = capsys.readouterr().err
    assert ("nan" in err or "inf" in err) and "step 2" in err and "last good checkpoint" in err
    assert checkpointing.latest_checkpoint(run) == latest
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before


def test_bad_arguments_give_clear_errors(tmp_path, capsys):
    assert train_cli(["--out", str(tmp_path / "a"), "--steps", "1", "--data", str(tmp_path / "missing")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert train_cli(["--out", str(tmp_path / "b"), "--steps", "1", "--preset", "huge"]) == 1
    assert "unknown model preset 'huge'" in capsys.readouterr().err
    assert train_cli(["--out", str(tmp_path / "c"), "--steps", "1", "--resume"]) == 1
    assert "no checkpoint to continue" in capsys.readouterr().err
    assert train_cli(["--out", str(tmp_path / "d")]) == 1
    assert "--steps" in capsys.readouterr().err
    assert train_cli(["--out", str(tmp_path / "e"), "--steps", "1", "--window-dropout", "1.5"]) == 1
    assert "--window-dropout is the share of questions" in capsys.readouterr().err


def test_existing_run_needs_resume(one_step_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(one_step_run, run)
    assert train_cli(["--out", str(run), "--steps", "2", *FAST]) == 1
    assert "--resume" in capsys.readouterr().err


def test_card_and_metrics_describe_the_run(one_step_run):
    latest = checkpointing.latest_checkpoint(one_step_run)
    card = json.loads((latest / "card.json").read_text())
    assert card["steps"] == 1 and card["preset"] == "tiny" and card["data"] == "world"
    assert card["command"].startswith("python -m training.train") and "--steps 1" in card["command"]
    assert card["machine"]["cpu_cores"] >= 1 and card["wall_seconds"] > 0
    assert card["fingerprint"] == StreamerModel.load(latest).fingerprint()
    with safe_open(str(latest / "model.safetensors"), "pt") as weights:  # its weights carry their checksum
        assert weights.metadata()[CHECKSUM] == weights_checksum({k: weights.get_tensor(k) for k in weights.keys()})
    train = [r for r in read_metrics(one_step_run) if r["kind"] == "train"]
    assert len(train) == 1
    for key in ("loss", "text_loss", "latent_loss", "video_loss", "answer_acc", "clips_per_s", "snippets_per_s"):
        assert isinstance(train[0][key], float) and math.isfinite(train[0][key]), (key, train[0][key])
    assert all(train[0][key] > 0 for key in ("loss", "text_loss", "clips_per_s", "snippets_per_s"))
    assert 0.0 <= train[0]["answer_acc"] <= 1.0 and train[0]["latent_loss"] >= 0 and train[0]["video_loss"] >= 0
    assert train[0]["questions"] > 0 and train[0]["snippets"] >= 4


def test_one_length_a_step_gives_every_clip_of_a_step_the_same_length(tmp_path):
    run = tmp_path / "even"
    assert train_cli(["--out", str(run), "--steps", "4", *FAST, "--batch", "3", "--snippets", "2-5",
                      "--one-length-a-step"]) == 0  # the later --batch and --snippets win
    snippets = [r["snippets"] for r in read_metrics(run) if r["kind"] == "train"]
    assert len(snippets) == 4 and all(n % 3 == 0 and 2 <= n // 3 <= 5 for n in snippets)  # three clips of one length
    assert "--one-length-a-step" in checkpointing.read_card(checkpointing.latest_checkpoint(run))["command"]


def test_plot_run_writes_a_png(one_step_run, tmp_path):
    from streamer.cli import main as streamer_main

    out = tmp_path / "curves.png"
    assert streamer_main(["plot-run", str(one_step_run), "--out", str(out)]) == 0
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert streamer_main(["plot-run", str(tmp_path / "nothing")]) == 2


def test_folder_dataset_trains_by_epochs_and_evaluates(tmp_path, capsys):
    """A dataset written as real mp4 files trains (decoded through File + Chunker) and evaluates."""
    from streamer.cli import main as streamer_main
    from training.world.clip import WorldConfig
    from training.world.media_files import write_dataset

    data = tmp_path / "data"
    write_dataset(data, WorldConfig.preset("train", snippets=(2, 3), questions_per_clip=3), clips=2,
                  progress=False)
    run = tmp_path / "run"
    args = ["--out", str(run), "--data", str(data), "--epochs", "1", *FAST]
    assert train_cli(args) == 0
    assert checkpointing.read_trainer_state(checkpointing.latest_checkpoint(run))["step"] == 1  # 2 clips / batch 2
    capsys.readouterr()
    assert streamer_main(["eval", str(run), "--data", str(data), "--max-new-tokens", "2", "--no-progress",
                          "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["results"][str(data)]["clips"] == 2
    assert report["results"][str(data)]["questions"] >= 2


@pytest.mark.parametrize("damage, message", [
    ("truncate", "optimizer.safetensors is corrupt or truncated"),
    ("flip", "optimizer.safetensors fails its checksum"),
    ("trainer.json", "trainer.json cannot be read"),
])
def test_a_damaged_training_checkpoint_is_refused_naming_the_file(one_step_run, tmp_path, capsys, damage, message):
    run = tmp_path / "run"
    shutil.copytree(one_step_run, run)
    latest = checkpointing.latest_checkpoint(run)
    optimizer = latest / checkpointing.OPTIMIZER_FILE
    data = bytearray(optimizer.read_bytes())
    if damage == "truncate":
        optimizer.write_bytes(bytes(data[: len(data) // 2]))
    elif damage == "flip":
        data[len(data) // 2] ^= 0x10
        optimizer.write_bytes(bytes(data))
    else:
        (latest / checkpointing.TRAINER_FILE).write_text("{torn")
    assert train_cli(["--out", str(run), "--steps", "2", *FAST, "--resume"]) == 1
    err = capsys.readouterr().err
    assert message in err and "cannot be resumed" in err and str(run / "latest") in err


def test_init_from_an_exported_model_with_a_calibrated_threshold(one_step_run, tmp_path):
    """A shipped checkpoint (threshold calibrated at export) fine-tunes under its own preset."""
    exported = StreamerModel.load(checkpointing.latest_checkpoint(one_step_run))
    exported.cfg.align.watch_threshold = 0.375
    exported.save(tmp_path / "exported")
    run = tmp_path / "run"
    assert train_cli(["--out", str(run), "--steps", "1", "--init", str(tmp_path / "exported"), "--lr", "1e-9",
                      *FAST]) == 0
    kept = exported.state_dict()
    tuned = _weights(run)
    assert set(tuned) == set(kept)
    for name, tensor in kept.items():
        torch.testing.assert_close(tuned[name], tensor, atol=1e-6, rtol=0)


def test_init_grows_the_latent_window_and_keeps_every_weight(one_step_run, tmp_path):
    """--latent-window over an --init checkpoint's: new ages start as its oldest, the rest is kept."""
    old, grown = _tuned_over(one_step_run, tmp_path / "run", "--latent-window", "12", "--window-dropout", "0.5")
    assert grown.cfg.latent.window == 12
    tuned = grown.state_dict()
    ages = old["decoder.age_emb"]
    assert tuned["decoder.age_emb"].shape[0] == 12 and ages.shape[0] == 8
    torch.testing.assert_close(tuned["decoder.age_emb"][:8], ages, atol=1e-6, rtol=0)
    torch.testing.assert_close(tuned["decoder.age_emb"][8:], ages[-1:].expand(4, -1, -1), atol=1e-6, rtol=0)
    _assert_kept(old, tuned, "decoder.age_emb")
    assert train_cli(["--out", str(tmp_path / "bad"), "--steps", "1", "--latent-window", "0", *FAST]) == 1


def test_init_grows_the_decoder_and_keeps_every_weight(one_step_run, tmp_path, capsys):
    """--decoder-layers over an --init checkpoint's: one more block after the last (tested in
    test_grow_decoder.py), every old weight kept."""
    layers = StreamerModel.load(checkpointing.latest_checkpoint(one_step_run)).cfg.decoder.layers
    new_block = ["--lr-scales", f"decoder.blocks.{layers}.=10"]  # the new block learns faster
    old, grown = _tuned_over(one_step_run, tmp_path / "run", "--decoder-layers", str(layers + 1), *new_block)
    assert grown.cfg.decoder.layers == layers + 1
    _assert_kept(old, grown.state_dict())
    card = json.loads((checkpointing.latest_checkpoint(tmp_path / "run") / "card.json").read_text())
    assert card["train_config"]["decoder_layers"] == layers + 1
    assert card["train_config"]["lr_scales"] == [[f"decoder.blocks.{layers}.", 10.0]]
    init = ["--init", str(checkpointing.latest_checkpoint(one_step_run)), "--decoder-layers", str(layers + 1)]
    assert train_cli(["--out", str(tmp_path / "run"), "--steps", "2", *init, *new_block, "--lr", "1e-9", *FAST,
                      "--resume"]) == 0  # the saved optimizer state fits the groups again
    capsys.readouterr()
    assert train_cli(["--out", str(tmp_path / "typo"), "--steps", "1", *init, "--lr-scales", "decoder.block.9.=10",
                      *FAST]) == 1
    assert "no parameter's name starts with decoder.block.9." in capsys.readouterr().err
    assert train_cli(["--out", str(tmp_path / "zero"), "--steps", "1", "--lr-scales", "decoder.=0", *FAST]) == 1
    assert "multiples of --lr > 0" in capsys.readouterr().err
    assert train_cli(["--out", str(tmp_path / "bad"), "--steps", "1", "--decoder-layers", "0", *FAST]) == 1
    assert "--decoder-layers must be at least 1" in capsys.readouterr().err


def test_init_adds_an_age_code_and_keeps_every_weight(one_step_run, tmp_path, capsys):
    """--age-code over an --init checkpoint: the same weights, the code recorded in the config;
    a checkpoint with a code is not silently read without it."""
    run = tmp_path / "run"
    old, coded = _tuned_over(one_step_run, run, "--age-code", "0.1")
    assert coded.cfg.decoder.age_code == 0.1
    tuned = coded.state_dict()
    assert set(tuned) == set(old)
    _assert_kept(old, tuned)
    capsys.readouterr()
    assert train_cli(["--out", str(tmp_path / "plain"), "--steps", "1", "--init",
                      str(checkpointing.latest_checkpoint(run)), *FAST]) == 1
    assert "decoder.age_code: 0.1 vs 0.0" in capsys.readouterr().err
    assert train_cli(["--out", str(tmp_path / "bad"), "--steps", "1", "--age-code", "-1", *FAST]) == 1
    assert "--age-code must be 0 (off) or a positive amplitude" in capsys.readouterr().err


@pytest.mark.parametrize("flag, field, part, start", [("--age-slopes", "age_slopes", "decoder.age_slopes", 0.0),
                                                     ("--length-scale", "length_scale", "decoder.length_scales", 1.0)])
def test_init_adds_a_decoder_part_and_keeps_every_weight(one_step_run, tmp_path, capsys, flag, field, part, start):
    """--age-slopes (new slopes of zero) or --length-scale (new gains of one) over an --init
    checkpoint: every weight kept; a checkpoint with the part is not silently read without it."""
    run = tmp_path / "run"
    old, grown = _tuned_over(one_step_run, run, flag)
    assert getattr(grown.cfg.decoder, field) is True
    tuned = grown.state_dict()
    assert set(tuned) - set(old) == {part}
    torch.testing.assert_close(tuned[part], torch.full_like(tuned[part], start), atol=1e-6, rtol=0)
    _assert_kept(old, tuned)
    capsys.readouterr()
    assert train_cli(["--out", str(tmp_path / "plain"), "--steps", "1", "--init",
                      str(checkpointing.latest_checkpoint(run)), *FAST]) == 1
    assert f"decoder.{field}: True vs False" in capsys.readouterr().err


def test_init_adds_a_first_sight_head_and_trains_it(one_step_run, tmp_path, capsys):
    """--first-sight over an --init checkpoint: a new head and cues of zero (the context is
    unchanged), every other weight kept, the loss logged and weighted; the flag needs world data."""
    run = tmp_path / "run"
    old, grown = _tuned_over(one_step_run, run, "--first-sight", "0.5")
    assert grown.cfg.decoder.first_sight_classes == len(FIRST_SIGHT_CLASSES)
    tuned = grown.state_dict()
    assert set(tuned) - set(old) == {"decoder.first_sight_head.weight", "decoder.first_sight_head.bias",
                                     "decoder.first_sight_cues"}
    assert float(tuned["decoder.first_sight_cues"].abs().max()) < 1e-6
    _assert_kept(old, tuned, "decoder.first_sight_cues")
    train = [r for r in read_metrics(run) if r["kind"] == "train"]
    assert train[0]["first_sight_loss"] > 0
    card = json.loads((checkpointing.latest_checkpoint(run) / "card.json").read_text())
    assert card["loss_weights"]["first_sight"] == 0.5
    capsys.readouterr()
    assert train_cli(["--out", str(tmp_path / "plain"), "--steps", "1", "--init",
                      str(checkpointing.latest_checkpoint(run)), *FAST]) == 1
    assert f"decoder.first_sight_classes: {len(FIRST_SIGHT_CLASSES)} vs 0" in capsys.readouterr().err
    assert train_cli(["--out", str(tmp_path / "folder"), "--steps", "1", "--data", str(tmp_path),
                      "--first-sight", "0.5", *FAST]) == 1
    err = capsys.readouterr().err
    assert "--first-sight" in err and "needs --data world" in err


def test_init_adds_first_sight_tokens_with_the_head(one_step_run, tmp_path, capsys):
    """--first-sight with --first-sight-tokens over an --init checkpoint without a head: head,
    cues and tokens start fresh, every other weight is kept; the tokens alone are refused."""
    run = tmp_path / "run"
    old, grown = _tuned_over(one_step_run, run, "--first-sight", "0.5", "--first-sight-tokens")
    assert grown.cfg.decoder.first_sight_tokens is True
    tuned = grown.state_dict()
    assert set(tuned) - set(old) == {"decoder.first_sight_head.weight", "decoder.first_sight_head.bias",
                                     "decoder.first_sight_cues", "decoder.first_sight_token_class.weight",
                                     "decoder.first_sight_token_features.weight",
                                     "decoder.first_sight_token_features.bias"}
    _assert_kept(old, tuned)
    capsys.readouterr()
    assert train_cli(["--out", str(tmp_path / "alone"), "--steps", "1", "--first-sight-tokens", *FAST]) == 1
    assert "pass --first-sight W" in capsys.readouterr().err


def test_init_codes_the_first_sight_tokens_ages(one_step_run, tmp_path, capsys):
    """--first-sight-age-code adds no weight: the amplitude is recorded in the config; it needs
    the first-sight tokens and a non-negative amplitude."""
    old, coded = _tuned_over(one_step_run, tmp_path / "run", "--first-sight", "0.5", "--first-sight-tokens",
                             "--first-sight-age-code", "1")
    assert coded.cfg.decoder.first_sight_age_code == 1.0
    assert not [n for n in coded.state_dict() if "age_code" in n]
    _assert_kept(old, coded.state_dict())
    capsys.readouterr()
    assert train_cli(["--out", str(tmp_path / "alone"), "--steps", "1", "--first-sight", "0.5",
                      "--first-sight-age-code", "1", *FAST]) == 1
    assert "pass --first-sight-tokens" in capsys.readouterr().err
    assert train_cli(["--out", str(tmp_path / "bad"), "--steps", "1", "--first-sight", "0.5", "--first-sight-tokens",
                      "--first-sight-age-code", "-1", *FAST]) == 1
    assert "--first-sight-age-code must be 0 (off) or a positive amplitude" in capsys.readouterr().err


def test_first_sight_drills_are_trained_and_logged(one_step_run, tmp_path, capsys):
    """--first-sight-drills adds drill questions to every step and --clip-drills drills over the
    step's clips (their losses logged and in the loss); both need the first-sight tokens."""
    run = tmp_path / "run"
    assert train_cli(["--out", str(run), "--steps", "2", "--init", str(checkpointing.latest_checkpoint(one_step_run)),
                      "--first-sight", "0.5", "--first-sight-tokens", "--first-sight-drills", "6",
                      "--clip-drills", "4", *FAST, "--snippets", "6-8"]) == 0
    train = [r for r in read_metrics(run) if r["kind"] == "train"]
    assert len(train) == 2 and all(r["drill_loss"] > 0 and r["clip_drill_loss"] > 0 for r in train)
    card = json.loads((checkpointing.latest_checkpoint(run) / "card.json").read_text())
    assert card["train_config"]["first_sight_drills"] == 6 and card["train_config"]["clip_drills"] == 4
    capsys.readouterr()
    for flag in ("--first-sight-drills", "--clip-drills"):
        assert train_cli(["--out", str(tmp_path / "alone"), "--steps", "1", "--first-sight", "0.5",
                          flag, "6", *FAST]) == 1
        assert "pass --first-sight-tokens" in capsys.readouterr().err
    assert train_cli(["--out", str(tmp_path / "alone"), "--steps", "1", "--first-sight", "0.5",
                      "--first-sight-tokens", "--clip-drills", "-1", *FAST]) == 1
    assert "--clip-drills is a number of questions per clip" in capsys.readouterr().err


def test_init_trains_the_first_sight_read_loss(one_step_run, tmp_path, capsys):
    """--first-sight-read over an --init checkpoint: the loss of `order` answers is logged and
    weighed; --first-sight-age-slopes adds the slopes and --first-sight-query-slopes the queries' own; --first-sight-only makes
    half the `order` questions read the first-sight tokens alone. All need the first-sight tokens."""
    run = tmp_path / "run"
    assert train_cli(["--out", str(run), "--steps", "1", "--init", str(checkpointing.latest_checkpoint(one_step_run)),
                      "--first-sight", "0.5", "--first-sight-tokens", "--first-sight-age-slopes",
                      "--first-sight-query-slopes", "--first-sight-read", "0.2", "--first-sight-only", "0.5", "--kind-weights", "order=100", *FAST,
                      "--snippets", "5-6"]) == 0  # long enough for `order`
    grown = StreamerModel.load(checkpointing.latest_checkpoint(run))
    assert grown.cfg.decoder.first_sight_age_slopes and "decoder.first_sight_age_slopes" in grown.state_dict()
    assert grown.cfg.decoder.first_sight_query_slopes and grown.decoder.first_sight_query_slopes.any()  # trained
    train = [r for r in read_metrics(run) if r["kind"] == "train"]
    assert train[0]["first_sight_read_loss"] > 0
    card = json.loads((checkpointing.latest_checkpoint(run) / "card.json").read_text())
    assert card["loss_weights"]["first_sight_read"] == 0.2
    capsys.readouterr()
    assert train_cli(["--out", str(tmp_path / "alone"), "--steps", "1", "--first-sight", "0.5",
                      "--first-sight-read", "0.2", *FAST]) == 1
    assert "pass --first-sight-tokens" in capsys.readouterr().err
    assert train_cli(["--out", str(tmp_path / "alone"), "--steps", "1", "--first-sight", "0.5",
                      "--first-sight-tokens", "--first-sight-query-slopes", *FAST]) == 1
    assert "pass --first-sight-age-slopes" in capsys.readouterr().err
    assert train_cli(["--out", str(tmp_path / "alone2"), "--steps", "1", "--first-sight", "0.5",
                      "--first-sight-age-slopes", *FAST]) == 1
    assert "pass --first-sight-tokens" in capsys.readouterr().err
    assert train_cli(["--out", str(tmp_path / "alone3"), "--steps", "1", "--first-sight", "0.5",
                      "--first-sight-only", "0.5", *FAST]) == 1
    assert "pass --first-sight-tokens" in capsys.readouterr().err
    assert train_cli(["--out", str(tmp_path / "share"), "--steps", "1", "--first-sight", "0.5",
                      "--first-sight-tokens", "--first-sight-only", "2", *FAST]) == 1
    assert "between 0 and 1" in capsys.readouterr().err


def test_init_trains_a_first_sight_pointer(one_step_run, tmp_path, capsys):
    """--first-sight-pointer over an --init checkpoint: the pointer's parts are added, its loss
    (which classes each question names) is logged and weighed; it needs the first-sight tokens."""
    run = tmp_path / "run"
    assert train_cli(["--out", str(run), "--steps", "1", "--init", str(checkpointing.latest_checkpoint(one_step_run)),
                      "--first-sight", "0.5", "--first-sight-tokens", "--first-sight-pointer", "0.4",
                      "--kind-weights", "order=100", *FAST, "--snippets", "5-6"]) == 0
    grown = StreamerModel.load(checkpointing.latest_checkpoint(run))
    assert grown.cfg.decoder.first_sight_pointer and grown.decoder.first_sight_pointer.any()  # trained
    train = [r for r in read_metrics(run) if r["kind"] == "train"]
    assert train[0]["first_sight_pointer_loss"] > 0
    card = json.loads((checkpointing.latest_checkpoint(run) / "card.json").read_text())
    assert card["loss_weights"]["first_sight_pointer"] == 0.4
    capsys.readouterr()
    assert train_cli(["--out", str(tmp_path / "alone"), "--steps", "1", "--first-sight", "0.5",
                      "--first-sight-pointer", "0.4", *FAST]) == 1
    assert "pass --first-sight-tokens" in capsys.readouterr().err
    assert train_cli(["--out", str(tmp_path / "negative"), "--steps", "1", "--first-sight", "0.5",
                      "--first-sight-tokens", "--first-sight-pointer", "-1", *FAST]) == 1
    assert "--first-sight-pointer must be 0 or a positive loss weight" in capsys.readouterr().err
    looked = tmp_path / "lookup"
    assert train_cli(["--out", str(looked), "--steps", "1", "--init", str(checkpointing.latest_checkpoint(run)),
                      "--first-sight", "0.5", "--first-sight-tokens", "--first-sight-pointer", "0.4",
                      "--first-sight-lookup", "--kind-weights", "order=100", *FAST, "--snippets", "5-6"]) == 0
    grown = StreamerModel.load(checkpointing.latest_checkpoint(looked))
    assert grown.cfg.decoder.first_sight_lookup and grown.decoder.first_sight_lookup.any()  # added at zero, trained
    capsys.readouterr()
    assert train_cli(["--out", str(tmp_path / "lookup-alone"), "--steps", "1", "--first-sight", "0.5",
                      "--first-sight-tokens", "--first-sight-lookup", *FAST]) == 1
    assert "pass --first-sight-pointer" in capsys.readouterr().err


def test_init_gives_the_first_sight_tokens_company(one_step_run, tmp_path, capsys):
    """--first-sight-company over an --init checkpoint: the projection is added at zero and trained;
    it needs the first-sight tokens."""
    run = tmp_path / "run"
    assert train_cli(["--out", str(run), "--steps", "1", "--init", str(checkpointing.latest_checkpoint(one_step_run)),
                      "--first-sight", "0.5", "--first-sight-tokens", "--first-sight-company",
                      "--kind-weights", "sound_of=100", *FAST, "--snippets", "5-6"]) == 0
    grown = StreamerModel.load(checkpointing.latest_checkpoint(run))
    assert grown.cfg.decoder.first_sight_company and grown.decoder.first_sight_company.any()  # trained
    capsys.readouterr()
    assert train_cli(["--out", str(tmp_path / "alone"), "--steps", "1", "--first-sight", "0.5",
                      "--first-sight-company", *FAST]) == 1
    assert "pass --first-sight-tokens" in capsys.readouterr().err
    assert train_cli(["--out", str(tmp_path / "only"), "--steps", "1", "--first-sight", "0.5", "--first-sight-tokens",
                      "--company-only", "0.5", *FAST]) == 1
    assert "pass --first-sight-company" in capsys.readouterr().err
    assert train_cli(["--out", str(tmp_path / "share"), "--steps", "1", "--first-sight", "0.5", "--first-sight-tokens",
                      "--first-sight-company", "--company-only", "1.5", *FAST]) == 1
    assert "between 0 and 1" in capsys.readouterr().err
    read = tmp_path / "read"
    assert train_cli(["--out", str(read), "--steps", "1", "--init", str(checkpointing.latest_checkpoint(run)),
                      "--first-sight", "0.5", "--first-sight-tokens", "--first-sight-company", "--first-sight-read", "0.2",
                      "--read-kinds", "sound_of", "--kind-weights", "sound_of=100", *FAST, "--snippets", "5-6"]) == 0
    assert [r for r in read_metrics(read) if r["kind"] == "train"][0]["first_sight_read_loss"] > 0
    assert train_cli(["--out", str(tmp_path / "kinds"), "--steps", "1", "--first-sight", "0.5", "--first-sight-tokens",
                      "--first-sight-read", "0.2", "--read-kinds", "sound_of,count_now", *FAST]) == 1
    assert "--read-kinds names" in capsys.readouterr().err
    apart = tmp_path / "apart"
    assert train_cli(["--out", str(apart), "--steps", "1", "--init", str(checkpointing.latest_checkpoint(run)),
                      "--first-sight", "0.5", "--first-sight-tokens", "--first-sight-company", "--first-sight-read", "0.2",
                      "--read-kinds", "who_made", "--read-sounds-apart", "--kind-weights", "who_made=100", *FAST,
                      "--snippets", "5-6"]) == 0
    assert [r for r in read_metrics(apart) if r["kind"] == "train"][0]["first_sight_read_loss"] > 0
    assert train_cli(["--out", str(tmp_path / "apart-alone"), "--steps", "1", "--first-sight", "0.5",
                      "--first-sight-tokens", "--read-sounds-apart", *FAST]) == 1
    assert "pass --first-sight-read" in capsys.readouterr().err


def test_init_gives_the_first_sight_head_its_own_hearing(one_step_run, tmp_path, capsys):
    """--first-sight-hearing over an --init checkpoint: the hearing head starts fresh, learns from
    the first-sight loss at the fast parts' rate, and the state keeps its sounds; it needs a
    first-sight head."""
    run = tmp_path / "run"
    assert train_cli(["--out", str(run), "--steps", "2", "--init", str(checkpointing.latest_checkpoint(one_step_run)),
                      "--first-sight", "0.5", "--first-sight-tokens", "--first-sight-company", "--first-sight-hearing",
                      *FAST]) == 0
    grown = StreamerModel.load(checkpointing.latest_checkpoint(run))
    assert grown.cfg.decoder.first_sight_sounds == len(SOUNDS)
    assert grown.cfg.decoder.first_sight_classes == len(FIRST_SIGHT_CLASSES)
    assert grown.init_state(1)["heard_window"].shape == (1, grown.cfg.latent.window, len(SOUNDS))
    groups = parameter_groups(grown, 0.1)
    hearing = {id(p) for p in grown.decoder.first_sight_hearing.parameters()}
    assert all(g["lr_scale"] == FAST_PART_LR_SCALE for g in groups if hearing & {id(p) for p in g["params"]})
    capsys.readouterr()
    assert train_cli(["--out", str(tmp_path / "alone"), "--steps", "1", "--first-sight-hearing", *FAST]) == 1
    assert "pass --first-sight W" in capsys.readouterr().err
    counting = tmp_path / "counting"  # then the counter over the hearing run, trained on the world's plays
    assert train_cli(["--out", str(counting), "--steps", "1", "--init", str(checkpointing.latest_checkpoint(run)),
                      "--first-sight", "0.5", "--first-sight-tokens", "--first-sight-company", "--first-sight-hearing",
                      "--first-sight-onsets", "--kind-weights", "count_sound=100", *FAST, "--snippets", "5-6"]) == 0
    counted = StreamerModel.load(checkpointing.latest_checkpoint(counting))
    assert counted.cfg.decoder.first_sight_onsets and counted.decoder.first_sight_onsets.any()  # trained
    assert counted.init_state(1)["heard_window"].shape[-1] == 2 * len(SOUNDS)
    capsys.readouterr()
    assert train_cli(["--out", str(tmp_path / "deaf"), "--steps", "1", "--first-sight", "0.5", "--first-sight-tokens",
                      "--first-sight-onsets", *FAST]) == 1
    assert "pass --first-sight-hearing" in capsys.readouterr().err


def test_init_gates_the_memory_and_keeps_every_weight(one_step_run, tmp_path, capsys):
    """--memory-update gated over a pooled --init checkpoint: new gates, every other weight kept."""
    run = tmp_path / "run"
    old, gated = _tuned_over(one_step_run, run, "--memory-update", "gated")
    assert gated.cfg.combiner.memory_update == "gated"
    tuned = gated.state_dict()
    assert set(tuned) - set(old) == {"combiner.write_gate.weight", "combiner.write_gate.bias"}
    _assert_kept(old, tuned)
    bias = tuned["combiner.write_gate.bias"]  # timescales from about a snippet to about a minute
    assert torch.sigmoid(bias).max() > 0.9 and torch.sigmoid(bias).min() < 0.01
    # Back to pooled writes would drop what the gates learned: refused, naming the field.
    capsys.readouterr()
    gated_checkpoint = str(checkpointing.latest_checkpoint(run))
    assert train_cli(["--out", str(tmp_path / "back"), "--steps", "1", "--init", gated_checkpoint,
                      "--memory-update", "pool", *FAST]) == 1
    assert "combiner.memory_update: gated vs pool" in capsys.readouterr().err


def test_init_from_a_checkpoint_without_an_alignment_head_keeps_its_weights_and_grows_one(tmp_path):
    import dataclasses

    from model import ModelConfig
    from model.config import LEGACY_DEFAULTS, AlignConfig

    cfg = ModelConfig.from_name("tiny")
    headless = dataclasses.replace(cfg, align=AlignConfig(**LEGACY_DEFAULTS["align"]),
                                   loss=dataclasses.replace(cfg.loss, align=0.0))
    torch.manual_seed(3)
    old = StreamerModel(headless)
    old.save(tmp_path / "old")
    run = tmp_path / "run"
    assert train_cli(["--out", str(run), "--steps", "1", "--init", str(tmp_path / "old"), "--lr", "1e-9",
                      "--kind-weights", "direction=3", *FAST]) == 0
    grown = _weights(run)
    kept = old.state_dict()
    assert {n for n in grown if n not in kept} and all(n.startswith("align.") for n in grown if n not in kept)
    for name, tensor in kept.items():
        torch.testing.assert_close(grown[name], tensor, atol=1e-6, rtol=0)
    train = [r for r in read_metrics(run) if r["kind"] == "train"]
    assert train[0]["align_loss"] > 0
