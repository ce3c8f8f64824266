"""The snippet encoder's view of position and motion, and older configs loading as they were."""

from __future__ import annotations

import dataclasses

import torch

from model import ModelConfig, StreamerModel
from model.encoders import token_positions


def _moving_square(direction: int, frames: int = 8, size: int = 64) -> torch.Tensor:
    """uint8 [1, F, H, W, 3]: a white square that ends at the same place, arriving from the
    left (direction=+1) or from the right (-1)."""
    video = torch.full((1, frames, size, size, 3), 40, dtype=torch.uint8)
    for f in range(frames):
        x = 24 + direction * 2 * (f - frames + 1)
        video[0, f, 20:40, x:x + 20] = 235
    return video


def test_fixed_positions_tell_every_token_apart():
    cfg = ModelConfig.from_name("tiny")
    pos = token_positions(cfg)
    assert pos.shape == (cfg.snippet_tokens, cfg.encoder.dim)
    # tubes and patches at the same place of the picture share their position ...
    tubes = (cfg.media.height // cfg.encoder.tube_size) ** 2
    assert torch.allclose(pos[:tubes], pos[tubes:2 * tubes])
    # ... and every place of the picture and of the spectrogram has its own
    places = torch.cat((pos[:tubes], pos[2 * tubes:]))
    distances = torch.cdist(places, places) + torch.eye(len(places)) * 1e3
    assert float(distances.min()) > 0.1


def test_patch_tokens_see_which_way_the_picture_moved():
    torch.manual_seed(0)
    model = StreamerModel(ModelConfig.from_name("tiny")).eval()
    cfg = model.cfg
    tubes = (cfg.media.height // cfg.encoder.tube_size) ** 2
    right, left = _moving_square(+1), _moving_square(-1)
    assert torch.equal(right[:, -1], left[:, -1])  # the same last frame
    patches = [model.encoder.video_tokens(v)[:, tubes:] for v in (right, left)]
    assert (patches[0] - patches[1]).abs().max() > 1e-3
    still = dataclasses.replace(cfg, encoder=dataclasses.replace(cfg.encoder, motion=False))
    torch.manual_seed(0)
    blind = StreamerModel(still).eval()
    patches = [blind.encoder.video_tokens(v)[:, tubes:] for v in (right, left)]
    assert torch.equal(patches[0], patches[1])


def test_configs_written_before_motion_and_positions_load_as_trained():
    data = ModelConfig.from_name("tiny").to_dict()
    del data["encoder"]["motion"], data["encoder"]["positions"]
    old = ModelConfig.from_dict(data)
    assert old.encoder.motion is False and old.encoder.positions == "learned"
    model = StreamerModel(old)
    assert model.encoder.patches.in_channels == 3 and not model.encoder.fixed_pos.any()
    # and they keep the fingerprint they were written with: cards and saved states still match
    assert old.fingerprint_dict()["encoder"] == data["encoder"]
    assert ModelConfig.from_name("tiny").fingerprint_dict()["encoder"]["motion"] is True
