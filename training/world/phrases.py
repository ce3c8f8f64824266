"""What each snippet shows and sounds like, as short phrases: the alignment head's truth.

Every phrase comes from the timeline, in one small grammar that standing queries and
search use too: "{color} {shape}", "{shape}", "{color} {shape} moving {direction}" or
"... standing still", "{sound}", "{color} {shape} makes a {sound}", "nothing on screen",
"silence". For snippet k the truth of every phrase of the grammar is known exactly, so a
phrase is TRUE, FALSE or UNCLEAR there (a shape partly off the canvas, a sound that only
grazes the snippet): unclear pairs are left out of training and of evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.media import MediaSpec
from training.world.questions import CLEAR_FRACTION, MIN_OVERLAP_NOW
from training.world.timeline import Timeline
from training.world.vocab import COLORS, DIRECTIONS, SHAPES, SOUNDS

NOTHING_ON_SCREEN = "nothing on screen"
SILENCE = "silence"

# Ways a user words a phrase; training pairs each canonical phrase with one of these, so the
# text side learns to ignore the wrapping ("a red square appears" means "red square").
SIGHT_TEMPLATES = ("{p}", "a {p}", "the {p}", "a {p} appears", "{p} on screen", "when is the {p} there")
SOUND_TEMPLATES = ("{p}", "a {p}", "the {p}", "a {p} sound", "when did the {p} play", "{p} plays")
PLAIN_TEMPLATES = ("{p}",)


def motion_words(direction: str) -> str:
    return "standing still" if direction == "still" else f"moving {direction}"


def binding(name: str, sound: str) -> str:
    """"blue circle makes a drum": the shape named made that sound."""
    return f"{name} makes a {sound}"


@dataclass(frozen=True)
class SnippetTruth:
    """The phrases that are true in one snippet, and those whose truth is unclear there;
    every other phrase of the grammar is false."""

    true: frozenset[str]
    unclear: frozenset[str]

    def target(self, phrase: str) -> int:
        """1 true, 0 false, -1 unclear (model.align.TRUE/FALSE/UNCLEAR)."""
        return 1 if phrase in self.true else -1 if phrase in self.unclear else 0


def _shape_phrases(name: str, shape: str, direction: str) -> list[str]:
    return [name, shape, f"{name} {motion_words(direction)}"]


def snippet_onsets(timeline: Timeline, spec: MediaSpec, n_snippets: int) -> tuple[tuple[int, ...], ...]:
    """Per snippet 0..n_snippets-1, how many plays of each of SOUNDS start inside it: what
    "how many times did you hear the drum?" adds up over the snippets seen."""
    counts = np.zeros((n_snippets, len(SOUNDS)), dtype=np.int64)
    for play in timeline.sounds:
        k = int(play.t_start // spec.snippet_seconds)
        if 0 <= k < n_snippets:
            counts[k, SOUNDS.index(play.sound)] += 1
    return tuple(tuple(int(c) for c in row) for row in counts)


def snippet_truths(timeline: Timeline, spec: MediaSpec, n_snippets: int) -> list[SnippetTruth]:
    """The truth of every snippet 0..n_snippets-1. A shape counts in snippet k when it shows at
    least CLEAR_FRACTION of itself in the snippet's last frame (the picture "now"), and is
    unclear when it shows in some frame of the snippet but not that clearly; a sound counts
    when at least MIN_OVERLAP_NOW seconds of a play fall inside the snippet."""
    truths = []
    f = spec.frames_per_snippet
    for k in range(n_snippets):
        true: set[str] = set()
        unclear: set[str] = set()
        any_visible = False
        for i, shape in enumerate(timeline.shapes):
            fractions = [shape.visible_fraction(j / spec.fps, timeline.width, timeline.height)
                         for j in range(k * f, (k + 1) * f)]
            any_visible |= max(fractions) > 0
            if fractions[-1] >= CLEAR_FRACTION:
                true.update(_shape_phrases(shape.name, shape.shape, shape.direction))
            elif max(fractions) > 0:
                unclear.update(_shape_phrases(shape.name, shape.shape, shape.direction))
        t0, t1 = k * spec.snippet_seconds, (k + 1) * spec.snippet_seconds
        any_sound = False
        for play in timeline.sounds:
            overlap = play.overlap(t0, t1)
            if overlap <= 0:
                continue
            any_sound = True
            phrases = [play.sound]
            if play.owner is not None:
                phrases.append(binding(timeline.shapes[play.owner].name, play.sound))
            (true if overlap >= MIN_OVERLAP_NOW else unclear).update(phrases)
        unclear -= true
        if not any_visible:
            true.add(NOTHING_ON_SCREEN)
        elif not any(p in true for p in (s.name for s in timeline.shapes)):
            unclear.add(NOTHING_ON_SCREEN)
        if not any_sound:
            true.add(SILENCE)
        elif not any(s in true for s in SOUNDS):
            unclear.add(SILENCE)
        truths.append(SnippetTruth(frozenset(true), frozenset(unclear)))
    return truths


def hard_negatives(timeline: Timeline, truths: list[SnippetTruth], rng: np.random.Generator) -> list[str]:
    """Phrases one word away from a true one (same shape other colour, other direction, same
    sound from another shape...): what the alignment must tell apart, not just any phrase."""
    colors, names = list(COLORS), [s.name for s in timeline.shapes]
    out: set[str] = set()
    for truth in truths:
        for phrase in sorted(truth.true):  # in a fixed order: set order changes with each process's hash seed
            words = phrase.split()
            if " makes a " in phrase:
                name, sound = phrase.split(" makes a ")
                out.add(binding(name, _other(SOUNDS, sound, rng)))
                others = [n for n in names if n != name]
                other = others[rng.integers(len(others))] if others else _random_name(rng)
                out.add(binding(other, sound))
            elif len(words) == 2 and words[1] in SHAPES:
                out.add(f"{_other(colors, words[0], rng)} {words[1]}")
                out.add(f"{words[0]} {_other(SHAPES, words[1], rng)}")
            elif len(words) >= 3 and words[1] in SHAPES:
                name = " ".join(words[:2])
                direction = "still" if words[2] == "standing" else words[3]
                out.add(f"{name} {motion_words(_other(DIRECTIONS, direction, rng))}")
            elif phrase in SOUNDS:
                out.add(_other(SOUNDS, phrase, rng))
    return sorted(out)


@dataclass(frozen=True)
class ClipPhrases:
    """A clip's alignment truth: one SnippetTruth per snippet and its hard negatives, and the
    plays each snippet starts (`snippet_onsets`; empty where unknown)."""

    truths: tuple[SnippetTruth, ...]
    negatives: tuple[str, ...]
    onsets: tuple[tuple[int, ...], ...] = ()


def clip_phrases(clip) -> ClipPhrases:
    """The alignment truth of a rendered `Clip` (negatives drawn from the clip's seed)."""
    truths = snippet_truths(clip.timeline, clip.spec, clip.n_snippets)
    rng = np.random.default_rng([clip.seed, 0xA11])
    return ClipPhrases(tuple(truths), tuple(hard_negatives(clip.timeline, truths, rng)),
                       snippet_onsets(clip.timeline, clip.spec, clip.n_snippets))


def templates_for(phrase: str) -> tuple[str, ...]:
    if phrase in (NOTHING_ON_SCREEN, SILENCE):
        return PLAIN_TEMPLATES
    if phrase in SOUNDS:
        return SOUND_TEMPLATES
    if " makes a " in phrase:
        return ("{p}", "the {p}", "when did the {p}")
    return SIGHT_TEMPLATES


def _other(options, current: str, rng: np.random.Generator) -> str:
    choices = [o for o in options if o != current]
    return choices[rng.integers(len(choices))]


def _random_name(rng: np.random.Generator) -> str:
    colors = list(COLORS)
    return f"{colors[rng.integers(len(colors))]} {SHAPES[rng.integers(len(SHAPES))]}"
