"""Media from the wild: world clips re-made at other rates and through real codecs still show
and sound like the clean clip, snippet for snippet, and the pipeline uses them."""

from __future__ import annotations

import numpy as np

from model.media import MEDIA_PRESETS
from training.evaluate import load_eval_clips
from training.world.clip import World, WorldConfig
from training.world.wild import WildMedia, wild_clip, wild_sample


def _clip(index: int = 0):
    return World(WorldConfig.preset("wild", snippets=(5, 6))).clip(index)


def test_wild_media_vary_across_clips():
    draws = [WildMedia.draw(np.random.default_rng(i)) for i in range(40)]
    assert {d.container for d in draws} == {"mp4", "webm"}
    assert {d.stereo for d in draws} == {True, False}
    assert min(d.fps for d in draws) < 14 and max(d.fps for d in draws) > 25
    assert min(d.sample_rate for d in draws) <= 11_025 and max(d.sample_rate for d in draws) >= 44_100


def test_a_wild_clip_keeps_the_picture_and_the_sound_snippet_by_snippet():
    spec = MEDIA_PRESETS["tiny"]
    for index in range(4):
        clip = _clip(index)
        video, audio, media = wild_clip(clip)
        assert video.dtype == np.uint8 and audio.dtype == np.float32
        assert video.shape[1:] == (spec.frames_per_snippet, spec.height, spec.width, 3)
        assert audio.shape[1:] == (spec.samples_per_snippet,)
        n = len(video)
        assert clip.n_snippets - 1 <= n <= clip.n_snippets, media
        clean_v = clip.video_snippets()[:n, -1].astype(np.float32)
        wild_v = video[:, -1].astype(np.float32)
        picture = np.corrcoef(clean_v.ravel(), wild_v.ravel())[0, 1]
        assert picture > 0.9, (media, picture)
        clean_rms = np.sqrt((clip.audio_snippets()[:n] ** 2).mean(-1))
        wild_rms = np.sqrt((audio ** 2).mean(-1))
        if clean_rms.std() > 0.01:  # some snippet holds a play: it stays the loud one
            assert np.corrcoef(clean_rms, wild_rms)[0, 1] > 0.9, (media, clean_rms, wild_rms)


def test_the_same_clip_is_made_the_same_way_every_time():
    clip = _clip(1)
    first, second = wild_clip(clip), wild_clip(clip)
    assert first[2] == second[2]
    assert np.array_equal(first[0], second[0]) and np.allclose(first[1], second[1], atol=1e-6)


def test_wild_samples_and_the_wild_split_keep_only_answerable_questions():
    clip = _clip(2)
    sample = wild_sample(clip)
    assert sample["questions"] and all(q.ask_snippets <= len(sample["video"]) for q in sample["questions"])
    clips = load_eval_clips("world:wild", MEDIA_PRESETS["tiny"], clips=2)
    assert len(clips) == 2 and all(c.name.startswith("world:wild#") for c in clips)
    for c in clips:
        assert all(q.ask_snippets <= len(c.video) for q in c.questions)
