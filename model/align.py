"""Alignment head: a snippet's latent tokens and a short phrase mapped into one space.

Snippet side: the latent model's m tokens of a snippet (which see the W snippets before it),
mean-pooled, normalised and projected. Text side: the decoder's byte embeddings through a
few bidirectional blocks with rotary positions, mean-pooled over the phrase and projected.
Both ends are L2-normalised, so a score is a cosine similarity in [-1, 1] whatever the
phrase length, and a standing query's threshold means the same for every phrase.

The loss is a symmetric InfoNCE in which a snippet may match several phrases and a phrase
several snippets (a red square is on screen for many snippets): each direction's softmax
is pulled towards a uniform share over the true pairs, and pairs whose truth is unclear
(a shape half off the canvas) are left out of both softmaxes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from model.config import ModelConfig
from model.layers import MLP, Block, rope_angles

# Targets of the alignment loss: a (snippet, phrase) pair is true, false, or left out.
TRUE, FALSE, UNCLEAR = 1, 0, -1


class AlignmentHead(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        ac, dl, dt = cfg.align, cfg.latent.dim, cfg.decoder.dim
        self.cfg = ac
        self.heads = cfg.decoder.heads
        self.snippet_norm = nn.LayerNorm(dl)
        self.snippet_proj = MLP(dl, 2.0, out_dim=ac.dim)
        self.text_blocks = nn.ModuleList(Block(dt, cfg.decoder.heads, cfg.decoder.mlp_ratio)
                                         for _ in range(ac.text_layers))
        self.text_norm = nn.LayerNorm(dt)
        self.text_proj = nn.Linear(dt, ac.dim)
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / ac.temperature)))

    def embed_snippets(self, h: torch.Tensor) -> torch.Tensor:
        """h [..., m, dl] (one snippet's latent tokens) -> unit vectors [..., dim]."""
        return F.normalize(self.snippet_proj(self.snippet_norm(h.mean(-2))), dim=-1)

    def embed_text(self, embedded: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """embedded [N, L, dt] byte embeddings, mask bool [N, L] (real bytes) -> unit vectors [N, dim]."""
        rope = rope_angles(torch.arange(embedded.shape[1], device=embedded.device), embedded.shape[-1] // self.heads)
        attend = (mask[:, None, :] & mask[:, :, None]) | torch.eye(mask.shape[1], dtype=torch.bool,
                                                                     device=mask.device)[None]
        x = embedded
        for block in self.text_blocks:
            x = block(x, rope, attend)
        weights = mask.to(x.dtype)[..., None]
        pooled = (x * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return F.normalize(self.text_proj(self.text_norm(pooled)), dim=-1)

    @property
    def scale(self) -> torch.Tensor:
        """exp(log_scale) = 1 / temperature, capped at 100 as CLIP does so logits cannot blow up."""
        return self.log_scale.clamp(max=math.log(100.0)).exp()

    def loss(self, snippets: torch.Tensor, texts: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """snippets [S, dim], texts [P, dim] (unit vectors), targets int8 [S, P] of TRUE/FALSE/UNCLEAR.
        Mean of the two directions' multi-positive InfoNCE (0 when no pair is true)."""
        logits = self.scale * snippets @ texts.T
        known = targets != UNCLEAR
        positive = targets == TRUE
        losses = [_multi_positive_nce(logits, known, positive, dim=1),
                  _multi_positive_nce(logits, known, positive, dim=0)]
        losses = [l for l in losses if l is not None]
        return torch.stack(losses).mean() if losses else logits.sum() * 0.0


def _multi_positive_nce(logits, known, positive, dim: int) -> torch.Tensor | None:
    """Cross-entropy of the softmax along `dim` (over known pairs) against a uniform share of
    the positives, averaged over the rows that have one."""
    # a large finite fill, not -inf: a row with no known pair must not turn the gradient into NaN
    log_p = torch.log_softmax(logits.masked_fill(~known, -1e4), dim=dim)
    log_p = log_p.masked_fill(~known, 0.0)
    count = positive.sum(dim)
    rows = count > 0
    if not bool(rows.any()):
        return None
    per_row = -(log_p * positive).sum(dim) / count.clamp(min=1)
    return per_row[rows].mean()
