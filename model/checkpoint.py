"""Checkpoint folders: `model.safetensors` + `config.json` + `tokenizer.json` (no pickle).

Loading checks everything before building anything a user would run: files present,
JSON readable, safetensors header intact, exactly the expected tensor names, shapes and
dtypes. Every failure is a ValueError that names the file and what to do.

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

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
TOKENIZER = "tokenizer.json"


STORAGE_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def save_checkpoint(model, directory: str | Path, dtype: torch.dtype | None = None) -> str:
    """Write the checkpoint; `dtype` stores floating weights narrower (float16, bfloat16).
    Returns the fingerprint of the weights as they load back."""
    if dtype is not None and dtype not in STORAGE_DTYPES:
        raise ValueError(f"weights can be stored as {', '.join(map(str, STORAGE_DTYPES))}, not {dtype}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    computed = {name: t.detach().contiguous().cpu() for name, t in model.state_dict().items()}
    stored = {name: t.to(dtype) if dtype is not None and t.is_floating_point() else t for name, t in computed.items()}
    as_loaded = {name: stored[name].to(t.dtype) for name, t in computed.items()}
    saved_fingerprint = fingerprint(model.cfg, as_loaded)
    save_file(stored, str(directory / WEIGHTS), metadata={"fingerprint": saved_fingerprint})
    (directory / CONFIG).write_text(json.dumps(model.cfg.to_dict(), indent=2) + "\n", encoding="utf-8")
    model.tokenizer.save(directory / TOKENIZER)
    return saved_fingerprint


def load_checkpoint(directory: str | Path, device=None):
    from model.streamer_model import StreamerModel

    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"checkpoint folder {directory} does not exist")
    for name in (WEIGHTS, CONFIG, TOKENIZER):
        if not (directory / name).is_file():
            raise ValueError(f"checkpoint {directory} has no {name}; a checkpoint holds {WEIGHTS}, {CONFIG}, {TOKENIZER}")
    try:
        config_data = json.loads((directory / CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read {directory / CONFIG}: {err}") from None
    try:
        cfg = ModelConfig.from_dict(config_data)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{directory / CONFIG} is not a valid model config: {err}") from None
    Tokenizer.load(directory / TOKENIZER)
    try:
        tensors = load_file(str(directory / WEIGHTS))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise ValueError(f"{directory / WEIGHTS} is corrupt or truncated ({err}); re-copy or re-train the checkpoint") from None

    model = StreamerModel(cfg)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"{directory / WEIGHTS} does not match its config.json: missing {missing[:5]}, unexpected "
            f"{unexpected[:5]}; the weights and config come from different models"
        )
    for name, tensor in tensors.items():
        want = expected[name]
        widened = tensor.is_floating_point() and want.is_floating_point() and tensor.dtype in STORAGE_DTYPES
        if tensor.shape != want.shape or (tensor.dtype != want.dtype and not widened):
            raise ValueError(
                f"{directory / WEIGHTS}: tensor {name} is {tuple(tensor.shape)} {tensor.dtype}, config.json needs "
                f"{tuple(want.shape)} {want.dtype}; the weights and config do not belong together"
            )
        tensors[name] = tensor.to(want.dtype)
    model.load_state_dict(tensors, strict=True)
    if device is not None:
        model.to(device)
    model.eval()
    return model


def fingerprint(cfg: ModelConfig, state: dict[str, torch.Tensor]) -> str:
    """sha256 over the canonical config JSON and every tensor's name, dtype, shape and bytes."""
    digest = hashlib.sha256()
    digest.update(json.dumps(cfg.fingerprint_dict(), sort_keys=True).encode())
    for name, tensor in sorted(state.items()):
        t = tensor.detach().contiguous().cpu()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
