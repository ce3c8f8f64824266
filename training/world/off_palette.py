"""World clips whose shapes wear colours outside the palette, for training only.

In the train split every palette colour comes with three or four of the shapes, never with
its held-out one, and a small model learns to read part of a shape from its colour: on
world:compositional it names the shape of a held-out colour-shape pair far less often than
that of a pair it has seen (experiments/shape_errors.py). Showing some clips with every
shape in a colour the world has no word for leaves geometry as the only way to the shape.

Such a clip keeps its timeline (positions, motion, sounds), re-renders its frames with new
colours, and asks only questions that neither name a colour nor are answered with one.
Its alignment truth keeps the phrases without a colour ("circle", "drum") and leaves those
with one unclear, so they neither train nor mislead the alignment head.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from training.data import Sample, world_sample
from training.world.clip import Clip, WorldConfig
from training.world.phrases import ClipPhrases, SnippetTruth, clip_phrases, hard_negatives
from training.world.questions import choose_questions
from training.world.render import render_frames
from training.world.vocab import COLORS

# Kinds whose question and answer never name a colour.
COLOUR_FREE_KINDS: tuple[str, ...] = ("shape_now", "count_now", "first_shape", "sound_now", "count_sound")
MIN_PALETTE_DISTANCE = 100.0  # RGB distance from every palette colour (palette jitter is ±15 per channel)
MIN_BRIGHTEST_CHANNEL = 110  # backgrounds are grey 20-60: keep the shape distinct from them
_DRAWS = 1000


def off_palette_rgb(rng: np.random.Generator) -> tuple[int, int, int]:
    """A colour no palette name fits: far from every palette colour and bright enough to see."""
    palette = np.array(list(COLORS.values()), dtype=np.float64)
    for _ in range(_DRAWS):
        rgb = rng.integers(0, 256, 3)
        if rgb.max() >= MIN_BRIGHTEST_CHANNEL and np.linalg.norm(palette - rgb, axis=1).min() >= MIN_PALETTE_DISTANCE:
            return tuple(int(v) for v in rgb)
    raise RuntimeError(f"no off-palette colour in {_DRAWS} draws; MIN_PALETTE_DISTANCE is too large for the palette")


def off_palette_clip(clip: Clip, config: WorldConfig) -> Clip:
    """`clip` with every shape in its own off-palette colour and only colour-free questions
    (drawn as `config` draws questions). The same clip always gives the same result."""
    rng = np.random.default_rng(np.random.SeedSequence([clip.seed, 0x0FF]))
    shapes = tuple(replace(shape, rgb=off_palette_rgb(rng)) for shape in clip.timeline.shapes)
    timeline = replace(clip.timeline, shapes=shapes)
    frames = render_frames(timeline, clip.spec, len(clip.frames), rng)
    kinds = tuple(k for k in config.kinds if k in COLOUR_FREE_KINDS)
    questions = choose_questions(timeline, clip.spec, clip.n_snippets, kinds, config.questions_per_clip, rng,
                                 dict(config.kind_weights))
    return replace(clip, timeline=timeline, frames=frames, questions=questions)


def off_palette_phrases(clip: Clip) -> ClipPhrases:
    """The alignment truth of an off-palette clip (see `_colour_names_unclear`)."""
    return _colour_names_unclear(clip, clip_phrases(clip))


def off_palette_sample(clip: Clip, config: WorldConfig, name: str = "") -> Sample:
    """A training sample of `clip` re-made off the palette."""
    recoloured = off_palette_clip(clip, config)
    sample = world_sample(recoloured, name=name or f"world:{clip.seed}(off-palette)")
    sample["phrases"] = _colour_names_unclear(recoloured, sample["phrases"])
    return sample


def _colour_names_unclear(clip: Clip, phrases: ClipPhrases) -> ClipPhrases:
    """`phrases` with every phrase that names a shape by its palette colour left unclear
    wherever it was true or unclear: a light blue is far from the palette's blue but not so
    far that "blue square" is plainly false."""
    named = {shape.name for shape in clip.timeline.shapes}

    def names_a_colour(phrase: str) -> bool:
        return any(phrase == name or phrase.startswith(name + " ") for name in named)

    truths = [
        SnippetTruth(frozenset(p for p in t.true if not names_a_colour(p)),
                     frozenset(p for p in t.unclear if not names_a_colour(p))
                     | frozenset(p for p in t.true if names_a_colour(p)))
        for t in phrases.truths
    ]
    rng = np.random.default_rng([clip.seed, 0x0FF, 0xA11])
    return ClipPhrases(tuple(truths), tuple(hard_negatives(clip.timeline, truths, rng)), phrases.onsets)
