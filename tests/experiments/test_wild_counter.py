"""experiments.wild_counter: the counter's answers on clean and wild audio, split by how the wild media was made."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import torch

from experiments.wild_counter import counter_on_wild, media_groups
from model import StreamerModel
from training.world.vocab import SOUNDS
from training.world.wild import WildMedia

sys.path.insert(0, str(Path(__file__).parents[1] / "model"))
from model_helpers import counting_config  # noqa: E402


def _media(**changes) -> WildMedia:
    media = WildMedia(fps=12.5, sample_rate=8_000, stereo=False, container="mp4", quality=20, gain=(1.0, 1.0, 1.0),
                      offset=(0.0, 0.0, 0.0), sensor_noise=0.0, audio_gain=0.6)
    return dataclasses.replace(media, **changes)


def test_each_clip_falls_in_one_group_of_each_property():
    assert media_groups(_media()) == ["sample rate 8-11 kHz", "mono", "H.264 + AAC", "audio gain 0.5-0.8"]
    assert media_groups(_media(sample_rate=48_000, stereo=True, container="webm", audio_gain=1.2)) == [
        "sample rate 32-48 kHz", "stereo", "VP8 + Opus", "audio gain 1.05-1.3"]
    assert media_groups(_media(sample_rate=24_000, audio_gain=1.0))[::3] == ["sample rate 16-24 kHz",
                                                                          "audio gain 0.8-1.05"]


def test_a_counter_that_hears_nothing_is_right_on_the_silent_sounds_alone():
    model = StreamerModel(counting_config()).eval()
    model.clip_heard = lambda audio: torch.zeros(1, audio.shape[1], 2 * len(SOUNDS))
    report = counter_on_wild(model, 2)
    clean, wild = report["counter on the clean audio"], report["counter on the wild audio, all"]
    assert clean["total"] == wild["total"] > 0 and clean["right"] == wild["right"]  # zero plays either way
    assert report["mean plays per question"]["clean"] == report["mean plays per question"]["wild"] == 0.0
    assert clean["accuracy"] < 1.0 or report["mean plays per question"]["true"] == 0.0
