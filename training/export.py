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
from training.align_eval import calibrate_threshold, embed_world

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
CARRIED_FILES = ("curves.png", "metrics.jsonl", "metrics.jsonl.gz")  # from the folder named


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="model folder or training run folder to export")
    parser.add_argument("out", type=Path, help="folder to write; must not hold a checkpoint already")
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="float16", help="weights storage type (default %(default)s)")
    parser.add_argument("--calibrate-watch", type=int, default=0, metavar="CLIPS",
                        help="for a model with an alignment head: set the standing-query threshold to the one with "
                             "the best F1 on CLIPS clips of world:val (0 = keep the checkpoint's)")


def export(checkpoint: Path, out: Path, dtype: str, calibrate_watch: int = 0) -> dict:
    """Write the exported checkpoint and its card; returns the card."""
    if (out / WEIGHTS).exists():
        raise ValueError(f"{out} already holds a checkpoint; export into a new or empty folder")
    model_dir = checkpointing.resolve_model_dir(checkpoint)
    model = StreamerModel.load(model_dir, device="cpu")
    source_fingerprint = model.fingerprint()
    calibration = None
    if calibrate_watch:
        if not model.can_align:
            raise ValueError(f"{model_dir} has no alignment head: there is no standing-query threshold to calibrate")
        # Calibrated on the weights as shipped, so the threshold fits what users load.
        shipped = StreamerModel(model.cfg)
        shipped.load_state_dict({k: v.to(DTYPES[dtype]).to(v.dtype) for k, v in model.state_dict().items()})
        threshold, f1 = calibrate_threshold(shipped.eval(), embed_world(shipped, "val", calibrate_watch))
        model.cfg.align.watch_threshold = threshold
        calibration = {"data": "world:val", "clips": calibrate_watch, "watch_threshold": threshold,
                       "mean_f1": round(f1, 4)}
    exported_fingerprint = model.save(out, dtype=DTYPES[dtype])
    card = checkpointing.read_card(model_dir)
    card.pop("evaluation", None)
    card["fingerprint"] = exported_fingerprint
    card["exported"] = {"from_fingerprint": source_fingerprint, "weights_dtype": dtype}
    if calibration:
        card["exported"]["watch_calibration"] = calibration
    checkpointing.write_json_atomic(out / CARD, card)
    for name in CARRIED_FILES:
        if (checkpoint / name).is_file():
            shutil.copy2(checkpoint / name, out / name)
    return card


def main(args: argparse.Namespace) -> int:
    try:
        export(args.checkpoint, args.out, args.dtype, args.calibrate_watch)
    except ValueError as err:
        print(f"streamer export: {err}", file=sys.stderr)
        return 2
    size = (args.out / WEIGHTS).stat().st_size
    print(f"wrote {args.out} ({size / 1e6:.1f} MB of {args.dtype} weights); its card has no evaluation yet: "
          f"run `streamer eval {args.out} --card` to measure these weights")
    return 0
