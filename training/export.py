"""`streamer export`: copy a checkpoint for shipping, weights stored in float16 or bfloat16.

    streamer export runs/tiny streamer/checkpoints/tiny --dtype float16

CHECKPOINT is a model folder or a training run (its latest checkpoint). Halves the weights
file. The card (training command, data, machine) and the run's curves and metrics come
along, but the card's evaluation is dropped: it measured other weights. Re-measure with
`streamer eval OUT --card ...`.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch

from model import StreamerModel
from model.checkpoint import CARD, WEIGHTS
from training import checkpointing

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
CARRIED_FILES = ("curves.png", "metrics.jsonl", "metrics.jsonl.gz")  # from the folder named


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="model folder or training run folder to export")
    parser.add_argument("out", type=Path, help="folder to write; must not hold a checkpoint already")
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="float16", help="weights storage type (default %(default)s)")


def export(checkpoint: Path, out: Path, dtype: str) -> dict:
    """Write the exported checkpoint and its card; returns the card."""
    if (out / WEIGHTS).exists():
        raise ValueError(f"{out} already holds a checkpoint; export into a new or empty folder")
    model_dir = checkpointing.resolve_model_dir(checkpoint)
    model = StreamerModel.load(model_dir, device="cpu")
    source_fingerprint = model.fingerprint()
    exported_fingerprint = model.save(out, dtype=DTYPES[dtype])
    card = checkpointing.read_card(model_dir)
    card.pop("evaluation", None)
    card["fingerprint"] = exported_fingerprint
    card["exported"] = {"from_fingerprint": source_fingerprint, "weights_dtype": dtype}
    checkpointing.write_json_atomic(out / CARD, card)
    for name in CARRIED_FILES:
        if (checkpoint / name).is_file():
            shutil.copy2(checkpoint / name, out / name)
    return card


def main(args: argparse.Namespace) -> int:
    try:
        export(args.checkpoint, args.out, args.dtype)
    except ValueError as err:
        print(f"streamer export: {err}", file=sys.stderr)
        return 2
    size = (args.out / WEIGHTS).stat().st_size
    print(f"wrote {args.out} ({size / 1e6:.1f} MB of {args.dtype} weights); its card has no evaluation yet: "
          f"run `streamer eval {args.out} --card` to measure these weights")
    return 0
