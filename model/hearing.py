"""Which sounds play in a snippet, from its log-mel spectrogram alone.

The first-sight head reads the latent tokens, where sound and sight are fused; trained on the
world's shape-sound pairs, it learned which shapes make which sounds and missed sounds that
came with an unusual shape (world:compositional). This head sees no picture, so what it hears
cannot depend on what is on screen (`DecoderConfig.first_sight_sounds`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.config import ModelConfig

KERNEL_FRAMES = 5  # each frame's logits see two frames either side: a chirp's sweep, a whistle's vibrato
WIDTH = 64  # channels: five synthetic sounds apart from noise need few


class Hearing(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.inp = nn.Conv1d(cfg.encoder.n_mels, WIDTH, KERNEL_FRAMES, padding=KERNEL_FRAMES // 2)
        self.mid = nn.Conv1d(WIDTH, WIDTH, KERNEL_FRAMES, padding=KERNEL_FRAMES // 2)
        self.out = nn.Linear(WIDTH, cfg.decoder.first_sight_sounds)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """log-mel [N, frames, mels] -> [N, sounds] logits that each sound plays in the snippet:
        the largest of its frames' logits, as a sound that plays in one frame plays in the snippet."""
        x = F.gelu(self.inp(mel.transpose(1, 2)))
        x = F.gelu(self.mid(x))
        return self.out(x.transpose(1, 2)).amax(dim=1)
