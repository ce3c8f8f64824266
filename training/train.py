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

from training.trainer import TrainConfig, Trainer, TrainingError


def _length_range(text: str) -> tuple[int, int]:
    try:
        low, _, high = text.partition("-")
        return (int(low), int(high or low))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a snippet range like 4-16, got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    parser.add_argument("--preset", default=d.preset, help="model preset: tiny, base (default %(default)s)")
    parser.add_argument("--data", default=d.data, help="'world' (generated on the fly) or a dataset folder")
    parser.add_argument("--out", required=True, help="run folder: checkpoints, metrics.jsonl, card")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, default=None, help="optimizer steps to train")
    length.add_argument("--epochs", type=float, default=None, help="passes over a dataset folder")
    parser.add_argument("--batch", type=int, default=d.batch, help="clips per step over all processes (default %(default)s)")
    parser.add_argument("--micro-batch", type=int, default=None, help="clips per forward pass (gradient accumulation)")
    parser.add_argument("--lr", type=float, default=d.lr, help="peak learning rate (default %(default)s)")
    parser.add_argument("--min-lr-ratio", type=float, default=d.min_lr_ratio, help="cosine floor as a fraction of --lr")
    parser.add_argument("--warmup", type=int, default=d.warmup, help="linear warm-up steps (default %(default)s)")
    parser.add_argument("--weight-decay", type=float, default=d.weight_decay)
    parser.add_argument("--grad-clip", type=float, default=d.grad_clip, help="max gradient norm, 0 = off")
    parser.add_argument("--text-weight", type=float, default=None, help="text loss weight (default: model config)")
    parser.add_argument("--latent-weight", type=float, default=None, help="latent reconstruction loss weight")
    parser.add_argument("--video-weight", type=float, default=None, help="video reconstruction loss weight")
    parser.add_argument("--init", default=None, help="start from this checkpoint's weights (fine-tuning)")
    parser.add_argument("--finetune", action="store_true",
                        help="fine-tuning weights: text loss ×10 over the model config (needs --init)")
    parser.add_argument("--snippets", type=_length_range, default=d.snippets,
                        help="clip length range in snippets for --data world (default 4-16)")
    parser.add_argument("--curriculum", type=int, default=d.curriculum,
                        help="steps over which the longest clip grows from the shortest to the max (0 = off)")
    parser.add_argument("--questions", type=int, default=d.questions_per_clip, help="questions per world clip")
    parser.add_argument("--wild", type=float, default=d.wild,
                        help="share of world clips re-made as media from the wild: other frame and sample rates, "
                             "stereo, H.264/VP8 + AAC/Opus round trips, camera response (default %(default)s)")
    parser.add_argument("--strict", action="store_true", help="stop at the first bad sample of a dataset folder")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--amp", default=d.amp, choices=("auto", "bf16", "off"), help="mixed precision (auto: bf16 on CUDA)")
    parser.add_argument("--device", default=d.device, help="auto, cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads per process")
    parser.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every, help="steps between checkpoints")
    parser.add_argument("--keep-last", type=int, default=d.keep_last, help="checkpoints kept on disk")
    parser.add_argument("--eval-every", type=int, default=d.eval_every, help="steps between world:test evaluations (0 = off)")
    parser.add_argument("--eval-clips", type=int, default=d.eval_clips)
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    if args.finetune and args.init is None:
        raise TrainingError("--finetune raises the text weight of a pretrained model; give it with --init CKPT")
    text_weight = args.text_weight
    if args.finetune and text_weight is None:
        from model import ModelConfig

        text_weight = 10.0 * ModelConfig.from_name(args.preset).loss.text
    return TrainConfig(
        preset=args.preset, data=args.data, out=args.out, steps=args.steps, epochs=args.epochs,
        batch=args.batch, micro_batch=args.micro_batch, lr=args.lr, min_lr_ratio=args.min_lr_ratio,
        warmup=args.warmup, weight_decay=args.weight_decay, grad_clip=args.grad_clip,
        text_weight=text_weight, latent_weight=args.latent_weight, video_weight=args.video_weight,
        init=args.init, snippets=tuple(args.snippets), curriculum=args.curriculum,
        questions_per_clip=args.questions, wild=args.wild, strict=args.strict, seed=args.seed, amp=args.amp, device=args.device,
        threads=args.threads, checkpoint_every=max(1, args.checkpoint_every), keep_last=args.keep_last,
        eval_every=args.eval_every, eval_clips=args.eval_clips, progress=not args.no_progress,
    )


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
