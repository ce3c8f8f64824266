"""What the mistake experiments share: a checkpoint asked one world split's questions of chosen
kinds, every answer kept beside its clip, and a report written under results/understanding/."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import torch

from model.streamer_model import StreamerModel
from training import checkpointing
from training.data import world_sample
from training.evaluate import EvalClip, EvalQuestion, EvalResult, evaluate, normalise
from training.world.clip import Clip, World, WorldConfig
from training.world.wild import wild_sample

RESULTS = Path(__file__).parent / "results" / "understanding"


def parser_for(doc: str, clips: int, default_out: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("checkpoint", nargs="?", default="streamer/checkpoints/tiny")
    parser.add_argument("--clips", type=int, default=clips)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, help=f"report file (default: results/understanding/{default_out})")
    parser.add_argument("--zero", action="append", default=[], metavar="PARAMETER",
                        help="answer with this parameter set to zero (repeatable; e.g. decoder.first_sight_company), "
                             "to measure what a part contributes")
    return parser


def load(args: argparse.Namespace) -> tuple[Path, StreamerModel]:
    torch.set_num_threads(args.threads)
    model_dir = checkpointing.resolve_model_dir(args.checkpoint)
    model = StreamerModel.load(model_dir).eval()
    parameters = dict(model.named_parameters())
    unknown = [name for name in args.zero if name not in parameters]
    if unknown:
        raise SystemExit(f"--zero {', '.join(unknown)}: the model at {model_dir} has no such parameter; its "
                         f"decoder's are named like {next(n for n in parameters if n.startswith('decoder.'))}")
    with torch.no_grad():
        for name in args.zero:
            parameters[name].zero_()
    return model_dir, model


def split_sample(clip: Clip, split: str) -> dict:
    """A clip of a world split as the evaluation streams it: world:wild's through the wild media path."""
    return wild_sample(clip) if split == "wild" else world_sample(clip)


def ask_world(model: StreamerModel, split: str, kinds: tuple[str, ...], clips: int, per_clip: int = 4
              ) -> tuple[EvalResult, list[tuple[Clip, EvalQuestion, str, str]]]:
    """Stream `clips` clips of a world split (`split_sample`) with questions of `kinds` only, answering
    each at its time; returns the result and, per question, (clip, question, true answer, model answer)."""
    world = World(WorldConfig.preset(split, spec=model.cfg.media, kinds=kinds, questions_per_clip=per_clip))
    rendered = [world.clip(i) for i in range(clips)]
    asked = []
    for i, clip in enumerate(rendered):
        sample = split_sample(clip, split)
        questions = [EvalQuestion(q.text, q.answer, q.ask_snippets, q.kind) for q in sample["questions"]]
        asked.append(EvalClip(sample["video"], sample["audio"], questions, name=str(i)))
    result = evaluate(model, asked, data=f"world:{split}", keep_mistakes=10**9)
    # A clip may ask the same question at two times, with one answer right and one wrong.
    wrong = {(m["clip"], m["question"], m["ask_snippets"]): normalise(m["generated"]) for m in result.mistakes}
    answered = []
    for clip, eval_clip in zip(rendered, asked):
        for q in eval_clip.questions:
            truth = normalise(q.answer)
            answered.append((clip, q, truth, wrong.get((eval_clip.name, q.text, q.ask_snippets), truth)))
    return result, answered


def accuracies(model: StreamerModel, clips: int, kinds: tuple[str, ...], splits: tuple[str, ...]
               ) -> dict[str, dict[str, float]]:
    """{split/kind: right, total, accuracy} for each of `kinds` on each of `splits`."""
    out = {}
    for split in splits:
        for kind in kinds:
            _, answered = ask_world(model, split, (kind,), clips)
            right = sum(truth == got for _, _, truth, got in answered)
            out[f"{split}/{kind}"] = {"right": right, "total": len(answered),
                                      "accuracy": round(right / len(answered), 3)}
    return out


def rates(right_by_group: dict[str, Counter]) -> dict[str, dict[str, float]]:
    """{group: Counter({True: right, False: wrong})} as right, total and accuracy per group."""
    return {k: {"right": v[True], "total": v[True] + v[False], "accuracy": round(v[True] / (v[True] + v[False]), 3)}
            for k, v in sorted(right_by_group.items())}


def write_report(report: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))
    print(f"wrote {out}")
