"""Standing queries and search with the bundled model on a hand-built timeline: the trained
alignment head must fire once per appearance, near its onset, and find the past."""

from __future__ import annotations

import numpy as np
import pytest

from streamer import Engine
from streamer.sources import Arrays
from training.world import ShapeEvent, SoundEvent, Timeline
from training.world.render import render_audio, render_frames
from training.world.vocab import COLORS

SNIPPETS = 14


@pytest.fixture(scope="module")
def engine():
    with Engine.load() as engine:
        yield engine


def _hand_built(spec) -> tuple[Arrays, float]:
    """A red square twice (snippets 1-3 and 8-10) and a drum twice while the screen is empty
    (snippets 5 and 12), with the world's usual pixel and audio noise."""
    d = spec.snippet_seconds
    square = dict(shape="square", color="red", rgb=COLORS["red"], size=24.0, x=32.0, y=32.0,
                  direction="still", speed=0.0)
    timeline = Timeline(spec.width, spec.height, SNIPPETS * d,
                        (ShapeEvent(**square, t_start=1 * d, t_end=4 * d), ShapeEvent(**square, t_start=8 * d, t_end=11 * d)),
                        (SoundEvent("drum", 5 * d + 0.1, peak=0.5), SoundEvent("drum", 12 * d + 0.1, peak=0.5)),
                        pixel_noise=2.0, noise_level=0.02)
    rng = np.random.default_rng(0)
    frames = render_frames(timeline, spec, SNIPPETS * spec.frames_per_snippet, rng)
    audio = render_audio(timeline, spec, SNIPPETS * spec.samples_per_snippet, rng)
    return Arrays(video=frames, fps=spec.fps, audio=audio, rate=spec.sample_rate), d


def _fired(engine) -> tuple[dict[str, list[int]], object]:
    """Where a red-square watch and a drum watch fired along the hand-built clip, and the session."""
    source, _ = _hand_built(engine.media)
    session = engine.session()
    square, drum = session.watch("a red square appears"), session.watch("drum")
    events = [e for update in session.stream(source) for e in update.events]
    return {phrase: [e.index for e in events if e.watch == watch.id]
            for phrase, watch in (("square", square), ("drum", drum))}, session


@pytest.fixture(scope="module")
def streamed(engine):
    return _fired(engine)


def test_a_watch_fires_once_per_appearance_near_its_onset(streamed):
    fired, session = streamed
    assert len(fired["square"]) == 2, fired
    assert all(abs(got - want) <= 1 for got, want in zip(fired["square"], [1, 8])), fired
    # the past: the best moment for the drum is one of its two plays, and both are in the top two
    moments = session.search("drum", k=2)
    assert {m.first for m in moments} & {5, 12} and all(abs(m.first - 5) <= 1 or abs(m.first - 12) <= 1
                                                         for m in moments)
    square_moment = session.search("red square", k=1)[0]
    assert 0 <= square_moment.first <= 3 or 7 <= square_moment.first <= 10


def test_a_sound_watch_fires_with_nothing_on_screen(streamed):
    fired, _ = streamed
    assert len(fired["drum"]) == 2 and all(abs(got - want) <= 1 for got, want in zip(fired["drum"], [5, 12])), fired
