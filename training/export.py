"""`streamer export`: copy a checkpoint for shipping, weights stored in float16 or bfloat16.

    streamer export runs/tiny streamer/checkpoints/tiny --dtype float16

CHECKPOINT is a model folder or a training run (its latest checkpoint). Halves the weights
file. `--average-last N` ships the mean of a run's last N checkpoints' weights instead of the
last one alone: the end of a cosine schedule wanders around a minimum, and the mean of those
points sits nearer it (train with `--keep-last N` so they are kept). The card (training command, data, machine) and the run's curves and metrics come
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
    parser.add_argument("--average-last", type=int, default=1, metavar="N",
                        help="for a training run: ship the mean weights of its last N checkpoints (default 1: the "
                             "latest alone)")


def average_weights(model_dirs: list[Path]) -> StreamerModel:
    """One model whose every weight is the mean of the models' (in float64, stored as the last's)."""
    models = [StreamerModel.load(d, device="cpu") for d in model_dirs]
    last = models[-1]
    for other, path in zip(models, model_dirs):
        if other.cfg != last.cfg:
            raise ValueError(f"{path} has another model config than {model_dirs[-1]}; average checkpoints of one run")
    states = [m.state_dict() for m in models]
    mean = {k: (sum(s[k].double() for s in states) / len(states)).to(v.dtype) if v.is_floating_point() else v
            for k, v in states[-1].items()}
    last.load_state_dict(mean)
    return last


def export(checkpoint: Path, out: Path, dtype: str, calibrate_watch: int = 0, average_last: int = 1) -> dict:
    """Write the exported checkpoint and its card; returns the card."""
    if (out / WEIGHTS).exists():
        raise ValueError(f"{out} already holds a checkpoint; export into a new or empty folder")
    if average_last < 1:
        raise ValueError(f"--average-last takes 1 or more checkpoints, got {average_last}")
    model_dir = checkpointing.resolve_model_dir(checkpoint)
    averaged = []
    if average_last > 1:
        if (checkpoint / WEIGHTS).is_file():
            raise ValueError(f"{checkpoint} is a model folder; --average-last needs a training run folder")
        averaged = checkpointing.last_checkpoints(checkpoint, average_last)
        model = average_weights(averaged)
    else:
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
    if averaged:
        card["exported"]["averaged_checkpoints"] = [p.name for p in averaged]
    if calibration:
        card["exported"]["watch_calibration"] = calibration
    checkpointing.write_json_atomic(out / CARD, card)
    for name in CARRIED_FILES:
        if (checkpoint / name).is_file():
            shutil.copy2(checkpoint / name, out / name)
    return card


def main(args: argparse.Namespace) -> int:
    try:
        export(args.checkpoint, args.out, args.dtype, args.calibrate_watch, args.average_last)
    except ValueError as err:
        print(f"streamer export: {err}", file=sys.stderr)
        return 2
    size = (args.out / WEIGHTS).stat().st_size
    print(f"wrote {args.out} ({size / 1e6:.1f} MB of {args.dtype} weights); its card has no evaluation yet: "
          f"run `streamer eval {args.out} --card` to measure these weights")
    return 0
