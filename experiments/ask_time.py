"""Is a long-stream kind lost with time or with crowding? Splits the answers of the kinds that
read the past by when the question was asked and by how much the clip had shown by then.

    .venv/bin/python -m experiments.ask_time [CHECKPOINT] [--clips 100] [--threads 2]

Each world split (test and long) is asked `order`, `sound_of`, `count_sound` and `who_made`
questions. An answer is counted by its ask time (snippets into the stream) and by the events
seen before it (shapes shown plus sounds played). With a latent window as long as the longest
clip, a fall with ask time inside the window is not a memory loss but the decoder reading a
longer, fuller window. Writes experiments/results/understanding/ask-time.json (or `--out`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable

from experiments.asking import RESULTS, ask_world, load, parser_for, rates, write_report

KINDS = ("order", "sound_of", "count_sound", "who_made")
SPLITS = ("test", "long")


def ask_bin(snippets: int) -> str:
    return "asked at 1-16 snippets" if snippets <= 16 else "asked at 17-32" if snippets <= 32 else "asked at 33-64+"


def events_bin(events: int) -> str:
    return ("<= 4 events before" if events <= 4 else "5-8 events" if events <= 8 else "9-16 events" if events <= 16
            else "17+ events")


def events_before(clip, t_ask: float) -> int:
    """Shapes shown and sounds played before `t_ask` seconds."""
    timeline = clip.timeline
    return (sum(1 for s in timeline.shapes if s.t_start < t_ask)
            + sum(1 for s in timeline.sounds if s.t_start < t_ask))


def tally(answered: Iterable) -> dict[str, dict[str, dict[str, float]]]:
    """Per kind, right/total/accuracy by ask time and by events seen, from (clip, question,
    truth, answer) tuples."""
    groups: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    for clip, q, truth, got in answered:
        t_ask = q.ask_snippets * clip.spec.snippet_seconds
        right = truth == got
        groups[q.kind]["all"][right] += 1
        groups[q.kind][ask_bin(q.ask_snippets)][right] += 1
        groups[q.kind][events_bin(events_before(clip, t_ask))][right] += 1
    return {kind: rates(by) for kind, by in sorted(groups.items())}


def main() -> None:
    parser = parser_for(__doc__, clips=100, default_out="ask-time.json")
    args = parser.parse_args()
    model_dir, model = load(args)
    report = {"checkpoint": str(model_dir), "fingerprint": model.fingerprint(), "clips": args.clips,
              "latent_window_snippets": model.cfg.latent.window}
    for split in SPLITS:
        _, answered = ask_world(model, split, KINDS, args.clips)
        report[split] = tally(answered)
    write_report(report, args.out or RESULTS / "ask-time.json")


if __name__ == "__main__":
    main()
