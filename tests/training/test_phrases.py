"""The alignment truth of the world: which phrase is true, false or unclear in which snippet."""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch

from model import ModelConfig, StreamerModel
from model.align import FALSE, TRUE, UNCLEAR
from model.media import MEDIA_PRESETS
from training.samples import TrainingData, phrase_pool
from training.world import ShapeEvent, SoundEvent, Timeline, World, WorldConfig
from training.world.phrases import NOTHING_ON_SCREEN, SILENCE, clip_phrases, hard_negatives, snippet_truths
from training.world.vocab import COLORS

SPEC = MEDIA_PRESETS["tiny"]
D = SPEC.snippet_seconds


def shape(kind, color, x=32.0, y=32.0, direction="still", speed=0.0, t_start=0.0, t_end=10.0, size=20.0):
    return ShapeEvent(kind, color, COLORS[color], size, x, y, direction, speed, t_start, t_end)


def test_a_still_shape_and_its_sound_are_true_only_while_they_happen():
    # red square from snippet 1 to 3; its drum plays inside snippet 2; a whistle with no owner in snippet 5
    tl = Timeline(SPEC.width, SPEC.height, 6 * D,
                  (shape("square", "red", t_start=1 * D, t_end=4 * D),),
                  (SoundEvent("drum", 2 * D + 0.1, owner=0), SoundEvent("whistle", 5 * D + 0.1)))
    truths = snippet_truths(tl, SPEC, 6)
    assert truths[0].true == {NOTHING_ON_SCREEN, SILENCE}
    assert truths[1].true == {"red square", "square", "red square standing still", SILENCE}
    assert truths[2].true == {"red square", "square", "red square standing still", "drum",
                              "red square makes a drum"}
    assert truths[4].true == {NOTHING_ON_SCREEN, SILENCE}
    assert truths[5].true == {NOTHING_ON_SCREEN, "whistle"}
    assert truths[2].target("blue square") == FALSE and truths[2].target("drum") == TRUE


def test_a_shape_half_off_the_canvas_and_a_grazing_sound_are_unclear():
    # a circle entering from the left edge at 10 px/s: 28% of it shows at the end of snippet 0, 60% at the end of 1
    tl = Timeline(SPEC.width, SPEC.height, 4 * D,
                  (shape("circle", "blue", x=-10.0, direction="right", speed=10.0, t_end=4 * D),),
                  (SoundEvent("beep", 1 * D - 0.03),))  # 0.03 s inside snippet 0, 0.12 s inside snippet 1
    truths = snippet_truths(tl, SPEC, 4)
    assert truths[0].target("blue circle") == UNCLEAR and truths[0].target("blue circle moving right") == UNCLEAR
    assert truths[0].target(NOTHING_ON_SCREEN) == UNCLEAR
    assert truths[0].target("beep") == UNCLEAR and truths[0].target(SILENCE) == UNCLEAR
    assert truths[1].target("beep") == TRUE and truths[1].target("blue circle") == TRUE
    assert truths[3].target("blue circle moving right") == TRUE and truths[3].target(NOTHING_ON_SCREEN) == FALSE


def test_hard_negatives_are_one_word_from_a_true_phrase():
    tl = Timeline(SPEC.width, SPEC.height, 3 * D,
                  (shape("square", "red", direction="left", speed=5.0, t_end=3 * D),),
                  (SoundEvent("drum", 0.2, owner=0),))
    truths = snippet_truths(tl, SPEC, 3)
    negatives = hard_negatives(tl, truths, np.random.default_rng(0))
    true = {p for t in truths for p in t.true}
    assert negatives and not set(negatives) & true
    for phrase in negatives:
        words = phrase.split()
        assert any(len(words) == len(t.split()) and sum(a != b for a, b in zip(words, t.split())) <= 2
                   for t in true), phrase


def test_the_batch_pool_marks_every_snippet_against_every_phrase():
    model = StreamerModel(ModelConfig.from_name("tiny"))
    data = TrainingData.open("world", model.cfg.media)
    samples = [data.sample(i, (3, 5)) for i in range(3)]
    torch.manual_seed(0)
    pool = phrase_pool(model, samples, max(len(s["video"]) for s in samples))
    targets = pool["align_targets"]
    assert targets.shape[:2] == (3, max(len(s["video"]) for s in samples))
    for i, sample in enumerate(samples):
        truths = sample["phrases"].truths
        assert (targets[i, len(truths):] == UNCLEAR).all()  # padding snippets take no part
        assert int((targets[i, :len(truths)] == TRUE).sum()) == sum(len(t.true) for t in truths)


def test_clip_phrases_are_deterministic_and_question_kind_weights_shift_the_mix():
    world = World(WorldConfig.preset("train", questions_per_clip=8))
    assert clip_phrases(world.clip(5)) == clip_phrases(world.clip(5))
    weighted = World(WorldConfig.preset("train", questions_per_clip=8, kind_weights=(("direction", 20.0),)))
    plain = Counter(q.kind for i in range(40) for q in world.clip(i).questions)
    heavy = Counter(q.kind for i in range(40) for q in weighted.clip(i).questions)
    assert heavy["direction"] > 2 * plain["direction"]


def test_hard_negatives_do_not_depend_on_the_hash_seed():
    """Each DDP rank and a resumed run is another process with another string hash seed."""
    import subprocess
    import sys

    code = ("from training.world import World, WorldConfig; from training.world.phrases import clip_phrases; "
            "print(clip_phrases(World(WorldConfig.preset('train')).clip(7)).negatives)")
    outputs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              env={**__import__("os").environ, "PYTHONHASHSEED": seed}).stdout
               for seed in ("1", "2", "3")}
    assert len(outputs) == 1
