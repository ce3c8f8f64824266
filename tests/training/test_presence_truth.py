"""The first-sight head's truth: which named shapes and sounds are present in each snippet,
unknown where the alignment truth is unclear, and how it reaches a training batch."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from model import ModelConfig, StreamerModel
from model.media import MEDIA_PRESETS
from training.data import world_sample
from training.samples import onset_batch, presence_batch, to_model_batch
from training.world import ShapeEvent, SoundEvent, Timeline, World, WorldConfig
from training.world.first_sight import ABSENT, FIRST_SIGHT_CLASSES, PRESENT, UNKNOWN, presence_targets
from training.world.off_palette import off_palette_sample
from training.world.phrases import snippet_truths
from training.world.vocab import COLORS, SHAPES, SOUNDS

SPEC = MEDIA_PRESETS["tiny"]
D = SPEC.snippet_seconds  # 0.64 s, 8 frames
COLUMN = {name: j for j, name in enumerate(FIRST_SIGHT_CLASSES)}


def test_the_classes_are_every_shape_name_then_every_sound():
    assert len(FIRST_SIGHT_CLASSES) == len(COLORS) * len(SHAPES) + len(SOUNDS)
    assert FIRST_SIGHT_CLASSES[0] == "red circle" and FIRST_SIGHT_CLASSES[-len(SOUNDS):] == SOUNDS


def test_presence_follows_the_snippet_truth():
    circle = ShapeEvent("circle", "red", COLORS["red"], 20.0, 32.0, 32.0, "still", 0.0, D, 3 * D)
    timeline = Timeline(64, 64, 4 * D, (circle,), (SoundEvent("drum", 2 * D + 0.1),))
    targets = presence_targets(snippet_truths(timeline, SPEC, 4))
    assert targets.shape == (4, len(FIRST_SIGHT_CLASSES)) and targets.dtype == np.int8
    assert targets[:, COLUMN["red circle"]].tolist() == [ABSENT, PRESENT, PRESENT, ABSENT]
    assert targets[:, COLUMN["drum"]].tolist() == [ABSENT, ABSENT, PRESENT, ABSENT]
    others = np.delete(targets, [COLUMN["red circle"], COLUMN["drum"]], axis=1)
    assert (others == ABSENT).all()


def test_a_shape_mostly_off_the_canvas_or_off_the_palette_is_unknown():
    half = ShapeEvent("square", "blue", COLORS["blue"], 20.0, 72.0, 32.0, "still", 0.0, 0.0, 2 * D)
    targets = presence_targets(snippet_truths(Timeline(64, 64, 2 * D, (half,)), SPEC, 2))
    assert targets[:, COLUMN["blue square"]].tolist() == [UNKNOWN, UNKNOWN]
    config = WorldConfig.preset("train", snippets=(6, 6))
    clip = World(config).clip(3)
    names = [COLUMN[shape.name] for shape in clip.timeline.shapes]
    recoloured = presence_targets(off_palette_sample(clip, config)["phrases"].truths)
    assert names and set(np.unique(recoloured[:, names])) <= {ABSENT, UNKNOWN}


def test_a_batch_pads_with_unknown_and_leaves_clips_without_a_truth_unknown():
    config = WorldConfig.preset("train", snippets=(3, 3))
    sample = world_sample(World(config).clip(0))
    samples = [sample, {"video": np.zeros((4, 1)), "name": "folder clip"}]
    batch = presence_batch(samples, 4, len(FIRST_SIGHT_CLASSES))
    assert batch.shape == (2, 4, len(FIRST_SIGHT_CLASSES))
    assert batch[0, :3].tolist() == presence_targets(sample["phrases"].truths).tolist()
    assert (batch[0, 3] == UNKNOWN).all() and (batch[1] == UNKNOWN).all()


def test_the_plays_each_snippet_starts_reach_a_batch_off_the_palette_too():
    config = WorldConfig.preset("train", snippets=(6, 6))
    clip = World(config).clip(3)
    sample = world_sample(clip)
    onsets = np.array(sample["phrases"].onsets)
    assert onsets.shape == (6, len(SOUNDS)) and onsets.sum() == len(clip.timeline.sounds) > 0
    assert off_palette_sample(clip, config)["phrases"].onsets == sample["phrases"].onsets
    samples = [sample, {"video": np.zeros((4, 1)), "name": "folder clip"}]
    batch = onset_batch(samples, 7)
    assert batch.shape == (2, 7, len(SOUNDS)) and batch[0, :6].tolist() == onsets.tolist()
    assert (batch[0, 6] == -1).all() and (batch[1] == -1).all()
    plain = ModelConfig.from_name("tiny")
    counting = dataclasses.replace(plain, decoder=dataclasses.replace(
        plain.decoder, first_sight_classes=len(FIRST_SIGHT_CLASSES), first_sight_tokens=True,
        first_sight_sounds=len(SOUNDS), first_sight_onsets=True))
    with torch.device("meta"):  # the batch needs the model's config and tokenizer, not its weights
        models = StreamerModel(plain), StreamerModel(counting)
    assert "onset_targets" not in to_model_batch(models[0], [sample])
    assert to_model_batch(models[1], [sample])["onset_targets"].tolist() == onset_batch([sample], 6).tolist()
