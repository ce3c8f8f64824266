"""`streamer train` / `python -m training.train`: train a model on the world or a folder.

    streamer train --preset tiny --data world --out runs/tiny --steps 2000
    torchrun --nproc_per_node=2 -m training.train --preset tiny --data world --out runs/ddp --steps 200
    streamer train ... --resume        # continue the run in --out exactly where it stopped

Ctrl-C (SIGINT) or SIGTERM saves a checkpoint and exits; --resume continues it.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
from dataclasses import replace

from model import ModelConfig
from training.config import TrainConfig, TrainingError, add_config_arguments, config_from_flags
from training.trainer import Trainer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)  # one flag per TrainConfig field
    parser.add_argument("--finetune", action="store_true",
                        help="fine-tuning weights: text loss ×10 over the model config (needs --init)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    if args.finetune and args.init is None:
        raise TrainingError("--finetune raises the text weight of a pretrained model; give it with --init CKPT")
    cfg = config_from_flags(args)
    if args.finetune and cfg.text_weight is None:
        cfg = replace(cfg, text_weight=10.0 * ModelConfig.from_name(args.preset).loss.text)
    return cfg


def _command_line() -> str:
    """How this run was started (from sys.argv), for the model card."""
    if len(sys.argv) > 1 and sys.argv[1] == "train":
        line = "streamer train " + shlex.join(sys.argv[2:])
    else:
        line = "python -m training.train " + shlex.join(sys.argv[1:])
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return f"torchrun --nproc_per_node={world} -m training.train " + shlex.join(sys.argv[1:]) if world > 1 else line


def main(args: argparse.Namespace) -> int:
    command = getattr(args, "command_line", None) or _command_line()
    trainer = None
    try:
        cfg = config_from_args(args)
        trainer = Trainer(cfg, resume=args.resume, command=command)
        result = trainer.run()
    except TrainingError as err:
        print(f"streamer train: {err}", file=sys.stderr)
        return 1
    except ValueError as err:  # a bad checkpoint or dataset reported by the model or data code
        print(f"streamer train: {err}", file=sys.stderr)
        return 1
    finally:
        if trainer is not None:
            trainer.close()
    if trainer.d.main:
        where = result.checkpoint or "(no new checkpoint)"
        if result.stopped_by_signal is not None:
            name = signal.Signals(result.stopped_by_signal).name
            print(f"stopped by {name} at step {result.step}; checkpoint {where}; continue with --resume")
        else:
            print(f"finished {result.step} steps in {result.wall_seconds:.0f} s; checkpoint {where}")
    return 128 + result.stopped_by_signal if result.stopped_by_signal is not None else 0


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    if argv is not None:
        args.command_line = "python -m training.train " + shlex.join(argv)
    return main(args)


if __name__ == "__main__":
    sys.exit(cli())
