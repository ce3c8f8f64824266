"""Can the decoder tell which of two old events came first? Splits `order` answers by the
age (snippets before the question) of the more recent of the two events, by whether the
two were ever on screen together and, for two shapes, by how many shapes came before the
question (and within that, by how far apart the two first appeared, how many other shapes
shown share a colour or shape with them and whether one like the newer came before both), and
prints how far apart the decoder's age cues are (and
the learned age slopes of a model that has them).

    .venv/bin/python -m experiments.order_age [CHECKPOINT] [--clips 150] [--threads 2]

The decoder knows when a snippet's latent tokens were made only from their age embedding
(the latent transformer's rotary positions are relative, so h itself carries no clock). If
the embeddings of older ages are nearly equal, an `order` question whose two events are both
old can only be answered from content, and falls towards a coin toss. Writes
experiments/results/understanding/order-age.json (or `--out`).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable

import torch

from experiments.asking import RESULTS, ask_world, load, parser_for, rates, write_report
from training.drills import look_alike
from training.world.answers import AnswerKey
from training.world.clip import World, WorldConfig
from training.world.vocab import SOUNDS

SPLITS = ("test", "long")
SUBJECTS = re.compile(r"the (.+) or the (.+)\?$")


def age_bin(snippets: float) -> str:
    return ("newer event 0-7 snippets old" if snippets < 8 else "newer event 8-15 old" if snippets < 16
            else "newer event 16+ old")


def _subjects(clip, question) -> tuple[tuple[str, str], AnswerKey]:
    """The question's two names and the answer key at its time."""
    return SUBJECTS.search(question.text).groups(), AnswerKey(
        clip.timeline, clip.spec, question.ask_snippets * clip.spec.snippet_seconds)


def event_ages(clip, question) -> tuple[float, float]:
    """Ages in snippets, at the question, of its two events' first sight or sound (newer first)."""
    names, key = _subjects(clip, question)
    ages = sorted((key.t_ask - key.first_time(name)) / clip.spec.snippet_seconds for name in names)
    return ages[0], ages[1]


def pair_kind(clip, question) -> str:
    """Two sounds, two shapes seen together at some time, or two shapes never on screen together."""
    names, key = _subjects(clip, question)
    if names[0] in SOUNDS:
        return "two sounds"
    first, second = (clip.timeline.shapes[key.find_seen_shape(*name.split(" ", 1))] for name in names)
    together = max(first.t_start, second.t_start) < min(first.t_end, second.t_end, key.t_ask)
    return "two shapes seen together" if together else "two shapes never seen together"


def shapes_shown(clip, question) -> tuple[str, ...]:
    """For two shapes, how many shapes had been shown by the question (each one more first-sight
    token with an age, among which the decoder must find the two); nothing for sounds."""
    names, key = _subjects(clip, question)
    if names[0] in SOUNDS:
        return ()
    count = sum(s.t_start < key.t_ask for s in clip.timeline.shapes)
    return ("1-3 shapes shown before the question" if count <= 3 else "4-7 shapes shown" if count <= 7
            else "8+ shapes shown",)


def _pair_view(clip, question) -> tuple[str, str, dict[str, float], AnswerKey]:
    """For a question about two shapes: the older and the newer ("colour shape"), every other
    shape shown before the question with the time it was first seen, and the answer key."""
    names, key = _subjects(clip, question)
    first_seen: dict[str, float] = {}
    for s in sorted(clip.timeline.shapes, key=lambda s: s.t_start):
        if s.t_start < key.t_ask:
            first_seen.setdefault(f"{s.color} {s.shape}", s.t_start)
    older, newer = sorted(names, key=key.first_time)
    return older, newer, {name: t for name, t in first_seen.items() if name not in (older, newer)}, key


def _lures_in(older: str, newer: str, others: dict[str, float], key: AnswerKey) -> list[str]:
    return [name for name, t in others.items() if look_alike(name, newer) and t < key.first_time(older)]


def lures(clip, question) -> list[str]:
    """For two shapes, the other shapes ("colour shape") that share a colour or a shape with the
    newer of the two and were first seen before both: a head that prefers older tokens among
    those the question's words match weights them up, and their age says the newer came first."""
    return _lures_in(*_pair_view(clip, question))


