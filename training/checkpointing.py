"""Training checkpoints: atomic save and exact resume, without pickle.

Layout of a run folder (`streamer train --out RUN_DIR`):

    RUN_DIR/checkpoints/step-00000500/   a complete model folder (model.safetensors,
        config.json, tokenizer.json, card.json) plus optimizer.safetensors and trainer.json
    RUN_DIR/latest                       the name of the newest complete checkpoint
    RUN_DIR/metrics.jsonl                the metrics log

A checkpoint is written into a hidden temporary folder, every file fsynced, then renamed
into place, and only then does `latest` (itself replaced atomically) point at it. A crash
at any moment therefore leaves `latest` naming a complete checkpoint.

The optimizer state is split into tensors (safetensors) and plain values (JSON). Random
numbers are seeded from (seed, step, rank) at every step, so no generator state needs to
be stored for the data order and the run to continue bit for bit.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from model.checkpoint import CARD, WEIGHTS, read_safetensors, write_safetensors
from streamer.files import write_atomic

CHECKPOINTS = "checkpoints"
LATEST = "latest"
OPTIMIZER_FILE = "optimizer.safetensors"
TRAINER_FILE = "trainer.json"


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    for file in path.iterdir():
        if file.is_file():
            with open(file, "rb") as f:
                os.fsync(f.fileno())
    _fsync_dir(path)


def write_json_atomic(path: Path, data: Any) -> None:
    """A card or other JSON, written whole (`write_atomic`): readers see old or new, never half."""
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


# --- optimizer state without pickle ----------------------------------------------------


def optimizer_to_files(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split `optimizer.state_dict()` into named tensors and a JSON-able remainder."""
    state_dict = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    plain_state: dict[str, dict[str, Any]] = {}
    for index, entry in state_dict["state"].items():
        plain: dict[str, Any] = {}
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                plain[name] = value
        plain_state[str(index)] = plain
    return tensors, {"state": plain_state, "param_groups": state_dict["param_groups"]}


def optimizer_from_files(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    """Rebuild an optimizer state_dict from `optimizer_to_files` output."""
    state: dict[int, dict[str, Any]] = {int(k): dict(v) for k, v in meta["state"].items()}
    for key, value in tensors.items():
        _, index, name = key.split(".", 2)
        state.setdefault(int(index), {})[name] = value
    return {"state": state, "param_groups": meta["param_groups"]}


# --- save ------------------------------------------------------------------------------


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    trainer_state: dict[str, Any],
    card: dict[str, Any],
    keep_last: int = 2,
) -> Path:
    """Write checkpoint `step` atomically, point `latest` at it, prune older ones.

    `model` must offer `save(dir)` (the StreamerModel checkpoint format). Returns the
    final checkpoint folder.
    """
    run_dir = Path(run_dir)
    root = run_dir / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    name = checkpoint_name(step)
    tmp = root / f".tmp-{name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()

    model.save(tmp)
    tensors, meta = optimizer_to_files(optimizer)
    write_safetensors(tmp / OPTIMIZER_FILE, tensors)
    with open(tmp / TRAINER_FILE, "w", encoding="utf-8") as f:
        json.dump({**trainer_state, "step": step, "optimizer": meta}, f, indent=1)
    with open(tmp / CARD, "w", encoding="utf-8") as f:
        json.dump(card, f, indent=2)
    _fsync_tree(tmp)

    final = root / name
    if final.exists():  # re-saving a step (e.g. interrupted right after a periodic save)
        stale = root / f".old-{name}-{os.getpid()}"
        os.replace(final, stale)
        os.replace(tmp, final)
        shutil.rmtree(stale)
    else:
        os.replace(tmp, final)
    _fsync_dir(root)

    write_atomic(run_dir / LATEST, name + "\n")
    _fsync_dir(run_dir)

    _prune(root, keep=max(1, keep_last), current=name)
    return final


def _prune(root: Path, keep: int, current: str) -> None:
    """Delete leftovers of interrupted writes and all but the newest `keep` checkpoints."""
    for entry in root.iterdir():
        if entry.name.startswith((".tmp-", ".old-")) and entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
    steps = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-"))
    for old in steps[:-keep]:
        if old.name != current:
            shutil.rmtree(old, ignore_errors=True)


# --- find and load ---------------------------------------------------------------------


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint `latest` points at, or None when the run has none yet."""
    run_dir = Path(run_dir)
    pointer = run_dir / LATEST
    if not pointer.is_file():
        return None
    name = pointer.read_text(encoding="utf-8").strip()
    path = run_dir / CHECKPOINTS / name
    if not (path / TRAINER_FILE).is_file():
        raise ValueError(
            f"{pointer} names {name}, but {path} is not a complete checkpoint; "
            "the run folder was modified by hand — delete `latest` to start over"
        )
    return path


def last_checkpoints(run_dir: str | Path, count: int) -> list[Path]:
    """The newest `count` complete checkpoints of a run, oldest first, ending at `latest`."""
    latest = latest_checkpoint(run_dir)
    if latest is None:
        raise ValueError(f"{run_dir} is not a training run with a `{LATEST}` checkpoint")
    complete = sorted(p for p in latest.parent.iterdir()
                      if p.name.startswith("step-") and p.name <= latest.name and (p / TRAINER_FILE).is_file())
    if len(complete) < count:
        raise ValueError(f"{run_dir} keeps {len(complete)} checkpoint(s), fewer than the {count} asked for; "
                         f"train with --keep-last {count} (or more) to average them")
    return complete[-count:]


def resolve_model_dir(path: str | Path) -> Path:
    """A model folder from either a model folder or a training run folder (its latest)."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"checkpoint folder {path} does not exist")
    if (path / WEIGHTS).is_file():
        return path
    latest = latest_checkpoint(path)
    if latest is None:
        raise ValueError(
            f"{path} holds neither a model ({WEIGHTS}) nor a training run with a "
            f"`{LATEST}` checkpoint; pass a folder written by `streamer train --out`"
        )
    return latest


def _cannot_resume(path: Path) -> str:
    """What to do when `path`, a file of a training checkpoint, is damaged."""
    return (f"this checkpoint cannot be resumed: write the name of an earlier one into "
            f"{path.parent.parent.parent / LATEST}, or start a new run from its weights with --init")


def _unresumable(path: Path, why: str) -> ValueError:
    return ValueError(f"{path} {why}; {_cannot_resume(path)}")


def read_trainer_state(checkpoint: str | Path) -> dict[str, Any]:
    path = Path(checkpoint) / TRAINER_FILE
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as err:
        raise _unresumable(path, f"cannot be read ({err})") from None


def load_optimizer_state(checkpoint: str | Path, optimizer: torch.optim.Optimizer) -> None:
    """Restore the optimizer saved with a checkpoint into `optimizer` (same parameters); its
    file's checksum is checked like the weights' (files written before it have none)."""
    checkpoint = Path(checkpoint)
    meta = read_trainer_state(checkpoint)["optimizer"]
    path = checkpoint / OPTIMIZER_FILE
    state_dict = optimizer_from_files(read_safetensors(path, _cannot_resume(path)), meta)
    expected = sum(len(g["params"]) for g in optimizer.param_groups)
    saved = sum(len(g["params"]) for g in state_dict["param_groups"])
    if expected != saved:
        raise ValueError(
            f"the optimizer state in {checkpoint} covers {saved} parameters, the model has "
            f"{expected}; it belongs to another architecture"
        )
    optimizer.load_state_dict(state_dict)


def read_card(model_dir: str | Path) -> dict[str, Any]:
    path = Path(model_dir) / CARD
    if not path.is_file():
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)
