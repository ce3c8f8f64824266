"""Could the first-sight tokens answer `order` on their own?

    .venv/bin/python -m experiments.first_sight_readout [CHECKPOINT] [--clips 100] [--threads 2]

For a checkpoint with a first-sight head (decoder.first_sight_classes): on world:long and
world:test clips, takes every `order` question ("which came first, the A or the B?"), computes
the window's first-sight summary the decoder's context would hold when it is asked (how surely
and how long ago each class was first seen, `TextDecoder.first_sight_summary`), and answers
with the named thing first seen longer ago. A pair the head saw neither of, or saw at the same
age, is counted as undecided. If this readout is right far more often than the decoder, what
limits `order` is how the decoder reads the tokens, not what they hold.
Writes experiments/results/understanding/first-sight-readout.json (or `--out`).
"""

from __future__ import annotations

import re

import torch

from experiments.asking import RESULTS, load, parser_for, write_report
from model import StreamerModel
from training.data import world_sample
from training.world.clip import World, WorldConfig
from training.world.first_sight import FIRST_SIGHT_CLASSES

SPLITS = ("long", "test")
NAMED_PAIR = re.compile(r"the (.+) or the (.+)\?$")


def named_pair(question: str) -> tuple[str, str]:
    """The two things an `order` question names, in its order."""
    found = NAMED_PAIR.search(question)
    if found is None:
        raise ValueError(f"not an order question: {question!r}")
    return found.group(1), found.group(2)


def older(a: str, b: str, age_a: torch.Tensor, age_b: torch.Tensor, window: int) -> str | None:
    """The one of `a` and `b` first seen longer ago (ages as shares of the window); None when
    their ages are within half a snippet of each other."""
    if abs(float(age_a - age_b)) < 0.5 / window:
        return None
    return a if age_a > age_b else b


@torch.no_grad()
def readout(model: StreamerModel, split: str, clips: int) -> dict[str, float]:
    world = World(WorldConfig.preset(split, spec=model.cfg.media, kinds=("order",), questions_per_clip=4))
    w = model.cfg.latent.window
    counts = {"right": 0, "wrong": 0, "undecided": 0, "not a class": 0}
    for i in range(clips):
        sample = world_sample(world.clip(i))
        video = torch.as_tensor(sample["video"])[None]
        audio = torch.as_tensor(sample["audio"])[None]
        h = model._clip_latents(video, audio)[2][0]  # [T, m, dl]
        for q in sample["questions"]:
            a, b = named_pair(q.text)
            if a not in FIRST_SIGHT_CLASSES or b not in FIRST_SIGHT_CLASSES:
                counts["not a class"] += 1
                continue
            chunks = q.ask_snippets - w + torch.arange(w)
            marks = model.decoder.first_sight(h[chunks.clamp(min=0)][None], (chunks >= 0)[None])
            age = model.decoder.first_sight_ages(marks)
            said = older(a, b, age[0, FIRST_SIGHT_CLASSES.index(a)], age[0, FIRST_SIGHT_CLASSES.index(b)], w)
            counts["undecided" if said is None else "right" if said == q.answer else "wrong"] += 1
    asked = counts["right"] + counts["wrong"] + counts["undecided"]
    return {**counts, "questions": asked, "accuracy": round(counts["right"] / max(asked, 1), 3)}


def main() -> None:
    parser = parser_for(__doc__, clips=100, default_out="first-sight-readout.json")
    args = parser.parse_args()
    model_dir, model = load(args)
    if not model.cfg.decoder.first_sight_classes:
        parser.error(f"{model_dir} has no first-sight head; train one with --first-sight")
    report = {"checkpoint": str(model_dir), "fingerprint": model.fingerprint(), "clips": args.clips,
              **{split: readout(model, split, args.clips) for split in SPLITS}}
    write_report(report, args.out or RESULTS / "first-sight-readout.json")


if __name__ == "__main__":
    main()
