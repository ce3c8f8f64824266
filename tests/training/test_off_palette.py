"""Off-palette clips: the same shapes and motion in colours the world has no word for, asked
only what can be answered without naming a colour."""

from __future__ import annotations

import numpy as np
import pytest

from model.media import MEDIA_PRESETS
from training.config import TrainConfig, TrainingError
from training.recipe import Stage
from training.samples import TrainingData
from training.world.answers import AnswerKey
from training.world.clip import World, WorldConfig
from training.world.off_palette import (
    COLOUR_FREE_KINDS,
    MIN_PALETTE_DISTANCE,
    off_palette_clip,
    off_palette_phrases,
    off_palette_rgb,
    off_palette_sample,
)
from training.world.vocab import COLORS

CONFIG = WorldConfig.preset("train", snippets=(6, 10))
PALETTE = np.array(list(COLORS.values()), dtype=np.float64)


def _has_colour_word(text: str) -> bool:
    return any(word in COLORS for word in text.replace("?", " ").replace(".", " ").split())


def test_off_palette_colours_are_far_from_every_palette_colour_and_vary():
    rng = np.random.default_rng(3)
    colours = np.array([off_palette_rgb(rng) for _ in range(300)], dtype=np.float64)
    distances = np.linalg.norm(colours[:, None] - PALETTE[None], axis=2).min(axis=1)
    assert distances.min() >= MIN_PALETTE_DISTANCE
    assert colours.max(axis=1).min() >= 110  # brighter than any background
    assert len({tuple(c) for c in colours}) > 250
    assert colours.std(axis=0).min() > 40  # spread over every channel, not one hue


def test_a_recoloured_clip_keeps_its_shapes_where_they_were():
    for index in range(3):
        clip = World(CONFIG).clip(index)
        recoloured = off_palette_clip(clip, CONFIG)
        assert [(s.shape, s.color, s.x, s.y, s.t_start, s.direction) for s in recoloured.timeline.shapes] == \
               [(s.shape, s.color, s.x, s.y, s.t_start, s.direction) for s in clip.timeline.shapes]
        background = np.asarray(clip.timeline.background, dtype=np.float32)
        clean = np.abs(clip.frames.astype(np.float32) - background).max(-1) > 25
        recoloured_mask = np.abs(recoloured.frames.astype(np.float32) - background).max(-1) > 25
        assert clean.any()
        overlap = (clean & recoloured_mask).sum() / (clean | recoloured_mask).sum()
        assert overlap > 0.97, overlap
        shape_pixels = recoloured.frames[recoloured_mask].astype(np.float64)
        nearest = np.linalg.norm(shape_pixels[:, None] - PALETTE[None], axis=2).min(axis=1)
        assert np.median(nearest) > MIN_PALETTE_DISTANCE - 20  # pixel noise moves a few levels
        assert np.array_equal(recoloured.audio, clip.audio)


def test_a_recoloured_clip_asks_only_colour_free_questions_with_true_answers():
    kinds = set()
    for index in range(6):
        recoloured = off_palette_clip(World(CONFIG).clip(index), CONFIG)
        assert recoloured.questions
        for q in recoloured.questions:
            kinds.add(q.kind)
            assert q.kind in COLOUR_FREE_KINDS
            assert not _has_colour_word(q.text) and not _has_colour_word(q.answer), q
            key = AnswerKey(recoloured.timeline, recoloured.spec, q.t_ask)
            if q.kind in ("shape_now", "count_now", "first_shape", "sound_now"):
                assert q.answer == key.answer(q.kind)
    assert {"shape_now", "first_shape", "count_now"} <= kinds


def test_the_same_clip_is_recoloured_the_same_way_every_time():
    clip = World(CONFIG).clip(4)
    first, second = off_palette_clip(clip, CONFIG), off_palette_clip(clip, CONFIG)
    assert np.array_equal(first.frames, second.frames)
    assert first.questions == second.questions
    assert off_palette_phrases(first) == off_palette_phrases(second)


def test_phrases_that_name_a_palette_colour_are_left_unclear_not_true():
    clip = World(CONFIG).clip(1)
    recoloured = off_palette_clip(clip, CONFIG)
    phrases = off_palette_phrases(recoloured)
    named = {s.name for s in clip.timeline.shapes}
    saw_a_name = False
    for truth in phrases.truths:
        assert not any(_has_colour_word(p) for p in truth.true)
        for name in named:
            if name in truth.unclear:
                saw_a_name = True
                assert name.split()[1] in truth.true | truth.unclear  # the bare shape stays
    assert saw_a_name
    assert not any(_has_colour_word(p) for p in phrases.negatives)
    sample = off_palette_sample(clip, CONFIG, name="x")
    assert sample["phrases"] == phrases and sample["name"] == "x"
    assert [q.kind for q in sample["questions"]] == [q.kind for q in recoloured.questions]


def test_training_data_recolours_the_share_it_is_given():
    media = MEDIA_PRESETS["tiny"]
    names = [TrainingData.open("world", media, seed=2, questions_per_clip=4, off_palette=0.5)
             .sample(i, (4, 6))["name"] for i in range(24)]
    recoloured = sum(n.endswith("(off-palette)") for n in names)
    assert 4 <= recoloured <= 20, names
    plain = TrainingData.open("world", media, seed=2, questions_per_clip=4)
    assert not any(plain.sample(i, (4, 6))["name"].endswith("(off-palette)") for i in range(8))


def test_off_palette_is_checked_and_reaches_the_training_command(tmp_path):
    with pytest.raises(TrainingError, match="between 0 and 1"):
        TrainConfig(out=str(tmp_path), off_palette=1.5).validate()
    (tmp_path / "data").mkdir()
    with pytest.raises(TrainingError, match="does not apply to a folder"):
        TrainingData.open(str(tmp_path / "data"), MEDIA_PRESETS["tiny"], off_palette=0.2)
    flags = Stage(steps=10, lr=1e-4, warmup=1, off_palette=0.3).train_flags()
    assert flags[flags.index("--off-palette") + 1] == "0.3"
    assert "--off-palette" not in Stage(steps=10, lr=1e-4, warmup=1).train_flags()
    assert TrainConfig(out=str(tmp_path), off_palette=0.3).data_identity()["off_palette"] == 0.3
