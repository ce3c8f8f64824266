"""Does the model misread shapes? Sorts a checkpoint's `shape_now` answers by how much of the
shape is visible and how long it has been on screen, and counts which shape is taken for which.

    .venv/bin/python -m experiments.shape_errors [CHECKPOINT] [--split test] [--clips 120] [--out FILE]

If mistakes concentrate on shapes half off the canvas or just appeared, the picture is
ambiguous or the model answers too early; if fully visible shapes that stayed a while are
misread, the encoder does not tell the shapes apart. On `compositional` (every clip shows a
colour-shape pair training never showed), the answers are also split by whether the shape on
screen is such a pair: if those fall far below the others, the model names the shape from its
colour, not from its outline. Writes experiments/results/understanding/shape-errors-SPLIT.json
(or `--out`).
"""

from __future__ import annotations

from collections import Counter

from experiments.asking import RESULTS, ask_world, load, parser_for, rates, write_report
from training.world.vocab import HELD_OUT_COLOR_SHAPE


def visible_bin(fraction: float) -> str:
    return "under 60% visible" if fraction < 0.6 else "60-95% visible" if fraction < 0.95 else "fully visible"


def age_bin(seconds: float) -> str:
    return "on screen < 0.64 s" if seconds < 0.64 else "on screen 0.64-1.3 s" if seconds < 1.3 else "on screen >= 1.3 s"


def main() -> None:
    parser = parser_for(__doc__, clips=120, default_out="shape-errors-SPLIT.json")
    parser.add_argument("--split", default="test", choices=("test", "compositional"))
    args = parser.parse_args()
    model_dir, model = load(args)
    result, answered = ask_world(model, args.split, ("shape_now",), args.clips, per_clip=3)

    confusions: Counter = Counter()
    by_bin: dict[str, Counter] = {}
    for clip, q, truth, got in answered:
        spec = clip.spec
        last_frame = q.ask_snippets * spec.snippet_seconds - 1 / spec.fps  # what the answer is about
        shown = [s for s in clip.timeline.shapes if s.visible_fraction(last_frame, spec.width, spec.height) > 0]
        if len(shown) != 1:
            continue  # shape_now is asked with exactly one shape on screen
        shape = shown[0]
        pair = "held-out colour-shape pair" if (shape.color, shape.shape) in HELD_OUT_COLOR_SHAPE else "pair seen in training"
        for name in (visible_bin(shape.visible_fraction(last_frame, spec.width, spec.height)),
                     age_bin(last_frame - shape.t_start), pair):
            by_bin.setdefault(name, Counter())[got == truth] += 1
        if got != truth:
            confusions[f"{truth} read as {got}"] += 1

    report = {
        "checkpoint": str(model_dir), "fingerprint": model.fingerprint(), "split": args.split, "clips": args.clips,
        "accuracy": result.accuracy("shape_now"),
        "by_visibility_and_time": rates(by_bin),
        "confusions": dict(confusions.most_common()),
    }
    write_report(report, args.out or RESULTS / f"shape-errors-{args.split}.json")


if __name__ == "__main__":
    main()
