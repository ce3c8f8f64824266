"""Snippet encoder: video tubes + patches and log-mel audio patches through one shared ViT.

The audio front end is framed so that a stream cut into snippets gives exactly the
spectrogram of the whole clip: each snippet is analysed together with the last
`n_fft - hop` samples of the previous one (the "audio tail", kept in the stream state;
zeros before the first snippet).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

from model.config import ModelConfig
from model.layers import Block


class LogMel(nn.Module):
    """Log-mel frames of windows that already carry their left context (center=False framing)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        e = cfg.encoder
        self.n_fft, self.hop = e.n_fft, e.hop
        self.context = e.n_fft - e.hop
        self.register_buffer("window", torch.hann_window(e.n_fft), persistent=False)
        with torch.device("cpu"):  # a fixed filter bank, also when the model is built on "meta"
            fbanks = torchaudio.functional.melscale_fbanks(
                e.n_fft // 2 + 1, 0.0, cfg.media.sample_rate / 2, e.n_mels, cfg.media.sample_rate
            )
        self.register_buffer("fbanks", fbanks, persistent=False)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """windows [N, context + S] float32 -> log-mel [N, S / hop, n_mels], roughly unit scale."""
        frames = windows.unfold(-1, self.n_fft, self.hop) * self.window
        power = torch.fft.rfft(frames, dim=-1).abs().pow(2)
        return (torch.log(power @ self.fbanks + 1e-6) + 2.0) / 5.0


def audio_windows(audio: torch.Tensor, context: int, samples: int) -> torch.Tensor:
    """Cut a clip's audio [B, T*S] into per-snippet windows [B, T, context + S] (zeros before t=0),
    the same windows streaming builds from its audio tail."""
    padded = F.pad(audio, (context, 0))
    return padded.unfold(-1, context + samples, samples)


def sincos_2d(rows: torch.Tensor, cols: torch.Tensor, dim: int) -> torch.Tensor:
    """Fixed positions [N, dim] for points (rows, cols): half the channels encode the row,
    half the column, each as sines and cosines at geometric frequencies (as in MAE)."""
    quarter = dim // 4
    freq = 1.0 / (100.0 ** (torch.arange(quarter, dtype=torch.float64) / max(1, quarter - 1)))
    parts = []
    for coord in (rows, cols):
        angles = coord.to(torch.float64)[:, None] * freq
        parts += [angles.sin(), angles.cos()]
    out = torch.cat(parts, dim=1).float()
    return F.pad(out, (0, dim - out.shape[1]))


# Unscaled, the sin-cos table has norm sqrt(dim / 2) per token (8 at dim 128), four to eight
# times the norm of a freshly initialised patch or mel token: content would start buried
# under position (sound questions learnt slower, experiments/results/learning_rate/*binding*).
POSITION_SCALE = 0.25


def token_positions(cfg: ModelConfig) -> torch.Tensor:
    """Fixed positions of a snippet's tokens, in encoder order: tubes and patches at their
    pixel centres (in units of 4 px, so both grids share one frame of reference), then audio
    patches at (time, mel) patch coordinates, offset so they never coincide with video."""
    m, e = cfg.media, cfg.encoder
    with torch.device("cpu"):
        rows, cols = [], []
        for size in (e.tube_size, e.patch_size):
            r, c = torch.meshgrid(torch.arange(m.height // size), torch.arange(m.width // size), indexing="ij")
            rows.append(((r.flatten() + 0.5) * size / 4))
            cols.append(((c.flatten() + 0.5) * size / 4))
        t, mel = torch.meshgrid(torch.arange(cfg.audio_frames // e.audio_patch_frames),
                                torch.arange(e.n_mels // e.audio_patch_mels), indexing="ij")
        far = max(m.height, m.width) / 4 + 8.0
        rows.append(t.flatten() + far)
        cols.append(mel.flatten() + far)
        return POSITION_SCALE * sincos_2d(torch.cat(rows), torch.cat(cols), e.dim)


class SnippetEncoder(nn.Module):
    """One snippet -> n tokens: tube + patch tokens for video, mel patches for audio, one ViT."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        m, e = cfg.media, cfg.encoder
        self.cfg = cfg
        self.logmel = LogMel(cfg)
        self.tubes = nn.Conv3d(3, e.dim, (m.frames_per_snippet, e.tube_size, e.tube_size),
                               stride=(m.frames_per_snippet, e.tube_size, e.tube_size))
        self.patches = nn.Conv2d(9 if e.motion else 3, e.dim, e.patch_size, stride=e.patch_size)
        self.audio_patches = nn.Linear(e.audio_patch_frames * e.audio_patch_mels, e.dim)
        self.pos = nn.Parameter(torch.zeros(cfg.snippet_tokens, e.dim))
        fixed = token_positions(cfg) if e.positions == "sincos" else torch.zeros(cfg.snippet_tokens, e.dim)
        self.register_buffer("fixed_pos", fixed, persistent=False)
        self.modality = nn.Parameter(torch.zeros(2, e.dim))  # video, audio
        self.blocks = nn.ModuleList(Block(e.dim, e.heads, e.mlp_ratio) for _ in range(e.layers))
        self.norm = nn.LayerNorm(e.dim)

    def video_tokens(self, video: torch.Tensor) -> torch.Tensor:
        """uint8 [N, F, H, W, 3] -> [N, video_tokens, dim]."""
        x = video.permute(0, 4, 1, 2, 3).float() / 255.0 - 0.5  # [N, 3, F, H, W]
        tubes = self.tubes(x).flatten(2).transpose(1, 2)
        picture = x[:, :, -1]
        if self.cfg.encoder.motion:
            first, middle = x[:, :, 0], x[:, :, x.shape[2] // 2]
            picture = torch.cat((picture, middle - first, picture - middle), dim=1)
        patches = self.patches(picture).flatten(2).transpose(1, 2)
        return torch.cat((tubes, patches), dim=1)

    def audio_tokens(self, windows: torch.Tensor) -> torch.Tensor:
        """float32 [N, context + S] -> [N, audio_tokens, dim]."""
        e = self.cfg.encoder
        mel = self.logmel(windows)  # [N, frames, mels]
        n, frames, mels = mel.shape
        pf, pm = e.audio_patch_frames, e.audio_patch_mels
        patches = mel.view(n, frames // pf, pf, mels // pm, pm).permute(0, 1, 3, 2, 4).reshape(n, -1, pf * pm)
        return self.audio_patches(patches)

    def forward(self, video: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
        """Snippets (video uint8 [N, F, H, W, 3], audio windows [N, context + S]) -> [N, n, dim]."""
        v = self.video_tokens(video) + self.modality[0]
        a = self.audio_tokens(windows) + self.modality[1]
        x = torch.cat((v, a), dim=1) + self.pos + self.fixed_pos
        for block in self.blocks:
            x = block(x)
        return self.norm(x)
