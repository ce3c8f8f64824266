"""How fast a model grounds its answers in the picture and sound, per question kind.

    .venv/bin/python -m experiments.learning_rate --lr 2e-4 --snippets 2-4 --kinds color_now,shape_now,count_now

Trains a fresh `tiny` model on world clips rendered on the fly and prints, every
`--every` steps, the text loss and the teacher-forced exact match per question kind of
the batches it trained on. Answer priors alone give roughly 1/(number of answers) on the
`*_now` kinds; rising above that is the model reading the snippets. The log goes to
stdout and to `experiments/results/learning_rate/lr-<lr>[-patch<N>].log`.
"""

from __future__ import annotations

import argparse
import collections
import time
from pathlib import Path

import torch

from model import ModelConfig, StreamerModel
from training.data import world_sample
from training.samples import to_model_batch
from training.world.clip import World, WorldConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--snippets", default="2-4", help="clip length range, e.g. 2-4")
    parser.add_argument("--questions", type=int, default=4, help="questions per clip")
    parser.add_argument("--kinds", default="color_now,shape_now,count_now", help="question kinds, comma-separated")
    parser.add_argument("--patch-size", type=int, default=None,
                        help="spatial side of the encoder's tubes and patches (default: the tiny preset's)")
    parser.add_argument("--motion", choices=("on", "off"), default=None,
                        help="frame-difference channels in the encoder's patches (default: the preset's)")
    parser.add_argument("--positions", choices=("sincos", "learned"), default=None,
                        help="encoder token positions (default: the preset's)")
    parser.add_argument("--tag", default="", help="suffix of the log file name")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--every", type=int, default=25)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "learning_rate")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = ModelConfig.from_name("tiny")
    if args.patch_size is not None:
        cfg.encoder.tube_size = cfg.encoder.patch_size = args.patch_size
    if args.motion is not None:
        cfg.encoder.motion = args.motion == "on"
    if args.positions is not None:
        cfg.encoder.positions = args.positions
    model = StreamerModel(cfg)
    low, high = map(int, args.snippets.split("-"))
    world = World(WorldConfig.preset("train", snippets=(low, high), questions_per_clip=args.questions,
                                     kinds=tuple(args.kinds.split(","))))
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = ("" if args.patch_size is None else f"-patch{args.patch_size}") + (f"-{args.tag}" if args.tag else "")
    log = open(args.out / f"lr-{args.lr:g}{suffix}.log", "w")

    def report(line: str) -> None:
        print(line, flush=True)
        log.write(line + "\n")
        log.flush()

    report(f"tiny, lr {args.lr:g}, batch {args.batch}, snippets {args.snippets}, kinds {args.kinds}, "
           f"tubes and patches {cfg.encoder.tube_size}/{cfg.encoder.patch_size} px, "
           f"motion channels {'on' if cfg.encoder.motion else 'off'}, positions {cfg.encoder.positions}")
    hits, totals, losses = collections.Counter(), collections.Counter(), []
    started, clip_index = time.perf_counter(), 0
    for step in range(args.steps):
        for group in optimizer.param_groups:
            group["lr"] = args.lr * min(1.0, (step + 1) / 20)  # 20 warm-up steps
        samples = [world_sample(world.clip(clip_index + i)) for i in range(args.batch)]
        clip_index += args.batch
        out = model(to_model_batch(model, samples))
        optimizer.zero_grad()
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        exact = out.exact_match()
        for i, sample in enumerate(samples):
            for j, question in enumerate(sample["questions"]):
                totals[question.kind] += 1
                hits[question.kind] += int(exact[i, j])
        losses.append(out.text_loss.item())
        if (step + 1) % args.every == 0:
            overall = sum(hits.values()) / max(1, sum(totals.values()))
            kinds = " ".join(f"{k}={hits[k] / totals[k]:.2f}" for k in sorted(totals))
            report(f"step {step + 1} {time.perf_counter() - started:.0f}s text_loss "
                   f"{sum(losses) / len(losses):.3f} exact {overall:.3f} | {kinds}")
            hits.clear(), totals.clear(), losses.clear()


if __name__ == "__main__":
    main()
