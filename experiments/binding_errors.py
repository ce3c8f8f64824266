"""What goes wrong when the model binds a sound to its shape? Sorts every `who_made` and
`sound_of` answer of a checkpoint by the kind of mistake.

    .venv/bin/python -m experiments.binding_errors [CHECKPOINT] [--split test] [--clips 100]

`who_made` ("which shape made the drum?") answers are sorted into: right; colour right but
shape wrong; shape right but colour wrong; another shape the clip showed (the sound bound to
the wrong object); and neither (a pair the clip never showed). `sound_of` answers into: right;
another sound the clip played (wrong object); "silence" for a shape that sounded; a sound for a
shape that made none; and a sound the clip never played. Each `who_made` question is also split
by how many shapes were on screen when the sound first played, and by how long ago that was
(and whether inside the latent window the decoder reads directly or older), so one can tell a
perception limit (the shape misread) from a binding or a memory limit. Each `sound_of`
question is split by how many plays of other shapes' sounds came while the shape was on screen
(before the question), by how long it had been on screen, and by how many snippets before the
question it appeared: a decoder that reads "what played while the shape was there" rather than
"what played when it appeared" falls with the first two, one that cannot tell old snippets
apart by age with the last.
Writes experiments/results/understanding/binding-errors-SPLIT.json (or `--out`).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict

from experiments.asking import RESULTS, ask_world, load, parser_for, rates, write_report
from training.world.timeline import Timeline

KINDS = ("who_made", "sound_of")
SOUND_OF_SUBJECT = re.compile(r"the (\w+) (\w+) (?:make|sound like)\?$")


def who_made_error(timeline: Timeline, t_ask: float, truth: str, got: str) -> str:
    if got == truth:
        return "right"
    seen = {s.name for s in timeline.shapes if s.t_start < t_ask}
    if got in seen:
        return "another shape of the clip"
    truth_color, _, truth_shape = truth.partition(" ")
    got_color, _, got_shape = got.partition(" ")
    if got_color == truth_color:
        return "colour right, shape wrong"
    if got_shape == truth_shape:
        return "shape right, colour wrong"
    return "neither"


def sound_of_error(timeline: Timeline, t_ask: float, truth: str, got: str) -> str:
    if got == truth:
        return "right"
    heard = {s.sound for s in timeline.sounds if s.t_start < t_ask}
    if truth == "silence":
        return "a sound for a silent shape"
    if got == "silence":
        return "silence for a shape that sounded"
    if got in heard:
        return "another sound of the clip"
    return "a sound never played"


def first_play_context(timeline: Timeline, sound: str, t_ask: float) -> tuple[int, float] | None:
    """Shapes on screen at the sound's first play, and seconds from that play to the question."""
    play = next((s for s in timeline.sounds if s.sound == sound and s.t_start < t_ask), None)
    if play is None:
        return None
    on_screen = sum(1 for s in timeline.shapes if s.t_start <= play.t_start < s.t_end)
    return on_screen, t_ask - play.t_start


def sound_of_context(timeline: Timeline, color: str, shape: str, t_ask: float) -> tuple[int, float, float] | None:
    """Plays of other shapes' sounds, or of no shape's, while the shape was on screen before the
    question; seconds it had been on screen by then; seconds from its appearance to the question."""
    index = next((i for i, s in reversed(list(enumerate(timeline.shapes)))
                  if s.color == color and s.shape == shape and s.t_start < t_ask), None)
    if index is None:
        return None
    event = timeline.shapes[index]
    until = min(event.t_end, t_ask)
    others = sum(1 for p in timeline.sounds if p.owner != index and event.t_start <= p.t_start < until)
    return others, until - event.t_start, t_ask - event.t_start


def main() -> None:
    parser = parser_for(__doc__, clips=100, default_out="binding-errors-SPLIT.json")
    parser.add_argument("--split", default="test", choices=("test", "compositional", "long"))
    args = parser.parse_args()
    model_dir, model = load(args)
    result, answered = ask_world(model, args.split, KINDS, args.clips)

    errors: dict[str, Counter] = {k: Counter() for k in KINDS}
    by_context: dict[str, Counter] = defaultdict(Counter)
    sound_of_by_context: dict[str, Counter] = defaultdict(Counter)
    # The decoder reads the last `latent.window` snippets directly; older plays only through memory.
    window_seconds = model.cfg.latent.window * model.cfg.media.snippet_seconds
    for clip, q, truth, got in answered:
        t_ask = q.ask_snippets * clip.spec.snippet_seconds
        if q.kind == "who_made":
            error = who_made_error(clip.timeline, t_ask, truth, got)
            sound = q.text.rstrip("?").split()[-1]
            context = first_play_context(clip.timeline, sound, t_ask)
            if context is not None:
                shapes, ago = context
                ago_bin = "< 2 s" if ago < 2 else "2-5 s" if ago < 5 else "5-10 s" if ago < 10 else ">= 10 s"
                reach = "inside" if ago < window_seconds else "older than"
                by_context[f"{shapes} on screen at the play"][error == "right"] += 1
                by_context[f"play {ago_bin} before the question"][error == "right"] += 1
                by_context[f"play {reach} the latent window"][error == "right"] += 1
        else:
            error = sound_of_error(clip.timeline, t_ask, truth, got)
            context = sound_of_context(clip.timeline, *SOUND_OF_SUBJECT.search(q.text).groups(), t_ask)
            if context is not None:
                others, shown, ago = context
                others_bin = "no" if others == 0 else "1-2" if others <= 2 else "3+"
                shown_bin = "< 2 s" if shown < 2 else "2-5 s" if shown < 5 else ">= 5 s"
                age = ago / clip.spec.snippet_seconds
                age_bin = "0-7" if age < 8 else "8-15" if age < 16 else "16+"
                sound_of_by_context[f"{others_bin} other plays while on screen"][error == "right"] += 1
                sound_of_by_context[f"on screen {shown_bin}"][error == "right"] += 1
                sound_of_by_context[f"appeared {age_bin} snippets before the question"][error == "right"] += 1
        errors[q.kind][error] += 1

    report = {
        "checkpoint": str(model_dir), "fingerprint": model.fingerprint(), "split": args.split,
        "clips": args.clips, "latent_window_seconds": window_seconds,
        "accuracy": {k: result.accuracy(k) for k in KINDS},
        "errors": {k: dict(v.most_common()) for k, v in errors.items()},
        "who_made_accuracy_by_context": rates(by_context),
        "sound_of_accuracy_by_context": rates(sound_of_by_context),
    }
    write_report(report, args.out or RESULTS / f"binding-errors-{args.split}.json")


if __name__ == "__main__":
    main()
