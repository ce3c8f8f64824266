"""Which sounds play in a snippet, and how many plays start there, from its log-mel alone.

The first-sight head reads the latent tokens, where sound and sight are fused; trained on the
world's shape-sound pairs, it learned which shapes make which sounds and missed sounds that
came with an unusual shape (world:compositional). This head sees no picture, so what it hears
cannot depend on what is on screen (`DecoderConfig.first_sight_sounds`). With
`DecoderConfig.first_sight_onsets` it also counts the plays that start in the snippet, which the
decoder adds up over its window for "how many times did you hear the drum?".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.config import ModelConfig

KERNEL_FRAMES = 5  # each frame's logits see two frames either side: a chirp's sweep, a whistle's vibrato
WIDTH = 64  # channels: five synthetic sounds apart from noise need few
# Each frame's onset logit is read this far below zero, so that a fresh head counts about 0.16
# plays in a snippet of 64 frames instead of 32 (σ(−6) ≈ 0.0025).
ONSET_PRIOR = 6.0


class Hearing(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        sounds = cfg.decoder.first_sight_sounds
        self.inp = nn.Conv1d(cfg.encoder.n_mels, WIDTH, KERNEL_FRAMES, padding=KERNEL_FRAMES // 2)
        self.mid = nn.Conv1d(WIDTH, WIDTH, KERNEL_FRAMES, padding=KERNEL_FRAMES // 2)
        self.out = nn.Linear(WIDTH, sounds)
        self.onsets = nn.Linear(WIDTH, sounds) if cfg.decoder.first_sight_onsets else None

    def forward(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """log-mel [N, frames, mels] -> (logits [N, sounds] that each sound plays in the snippet:
        the largest of its frames' logits, as a sound that plays in one frame plays in the
        snippet; with onsets, how many plays of each start in the snippet [N, sounds]: the sum
        over frames of how surely one starts there, else None)."""
        x = F.gelu(self.inp(mel.transpose(1, 2)))
        x = F.gelu(self.mid(x)).transpose(1, 2)  # [N, frames, WIDTH]
        logits = self.out(x).amax(dim=1)
        if self.onsets is None:
            return logits, None
        return logits, torch.sigmoid(self.onsets(x) - ONSET_PRIOR).sum(dim=1)
