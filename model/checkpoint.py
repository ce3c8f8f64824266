"""Checkpoint folders: `model.safetensors` + `config.json` + `tokenizer.json` (no pickle).

This module reads and writes a checkpoint as (config, tensors); `StreamerModel.load/save`
build a model from that, so the file format never needs the model class. Loading checks
everything before building anything a user would run: files present, JSON readable,
safetensors header intact, exactly the expected tensor names, shapes and dtypes. Every
failure is a ValueError that names the file and what to do.

Weights may be stored in a narrower float type than the model computes in (`save(dir,
dtype=torch.float16)` halves a shipped checkpoint); loading widens them back, and the
fingerprint is that of the widened weights, so it names what actually runs.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from model.config import ModelConfig
from model.tokenizer import Tokenizer

# The one place that names the files of a checkpoint folder. `card.json` (how the weights
# were trained and what they scored) is written and read by `training`, not needed to load.
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
TOKENIZER = "tokenizer.json"
CARD = "card.json"
MODEL_FILES = (WEIGHTS, CONFIG, TOKENIZER)

STORAGE_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def write_checkpoint(directory: str | Path, cfg: ModelConfig, weights: dict[str, torch.Tensor],
                     tokenizer: Tokenizer, dtype: torch.dtype | None = None) -> str:
    """Write the checkpoint; `dtype` stores floating weights narrower (float16, bfloat16).
    Returns the fingerprint of the weights as they load back."""
    if dtype is not None and dtype not in STORAGE_DTYPES:
        raise ValueError(f"weights can be stored as {', '.join(map(str, STORAGE_DTYPES))}, not {dtype}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    computed = {name: t.detach().contiguous().cpu() for name, t in weights.items()}
    stored = {name: t.to(dtype) if dtype is not None and t.is_floating_point() else t for name, t in computed.items()}
    as_loaded = {name: stored[name].to(t.dtype) for name, t in computed.items()}
    saved_fingerprint = fingerprint(cfg, as_loaded)
    save_file(stored, str(directory / WEIGHTS), metadata={"fingerprint": saved_fingerprint})
    (directory / CONFIG).write_text(json.dumps(cfg.to_dict(), indent=2) + "\n", encoding="utf-8")
    tokenizer.save(directory / TOKENIZER)
    return saved_fingerprint


def read_config(directory: str | Path) -> ModelConfig:
    """The model config of a checkpoint folder, checked field by field."""
    path = Path(directory) / CONFIG
    try:
        config_data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read {path}: {err}") from None
    try:
        return ModelConfig.from_dict(config_data)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path} is not a valid model config: {err}") from None


def read_checkpoint(directory: str | Path) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """The config and the stored tensors of a checkpoint folder, every file checked first.
    `fit_weights` then checks the tensors against the model the config builds."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"checkpoint folder {directory} does not exist")
    for name in MODEL_FILES:
        if not (directory / name).is_file():
            raise ValueError(f"checkpoint {directory} has no {name}; a checkpoint holds {WEIGHTS}, {CONFIG}, {TOKENIZER}")
    cfg = read_config(directory)
    Tokenizer.load(directory / TOKENIZER)
    try:
        tensors = load_file(str(directory / WEIGHTS))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise ValueError(f"{directory / WEIGHTS} is corrupt or truncated ({err}); re-copy or re-train the checkpoint") from None
    return cfg, tensors


def fit_weights(directory: str | Path, tensors: dict[str, torch.Tensor],
                expected: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`tensors` checked against the model's own `expected` ones (names, shapes, dtypes) and
    widened to the dtypes the model computes in."""
    weights = Path(directory) / WEIGHTS
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"{weights} does not match its {CONFIG}: missing {missing[:5]}, unexpected "
            f"{unexpected[:5]}; the weights and config come from different models"
        )
    fitted = {}
    for name, tensor in tensors.items():
        want = expected[name]
        widened = tensor.is_floating_point() and want.is_floating_point() and tensor.dtype in STORAGE_DTYPES
        if tensor.shape != want.shape or (tensor.dtype != want.dtype and not widened):
            raise ValueError(
                f"{weights}: tensor {name} is {tuple(tensor.shape)} {tensor.dtype}, {CONFIG} needs "
                f"{tuple(want.shape)} {want.dtype}; the weights and config do not belong together"
            )
        fitted[name] = tensor.to(want.dtype)
    return fitted


def fingerprint(cfg: ModelConfig, state: dict[str, torch.Tensor]) -> str:
    """sha256 over the canonical config JSON and every tensor's name, dtype, shape and bytes."""
    digest = hashlib.sha256()
    digest.update(json.dumps(cfg.fingerprint_dict(), sort_keys=True).encode())
    for name, tensor in sorted(state.items()):
        t = tensor.detach().contiguous().cpu()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
