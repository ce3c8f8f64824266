"""`streamer eval CKPT_DIR --data world:test|world:compositional|world:long|DIR`.

Evaluation uses the streaming path a user gets — `init_state`, `step` snippet by snippet,
`answer` at each question's ask time — and open-ended greedy generation, scored by exact
match after trimming (as in the paper: no answer classes, no teacher forcing). Several
clips are stepped together as one batch; each question is answered from its own stream's
state row at its ask time.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from model import MediaSpec, StreamerModel
from model.checkpoint import CARD
from streamer.engine import resolve_device
from training import checkpointing
from training.align_eval import alignment_report, alignment_table

WORLD_SPLITS = ("test", "compositional", "long", "wild")
ALIGN_SPLITS = ("test", "compositional", "long")  # the alignment truth needs the clip's own timeline
DEFAULT_CLIPS = 200


@dataclass
class EvalQuestion:
    text: str
    answer: str
    ask_snippets: int
    kind: str


@dataclass
class EvalClip:
    video: Any  # uint8 [T, F, H, W, 3] (numpy)
    audio: Any  # float32 [T, S]
    questions: list[EvalQuestion]
    name: str = ""


@dataclass
class EvalResult:
    """Exact-match counts per question kind, and a few wrong answers to look at."""

    data: str
    correct: dict[str, int] = field(default_factory=dict)
    total: dict[str, int] = field(default_factory=dict)
    clips: int = 0
    mistakes: list[dict[str, str]] = field(default_factory=list)

    def add(self, kind: str, ok: bool) -> None:
        self.total[kind] = self.total.get(kind, 0) + 1
        self.correct[kind] = self.correct.get(kind, 0) + int(ok)

    def kinds(self) -> list[str]:
        return sorted(self.total)

    def accuracy(self, kind: str) -> float:
        return self.correct.get(kind, 0) / self.total[kind] if self.total.get(kind) else 0.0

    @property
    def overall(self) -> float:
        n = sum(self.total.values())
        return sum(self.correct.values()) / n if n else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "data": self.data,
            "clips": self.clips,
            "questions": sum(self.total.values()),
            "overall": round(self.overall, 4),
            "per_kind": {k: {"accuracy": round(self.accuracy(k), 4), "correct": self.correct.get(k, 0),
                             "total": self.total[k]} for k in self.kinds()},
        }

    def table(self) -> str:
        """A fixed-width table: one row per kind, then the overall row."""
        width = max([len("overall")] + [len(k) for k in self.kinds()])
        lines = [f"{'kind':<{width}}  {'accuracy':>8}  {'correct':>7}  {'total':>5}",
                 f"{'-' * width}  {'-' * 8}  {'-' * 7}  {'-' * 5}"]
        for k in self.kinds():
            lines.append(f"{k:<{width}}  {100 * self.accuracy(k):7.1f}%  {self.correct.get(k, 0):>7}  {self.total[k]:>5}")
        lines.append(f"{'-' * width}  {'-' * 8}  {'-' * 7}  {'-' * 5}")
        lines.append(f"{'overall':<{width}}  {100 * self.overall:7.1f}%  {sum(self.correct.values()):>7}  "
                     f"{sum(self.total.values()):>5}")
        return "\n".join(lines)


def normalise(text: str) -> str:
    """Exact match after trimming surrounding white space (and nothing more)."""
    return text.strip()


# --- data ------------------------------------------------------------------------------


def load_eval_clips(data: str, media: MediaSpec, clips: int = DEFAULT_CLIPS, start: int = 0) -> list[EvalClip]:
    """Clips of a world split (`world:test`, `world:compositional`, `world:long`) or a folder."""
    if data == "world":
        data = "world:test"
    if data.startswith("world:"):
        split = data.split(":", 1)[1]
        if split not in WORLD_SPLITS:
            raise ValueError(f"unknown world split {split!r} for evaluation; choose world:{', world:'.join(WORLD_SPLITS)}")
        from training.data import world_sample
        from training.world.clip import World, WorldConfig
        from training.world.wild import wild_sample

        world = World(WorldConfig.preset(split, spec=media))
        out = []
        for i in range(start, start + clips):
            sample = wild_sample(world.clip(i)) if split == "wild" else world_sample(world.clip(i))
            qs = [EvalQuestion(q.text, q.answer, q.ask_snippets, q.kind) for q in sample["questions"]]
            out.append(EvalClip(sample["video"], sample["audio"], qs, name=f"{data}#{i}"))
        return out
    path = Path(data)
    if not path.is_dir():
        raise ValueError(
            f"data folder {data} does not exist; pass world:test, world:compositional, world:long, world:wild or a "
            "folder with annotations.jsonl (make one with `streamer world --out DIR`)"
        )
    from training.data import FolderDataset

    folder = FolderDataset(path, media)
    if len(folder) == 0:
        raise ValueError(f"the dataset in {data} has no usable clips:\n{folder.report.summary()}")
    out, seen = [], set()
    for i in range(min(clips, len(folder)) if clips else len(folder)):
        s = folder.sample(i)  # a clip that fails to decode is replaced by the next: count it once
        if s["name"] in seen:
            continue
        seen.add(s["name"])
        qs = [EvalQuestion(q.text, q.answer, q.ask_snippets, q.kind) for q in s["questions"]]
        out.append(EvalClip(s["video"], s["audio"], qs, name=str(s.get("name", i))))
    return out


# --- the evaluation --------------------------------------------------------------------


@torch.no_grad()
def evaluate(model: StreamerModel, clips: list[EvalClip], batch: int = 8, data: str = "",
             max_new_tokens: int | None = None, progress: bool = True, keep_mistakes: int = 20) -> EvalResult:
    """Stream `batch` clips at a time through `model` and answer every question at its ask time."""
    result = EvalResult(data=data, clips=len(clips))
    device = next(model.parameters()).device
    total_questions = sum(len(c.questions) for c in clips)
    bar = tqdm(total=total_questions, desc=f"eval {data}".strip(), unit="q", disable=not progress,
               dynamic_ncols=True)
    media = model.cfg.media
    try:
        for first in range(0, len(clips), batch):
            group = clips[first:first + batch]
            state = model.init_state(len(group), device=device)
            longest = max(len(c.video) for c in group)
            last = min(longest, max((q.ask_snippets for c in group for q in c.questions), default=0))
            for t in range(last + 1):
                for row, clip in enumerate(group):
                    for q in clip.questions:
                        if q.ask_snippets != t:
                            continue
                        row_state = {k: v[row:row + 1] for k, v in state.items()}
                        got = "".join(model.answer(row_state, q.text, max_new_tokens=max_new_tokens))
                        ok = normalise(got) == normalise(q.answer)
                        result.add(q.kind, ok)
                        if not ok and len(result.mistakes) < keep_mistakes:
                            result.mistakes.append({"clip": clip.name, "kind": q.kind, "question": q.text,
                                                    "ask_snippets": q.ask_snippets, "answer": q.answer,
                                                    "generated": got})
                        bar.update(1)
                if t == last:
                    break  # nothing is asked later: no need to step further
                video = torch.zeros(len(group), media.frames_per_snippet, media.height, media.width, 3,
                                    dtype=torch.uint8)
                audio = torch.zeros(len(group), media.samples_per_snippet, dtype=torch.float32)
                for row, clip in enumerate(group):
                    if t < len(clip.video):  # a finished clip is fed silence; it has no questions left
                        video[row] = torch.from_numpy(clip.video[t])
                        audio[row] = torch.from_numpy(clip.audio[t])
                state = model.step(state, video.to(device), audio.to(device))
            bar.set_postfix(acc=f"{result.overall:.3f}", refresh=False)
    finally:
        bar.close()
    return result


# --- command line ----------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a model folder, or the --out folder of a training run (its latest checkpoint)")
    parser.add_argument("--data", action="append", default=None,
                        help="world:test (default), world:compositional, world:long, world:wild, or a dataset folder; repeat for several")
    parser.add_argument("--clips", type=int, default=DEFAULT_CLIPS, help="clips per data set (default %(default)s)")
    parser.add_argument("--batch", type=int, default=8, help="clips streamed together (default %(default)s)")
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help="answer length limit in tokens (default: the model's trained answer budget)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default %(default)s)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of the table")
    parser.add_argument("--json-out", default=None, metavar="FILE", help="also write the results to this JSON file")
    parser.add_argument("--card", action="store_true",
                        help="record the results in the checkpoint's card.json (under 'evaluation')")
    parser.add_argument("--align", action="store_true",
                        help="also measure standing queries (watch precision/recall/F1) and moment retrieval "
                             "(R@1, R@5, mean tIoU) on each world split, for a model with an alignment head")
    parser.add_argument("--show-mistakes", type=int, default=0, metavar="N", help="print N wrong answers per data set")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        model_dir = checkpointing.resolve_model_dir(args.checkpoint)
        model = StreamerModel.load(model_dir, device=resolve_device(args.device))
    except ValueError as err:
        print(f"streamer eval: {err}", file=sys.stderr)
        return 2
    model.eval()
    results = {}
    for data in args.data or ["world:test"]:
        try:
            clips = load_eval_clips(data, model.cfg.media, clips=args.clips)
        except ValueError as err:
            print(f"streamer eval: {err}", file=sys.stderr)
            return 2
        result = evaluate(model, clips, batch=max(1, args.batch), data=data,
                          max_new_tokens=args.max_new_tokens, progress=not args.no_progress)
        results[data] = result
        if not args.json:
            print(f"\n{data} — {result.clips} clips, checkpoint {model_dir}")
            print(result.table())
            for m in result.mistakes[: args.show_mistakes]:
                print(f"  [{m['kind']}] {m['question']!r}: expected {m['answer']!r}, got {m['generated']!r}")
    report = {"checkpoint": str(model_dir), "fingerprint": model.fingerprint(),
              "results": {k: r.to_dict() for k, r in results.items()}}
    if args.align:
        if not model.can_align:
            print(f"streamer eval: {model_dir} has no alignment head; drop --align", file=sys.stderr)
            return 2
        report["alignment"] = {}
        for data in args.data or ["world:test"]:
            split = data.removeprefix("world:") if data.startswith("world") else None
            if split not in ALIGN_SPLITS:
                continue
            aligned = alignment_report(model, split, args.clips)
            report["alignment"][data] = aligned
            if not args.json:
                print(f"\n{data} — standing queries and retrieval, threshold {aligned['threshold']:.3f}")
                print(alignment_table(aligned))
    if args.json:
        print(json.dumps(report, indent=2))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if args.card:
        card = checkpointing.read_card(model_dir)
        card.setdefault("evaluation", {}).update(report["results"])
        if report.get("alignment"):
            card.setdefault("alignment", {}).update(report["alignment"])
        checkpointing.write_json_atomic(model_dir / CARD, card)
    return 0
