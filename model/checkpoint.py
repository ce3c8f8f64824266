"""Checkpoint folders: `model.safetensors` + `config.json` + `tokenizer.json` (no pickle).

This module reads and writes a checkpoint as (config, tensors); `StreamerModel.load/save`
build a model from that, so the file format never needs the model class. Loading checks
everything before building anything a user would run: files present, JSON readable,
safetensors header intact, the weights' checksum, finite values, exactly the expected
tensor names, shapes and dtypes. Every failure is a ValueError that names the file and
what to do.

The checksum (`weights_sha256` in the safetensors metadata) covers every stored tensor's
name, dtype, shape and bytes, so a flipped bit anywhere in the weights is caught before it
answers; it costs one sha256 pass over the file, small next to building the model.
Checkpoints written before it existed carry none and load unchecked (re-export one to add
it). `write_safetensors`/`read_safetensors` write and check it for every safetensors file
of a checkpoint (training's optimizer state too). Non-finite weights are refused both
ways: a NaN weight makes every answer garbage.

Weights may be stored in a narrower float type than the model computes in (`save(dir,
dtype=torch.float16)` halves a shipped checkpoint); loading widens them back, and the
fingerprint is that of the widened weights, so it names what actually runs.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

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
CHECKSUM = "weights_sha256"  # safetensors metadata key: `weights_checksum` of the stored tensors


def write_checkpoint(directory: str | Path, cfg: ModelConfig, weights: dict[str, torch.Tensor],
                     tokenizer: Tokenizer, dtype: torch.dtype | None = None) -> str:
    """Write the checkpoint; `dtype` stores floating weights narrower (float16, bfloat16).
    Returns the fingerprint of the weights as they load back."""
    if dtype is not None and dtype not in STORAGE_DTYPES:
        raise ValueError(f"weights can be stored as {', '.join(map(str, STORAGE_DTYPES))}, not {dtype}")
    directory = Path(directory)
    computed = {name: t.detach().contiguous().cpu() for name, t in weights.items()}
    if bad := _non_finite(computed):
        raise ValueError(f"{_named(bad)} NaN or infinite values; not writing {directory}, a checkpoint that cannot "
                         "answer (the model diverged: go back to an earlier checkpoint or lower the learning rate)")
    stored = {name: t.to(dtype) if dtype is not None and t.is_floating_point() else t for name, t in computed.items()}
    if bad := _non_finite(stored):
        largest = float(computed[bad[0]].abs().max())
        raise ValueError(f"{_named(bad)} values too large for {dtype} (up to {largest:g}); store the weights "
                         "as bfloat16 or float32")
    directory.mkdir(parents=True, exist_ok=True)
    as_loaded = {name: stored[name].to(t.dtype) for name, t in computed.items()}
    saved_fingerprint = fingerprint(cfg, as_loaded)
    write_safetensors(directory / WEIGHTS, stored, {"fingerprint": saved_fingerprint})
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
    path = directory / WEIGHTS
    tensors = read_safetensors(path, "copy the checkpoint again from where it came from, or re-train it")
    if bad := _non_finite(tensors):
        raise ValueError(f"{path}: {_named(bad)} NaN or infinite values; these weights cannot answer. "
                         "Use an earlier checkpoint of the run or re-train")
    return cfg, tensors


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor],
                      metadata: dict[str, str] | None = None) -> None:
    """Write `tensors` with `metadata` and the checksum `read_safetensors` checks."""
    save_file(tensors, str(path), metadata={**(metadata or {}), CHECKSUM: weights_checksum(tensors)})


def read_safetensors(path: Path, remedy: str) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file, checked against its checksum (files written before
    checksums existed carry none and load unchecked). A file that cannot be read whole, or whose
    tensors changed since they were written, is a ValueError ending in `remedy` (what to do)."""
    try:
        with safe_open(str(path), "pt") as stored:
            metadata = stored.metadata() or {}
            tensors = {name: stored.get_tensor(name) for name in stored.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise ValueError(f"{path} is corrupt or truncated ({err}); {remedy}") from None
    if CHECKSUM in metadata and metadata[CHECKSUM] != weights_checksum(tensors):
        raise ValueError(f"{path} fails its checksum: its tensors changed after they were written "
                         f"(a damaged copy or disk); {remedy}")
    return tensors


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
    _hash_tensors(digest, state)
    return digest.hexdigest()


def weights_checksum(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes as stored: what the file holds,
    independent of the config and of how safetensors lays the tensors out."""
    digest = hashlib.sha256()
    _hash_tensors(digest, tensors)
    return digest.hexdigest()


def _hash_tensors(digest, tensors: dict[str, torch.Tensor]) -> None:
    for name, tensor in sorted(tensors.items()):
        t = tensor.detach().contiguous().cpu()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy())


def _non_finite(tensors: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating tensors holding a NaN or an infinity, sorted. A float64 sum is
    non-finite exactly when an element is (finite float32 values cannot overflow it), and
    costs about half of a per-element test."""
    return [name for name, t in sorted(tensors.items())
            if t.is_floating_point() and not bool(t.sum(dtype=torch.float64).isfinite())]


def _named(names: list[str]) -> str:
    """'tensor a holds' or 'tensor a (and 2 more) hold' for an error message."""
    return f"tensor {names[0]} holds" if len(names) == 1 else f"tensor {names[0]} (and {len(names) - 1} more) hold"
