"""Where do `count_sound` answers go wrong on long streams? Splits the answers to "how many times
did you hear the drum?" by the true count, by how many snippets the stream had run when it was
asked, and by how far apart in time the sound's plays were, and tallies wrong answers as too
few, too many or not a count.

    .venv/bin/python -m experiments.count_errors [CHECKPOINT] [--clips 150] [--threads 2]

A count must be read from every snippet in the window that holds a play: over a long window the
plays are a few among many tokens. If the answers fall short more than they overshoot, and more
so for more plays or longer streams, the decoder loses plays in the crowd; if errors are alike
at every length, the count itself (the mapping to a number word) is what fails. For a model
whose hearing head counts plays (decoder.first_sight_onsets) it also reads the count the sound's
first-sight token carries (the window's plays, rounded) and splits the decoder's answers by
whether that readout was right. world:wild streams its clips through the wild media path (other
frame and sample rates, codec round trips), so there both the counter and the decoder hear
re-encoded audio. Writes experiments/results/understanding/count-errors.json (or
`--out`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable

import torch

from experiments.asking import RESULTS, ask_world, load, parser_for, rates, write_report
from model import StreamerModel
from training.world.answers import AnswerKey
from training.world.vocab import NUMBER_WORDS, SOUNDS
from training.world.wild import wild_sample

SPLITS = ("test", "long", "wild")


def asked_sound(question: str) -> str:
    """The sound a count_sound question names."""
    named = [s for s in SOUNDS if f"the {s}?" in question]
    if len(named) != 1:
        raise ValueError(f"not a count_sound question: {question!r}")
    return named[0]


def length_bin(snippets: int) -> str:
    return ("asked after 1-16 snippets" if snippets <= 16 else "asked after 17-32 snippets" if snippets <= 32
            else "asked after 33+ snippets")


def closest_plays(clip, question) -> str:
    """How close together the named sound's plays came before the question: the smallest gap, in
    snippets, between the end of one play and the start of the next (fewer than two plays: none)."""
    key = AnswerKey(clip.timeline, clip.spec, question.ask_snippets * clip.spec.snippet_seconds)
    plays = sorted((s.t_start, s.t_end) for s in key.heard if s.sound == asked_sound(question.text))
    if len(plays) < 2:
        return "fewer than two plays"
    gap = min(b[0] - a[1] for a, b in zip(plays, plays[1:])) / clip.spec.snippet_seconds
    return "plays under 1 snippet apart" if gap < 1 else "plays 1-3 snippets apart" if gap < 3 else \
        "plays 3+ snippets apart"


def error_sign(truth: str, got: str) -> str:
    if got not in NUMBER_WORDS:
        return "not a count"
    return "too few" if NUMBER_WORDS.index(got) < NUMBER_WORDS.index(truth) else "too many"


def counter_readout(model: StreamerModel, split: str) -> Callable:
    """(clip, question) -> the count word the named sound's first-sight token carries when the
    question is asked: the hearing head's plays summed over the window, rounded, on the audio the
    split streams (world:wild's through the wild media path; cached per clip)."""
    plays_of: dict[int, torch.Tensor] = {}

    def read(clip, question) -> str:
        if clip.seed not in plays_of:
            audio = wild_sample(clip)["audio"] if split == "wild" else clip.audio_snippets()
            plays_of[clip.seed] = heard_plays(model, audio)
        return count_word(plays_of[clip.seed], question, model.cfg.latent.window)

    return read


def heard_plays(model: StreamerModel, audio) -> torch.Tensor:
    """One clip's audio [T, S] -> [T, sounds]: the plays of each sound the hearing head hears start
    in each snippet (a model with decoder.first_sight_onsets)."""
    return model.clip_heard(torch.as_tensor(audio)[None])[0, :, model.cfg.decoder.first_sight_sounds:]


def count_word(plays: torch.Tensor, question, window: int) -> str:
    """plays [T, sounds] (the hearing head's per snippet) -> the count word of the question's sound
    over the `window` snippets before it is asked, rounded."""
    seen = plays[max(0, question.ask_snippets - window):question.ask_snippets]
    count = round(float(seen[:, SOUNDS.index(asked_sound(question.text))].sum()))
    return NUMBER_WORDS[min(count, len(NUMBER_WORDS) - 1)]


def tally(answered: Iterable, readout: Callable | None = None) -> dict[str, dict]:
    """Right/total/accuracy by the true count, the stream's length at the question and the plays'
    spacing, and the wrong answers by sign, from (clip, question, truth, answer) tuples; with a
    `readout` (`counter_readout`), also how often it is right and the decoder's answers by it."""
    groups: dict[str, Counter] = defaultdict(Counter)
    wrong: Counter = Counter()
    for clip, q, truth, got in answered:
        for group in ("all", f"true count {truth}", length_bin(q.ask_snippets), closest_plays(clip, q)):
            groups[group][truth == got] += 1
        if readout is not None:
            read_right = readout(clip, q) == truth
            groups["counter readout, all"][read_right] += 1
            groups[f"counter readout, {length_bin(q.ask_snippets)}"][read_right] += 1
            groups[f"counter readout, true count {truth}"][read_right] += 1
            groups[f"decoder, readout {'right' if read_right else 'wrong'}"][truth == got] += 1
        if truth != got:
            wrong[error_sign(truth, got)] += 1
    return {**rates(groups), "wrong answers": dict(wrong)}


def main() -> None:
    parser = parser_for(__doc__, clips=150, default_out="count-errors.json")
    args = parser.parse_args()
    model_dir, model = load(args)
    report = {"checkpoint": str(model_dir), "fingerprint": model.fingerprint(), "clips": args.clips}
    with torch.no_grad():
        for split in SPLITS:
            _, answered = ask_world(model, split, ("count_sound",), args.clips)
            readout = counter_readout(model, split) if model.cfg.decoder.first_sight_onsets else None
            report[split] = tally(answered, readout)
    write_report(report, args.out or RESULTS / "count-errors.json")


if __name__ == "__main__":
    main()