def pair_details(clip, question) -> tuple[str, ...]:
    """For two shapes, within their crowd (shapes_shown): how far apart their first sights were,
    how many other shapes shown share a colour or a shape with either of the two (tokens the
    question's words half match, whose ages can leak into the comparison), and whether a lure
    (`lures`) was shown; nothing for sounds."""
    crowd = shapes_shown(clip, question)
    if not crowd:
        return ()
    older, newer, others, key = _pair_view(clip, question)
    apart = (key.first_time(newer) - key.first_time(older)) / clip.spec.snippet_seconds
    half = sum(look_alike(name, older) or look_alike(name, newer) for name in others)
    lure = bool(_lures_in(older, newer, others, key))
    return (f"{crowd[0]}, first sights {'under 8' if apart < 8 else '8+'} snippets apart",
            f"{crowd[0]}, {'0-2' if half <= 2 else '3-5' if half <= 5 else '6+'} others share a colour or shape",
            f"{crowd[0]}, {'a' if lure else 'no'} shape like the newer one seen before both",
            f"two shapes, {'a' if lure else 'no'} shape like the newer one seen before both")


def tally(answered: Iterable) -> dict[str, dict]:
    """Right/total/accuracy by the newer event's age, by the pair's kind and, for shapes, by
    how many shapes came before (and within that by pair_details), and what the wrong answers
    named, from (clip, question, truth, answer) tuples."""
    groups: dict[str, Counter] = defaultdict(Counter)
    wrong: Counter = Counter()
    for clip, q, truth, got in answered:
        newer, _ = event_ages(clip, q)
        for group in ("all", age_bin(newer), pair_kind(clip, q), *shapes_shown(clip, q), *pair_details(clip, q)):
            groups[group][truth == got] += 1
        if truth != got:
            wrong["the other of the two" if got in SUBJECTS.search(q.text).groups() else "neither"] += 1
    return {**rates(groups), "wrong answers named": dict(wrong)}


@torch.no_grad()
def age_spacing(model) -> dict[str, float]:
    """Mean distance between the position cues (learned embedding plus fixed code) of
    neighbouring ages, against how far apart the latent tokens they are added to lie (both
    before the context LayerNorm), over the first window of a long clip."""
    ages = (model.decoder.age_emb + model.decoder.age_code).squeeze(1)
    steps = (ages[1:] - ages[:-1]).norm(dim=-1)
    clip = World(WorldConfig.preset("long", spec=model.cfg.media)).clip(0)
    state = model.init_state(1)
    for snippet in clip.snippets()[:model.cfg.latent.window]:
        state = model.step(state, torch.as_tensor(snippet.video)[None], torch.as_tensor(snippet.audio)[None])
    tokens = model.decoder.h_proj(state["h_window"][0]) + model.decoder.h_pos[0]  # [W, m, d]
    return {"mean step, ages 0-7": round(float(steps[:7].mean()), 4),
            "mean step, ages 8+": round(float(steps[7:].mean()), 4),
            "mean distance of a latent token from the same token one snippet later":
                round(float((tokens[1:] - tokens[:-1]).norm(dim=-1).mean()), 4)}


def main() -> None:
    parser = parser_for(__doc__, clips=150, default_out="order-age.json")
    args = parser.parse_args()
    model_dir, model = load(args)
    report = {"checkpoint": str(model_dir), "fingerprint": model.fingerprint(), "clips": args.clips,
              "latent_window_snippets": model.cfg.latent.window, "age_embeddings": age_spacing(model)}
    if model.cfg.decoder.age_slopes:  # scores per snippet of age, by layer and head (positive: older preferred)
        report["age_slopes_per_snippet"] = model.decoder.slopes_per_snippet().round(decimals=4).tolist()
    if model.cfg.decoder.length_scale:  # gains on log(context tokens), by layer and head (1: as at the start)
        report["length_scales"] = model.decoder.length_scales.round(decimals=4).tolist()
    for split in SPLITS:
        _, answered = ask_world(model, split, ("order",), args.clips)
        report[split] = tally(answered)
    write_report(report, args.out or RESULTS / "order-age.json")


if __name__ == "__main__":
    main()
