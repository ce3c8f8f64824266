"""Text decoder: causal self-attention over `<q> question <a> answer`, cross-attention in
every layer to the context [null ; TTM memory ; h of the last W chunks], MLP.

The context carries its own position cues: memory slots have learned embeddings, and each
h token gets an embedding of its chunk's age (0 = the snippet just seen) and of its index
in the chunk — bounded, so answers behave the same at t = 10 and t = 10,000. With
`decoder.age_code` > 0 a fixed sinusoidal code of the age is added too: the latent
transformer's positions are relative, so the age is the decoder's only clock, and learned
ages of old snippets drift together where few questions tell them apart. With
`decoder.age_slopes` every cross-attention head adds a learned multiple of a token's age to its
scores, so it can prefer the oldest (or newest) of the tokens it matches: a code in the keys
tells ages apart, a bias on the scores ranks them. With `decoder.length_scale` every head's
scores grow with the log of the number of context tokens (Scalable-Softmax), so that what a
head matches in a long stream stands out as much as in a short one. With
`decoder.first_sight_classes` a small head reads each snippet's latent tokens and predicts
which things (for the world: named shapes and sounds) are present there (trained by the
first-sight loss); a thing present in a snippet and in none before it in the window is marked
as first seen there, and the marks select learned vectors added to that snippet's context
tokens, so "which came first" compares two marked snippets. With `decoder.first_sight_tokens` the
context also holds one token per class, placed after the memory slots, that carries how surely
and how long ago the thing was first seen: "which came first" then matches two of those tokens
and ranks them by the age in their keys. Learning from answers alone it did not read them, so
the first-sight read loss (`loss.first_sight_read`) points the READ_HEAD of the last layer at the
token of the thing the answer names while the answer is written; with
`decoder.first_sight_age_slopes` every head adds a learned multiple of a token's first-sight age
to its score, so that of the two it matches it can prefer the older by a bias; with
`decoder.first_sight_query_slopes` each query adds its own multiple, so that "which came first"
can prefer the older while a question about the newest does not. With
`decoder.first_sight_pointer` each query also says which first-sight classes its question names
(a logit per class, trained by `loss.first_sight_pointer` on the classes named word for word),
and every head adds a learned gain times log σ(logit) to that class's token (less its value at the
starting logit, so that a fresh pointer changes nothing): a class
the question does not name drops out however many of its words the question shares. Plain
scores are sums over a key's parts, so a lure (an older shape of the same colour or shape as
one named) scored half a match and misled "which came first" on crowded clips
(experiments/order_lures.py); a sigmoid over a sum with a threshold is an AND. With
`decoder.first_sight_company` each first-sight token also carries what else the head found
present where its thing was first seen and one snippet later, so "what sound did the red circle
make?" reads the circle's token alone, however long ago it appeared. With
`decoder.first_sight_sounds` the sounds' presence comes from a hearing head on each snippet's
log-mel (model/hearing.py), which cannot learn which shapes usually make which sounds; with
`decoder.first_sight_onsets` it also counts the plays that start in each snippet, and each
sound's token carries the window's count, so "how many times did you hear the drum?" reads one
token. With `decoder.first_sight_lookup` every layer also adds, through a projection that starts
at zero, the values of the tokens of the classes the pointer finds named, so that a question
about the red circle reads the circle's token without its attention competing with hundreds of
snippet tokens.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from model.config import ModelConfig
from model.hearing import Hearing
from model.layers import MLP, CrossAttention, SelfAttention, per_query_bias, rope_angles


# Scores per snippet of age per unit of `age_slopes` weight.
AGE_SLOPE_GAIN = 4.0

# Context tokens at which `length_scale` gains of 1 leave the scores as they are: null, 16 memory
# slots and 16 snippets of 8 latent tokens (a test clip's length in `tiny`).
LENGTH_SCALE_REFERENCE_TOKENS = 145

# The head of the last decoder layer that the first-sight read loss supervises, and the one it
# supervises instead where a sound's token is read apart from the shapes' (`--read-sounds-apart`).
READ_HEAD = 0
SOUND_READ_HEAD = 1

# The first-sight pointer's logits start at this bias (a question names about one class in twenty),
# and its score bias subtracts log σ of it, so that a fresh pointer leaves the scores as they were.
POINTER_PRIOR = -3.0
LOG_PRIOR = -math.log1p(math.exp(-POINTER_PRIOR))


# The largest count of plays `first_sight_onsets` codes apart (the world answers zero to eight).
MAX_COUNT = 8


def count_code(counts: torch.Tensor) -> torch.Tensor:
    """counts [...] (fractions allowed) -> [..., MAX_COUNT + 1]: a one-hot of the count at whole
    numbers, shared between the two nearest in between, so "three" is one direction wherever
    the count's fraction lies (clamped to 0 … MAX_COUNT)."""
    bins = torch.arange(MAX_COUNT + 1, dtype=torch.float32, device=counts.device)
    return (1.0 - (counts.float().clamp(0, MAX_COUNT)[..., None] - bins).abs()).clamp_min(0.0)


def age_code(ages: torch.Tensor, dim: int, amplitude: float) -> torch.Tensor:
    """ages [...] in snippets (fractions allowed) -> [..., dim] sinusoids of the age (the
    transformer's position code, periods from 2π to 10,000·2π), times `amplitude`. Its slow
    dimensions rise steadily over a 64-snippet window, so "which is older" is one direction in
    every head's key space."""
    rates = torch.exp(-math.log(10_000.0) * torch.arange(0, dim, 2, dtype=torch.float32, device=ages.device) / dim)
    angles = ages.float()[..., None] * rates
    return amplitude * torch.stack((torch.sin(angles), torch.cos(angles)), dim=-1).flatten(-2)


class DecoderBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.cross = CrossAttention(dim, heads)
        self.norm3 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, mlp_ratio)

    def forward(self, x, rope, self_mask, cross_kv, ctx_mask, age_bias=None, query_scale=None, cache=None,
                read: bool = False, query_slopes=None, pointer=None):
        """`self_mask` [B, Lnew, Lall] or None for plain causal; `age_bias` [heads, Nc],
        [B, heads, Nc] or None;
        `query_scale` [B, heads] or None; `cache` (k, v) of earlier tokens or None;
        `query_slopes` (weight [heads, dim], ages [B, Nc]) or None: each query adds its projection
        on the weight times the ages to its own scores (`first_sight_query_slopes`);
        `pointer` (weight [classes, dim], bias [classes], gains [heads], first, lookup) or None: each
        query's logits that its question names each class, whose log σ (less that of POINTER_PRIOR) times a
        head's gain is added to the class's token at context position first + class (`first_sight_pointer`);
        `lookup` [dim, dim] or None: the projection of what the named classes' tokens hold
        (`first_sight_lookup`, `_looked_up`), added after the cross-attention.
        Returns (x, (k, v), weights, names): with `read`, every head's cross-attention weights
        [B, heads, Lnew, Nc], else None; with `pointer`, the queries' logits [B, Lnew, classes], else None."""
        q, k, v = self.attn.project(self.norm1(x), rope)
        if cache is not None:
            k = torch.cat((cache[0], k), dim=2)
            v = torch.cat((cache[1], v), dim=2)
        if self_mask is None:
            attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            attended = F.scaled_dot_product_attention(q, k, v, attn_mask=self_mask[:, None])
        x = x + self.attn.merge(attended)
        queries = self.norm2(x)
        if query_slopes is not None:
            weight, ages = query_slopes
            per_query = (queries @ weight.T).transpose(1, 2)[..., None] * ages[:, None, None, :]
            age_bias = per_query if age_bias is None else per_query + age_bias[:, :, None]
        names = None
        if pointer is not None:
            names, on_tokens = _pointer_bias(queries, pointer, ctx_mask.shape[1])
            age_bias = on_tokens if age_bias is None else on_tokens + per_query_bias(age_bias)
        weights = None
        if read:
            weights = self.cross.weights(queries, cross_kv[0], ctx_mask, age_bias, query_scale)
        x = x + self.cross(queries, *cross_kv, ctx_mask, age_bias, query_scale)
        if pointer is not None and pointer[4] is not None:
            x = x + _looked_up(names, cross_kv[1], ctx_mask, pointer[3], pointer[4])
        return x + self.mlp(self.norm3(x)), (k, v), weights, names


def _pointer_bias(queries: torch.Tensor, pointer: tuple, context_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """queries [B, L, d] and a block's `pointer` -> (logits [B, L, classes], score bias
    [B, heads, L, Nc] that is gain · (log σ(logit) − log σ(POINTER_PRIOR)) on each class's token, 0 elsewhere)."""
    weight, bias, gains, first, _ = pointer
    logits = queries @ weight.T + bias
    on_class = gains[None, :, None, None] * (F.logsigmoid(logits.float()) - LOG_PRIOR)[:, None]
    return logits, F.pad(on_class, (first, context_tokens - first - weight.shape[0]))


def _looked_up(names: torch.Tensor, values: torch.Tensor, ctx_mask: torch.Tensor, first: int,
               lookup: torch.Tensor) -> torch.Tensor:
    """names [B, L, classes] (the pointer's logits), values [B, heads, Nc, head_dim] (a block's
    cross-attention values), ctx_mask [B, Nc] -> [B, L, dim]: the readable first-sight tokens'
    values (context positions first .. first + classes) weighted by σ(logit) of each class, heads
    side by side, times `lookup`. The weights are detached: the pointer loss alone says which
    classes a question names."""
    classes = names.shape[-1]
    tokens = values[:, :, first:first + classes]  # [B, heads, classes, head_dim]
    tokens = tokens.transpose(1, 2).reshape(tokens.shape[0], classes, -1)  # [B, classes, dim]
    weights = torch.sigmoid(names.detach().float()).to(tokens.dtype) * ctx_mask[:, None, first:first + classes]
    return weights @ tokens @ lookup



class TextDecoder(nn.Module):
    def __init__(self, cfg: ModelConfig, vocab_size: int, memory_tokens: int) -> None:
        super().__init__()
        dc = cfg.decoder
        self.cfg = cfg
        d = dc.dim
        self.embed = nn.Embedding(vocab_size, d)
        self.null = nn.Parameter(torch.zeros(1, d))
        self.memory_tokens = memory_tokens
        if memory_tokens:
            self.memory_proj = nn.Linear(cfg.combiner.dim, d)
            self.memory_pos = nn.Parameter(torch.zeros(memory_tokens, d))
        self.h_proj = nn.Linear(cfg.latent.dim, d)
        self.age_emb = nn.Parameter(torch.zeros(cfg.latent.window, 1, d))
        self.register_buffer("age_code", age_code(torch.arange(cfg.latent.window), d, dc.age_code)[:, None],
                             persistent=False)
        self.h_pos = nn.Parameter(torch.zeros(1, cfg.combiner.out_tokens, d))
        if dc.age_slopes:
            self.age_slopes = nn.Parameter(torch.zeros(dc.layers, dc.heads))
            # age in snippets of every context token: null, memory slots and first-sight tokens count as 0
            h_ages = torch.arange(cfg.latent.window - 1, -1, -1.0).repeat_interleave(cfg.combiner.out_tokens)
            summary = dc.first_sight_classes if dc.first_sight_tokens else 0
            self.register_buffer("context_ages", torch.cat((torch.zeros(1 + memory_tokens + summary), h_ages)),
                                 persistent=False)
        if dc.length_scale:
            self.length_scales = nn.Parameter(torch.ones(dc.layers, dc.heads))
        if dc.first_sight_classes:
            self.first_sight_head = nn.Linear(cfg.latent.dim, dc.first_sight_classes)
            self.first_sight_cues = nn.Parameter(torch.zeros(dc.first_sight_classes, d))
            # the age of each snippet as a share of the window, oldest first
            ages = torch.arange(cfg.latent.window - 1, -1, -1.0) / max(1, cfg.latent.window - 1)
            self.register_buffer("window_ages", ages, persistent=False)
        if dc.first_sight_tokens:
            self.first_sight_token_class = nn.Embedding(dc.first_sight_classes, d)
            self.first_sight_token_features = nn.Linear(2, d)
        if dc.first_sight_company:
            # a plain matrix, not a Linear, so that the model's initialisation leaves it at zero (no change)
            self.first_sight_company = nn.Parameter(torch.zeros(2 * dc.first_sight_classes, d))
        if dc.first_sight_sounds:
            self.first_sight_hearing = Hearing(cfg)
        if dc.first_sight_onsets:
            # a plain matrix, as the company's: zero, so that the counts change nothing at first
            self.first_sight_onsets = nn.Parameter(torch.zeros(MAX_COUNT + 1, d))
        if dc.first_sight_age_slopes:
            self.first_sight_age_slopes = nn.Parameter(torch.zeros(dc.layers, dc.heads))
        if dc.first_sight_query_slopes:
            self.first_sight_query_slopes = nn.Parameter(torch.zeros(dc.layers, dc.heads, d))
        if dc.first_sight_pointer:
            # logits at the prior and gains of 1: no change until the pointer learns which classes are named
            self.first_sight_pointer = nn.Parameter(torch.zeros(dc.layers, dc.first_sight_classes, d))
            self.first_sight_pointer_bias = nn.Parameter(torch.full((dc.layers, dc.first_sight_classes),
                                                                    POINTER_PRIOR))
            self.first_sight_pointer_gains = nn.Parameter(torch.ones(dc.layers, dc.heads))
        if dc.first_sight_lookup:
            # a plain tensor at zero, as the company's projection, so that a fresh lookup changes nothing
            self.first_sight_lookup = nn.Parameter(torch.zeros(dc.layers, d, d))
        self.context_norm = nn.LayerNorm(d)
        self.blocks = nn.ModuleList(DecoderBlock(d, dc.heads, dc.mlp_ratio) for _ in range(dc.layers))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab_size, bias=False)

    def context(self, memory: torch.Tensor | None, h: torch.Tensor, h_valid: torch.Tensor,
                heard: torch.Tensor | None = None):
        """memory [B, r, dc] or None; h [B, W, m, dl] oldest chunk first; h_valid [B, W]; heard
        the hearing head's sounds (and plays) of those snippets, as `presence` takes them.
        Returns context [B, Nc, d] and its mask [B, Nc]."""
        b, w, m, _ = h.shape
        parts = [self.null.expand(b, -1, -1)]
        masks = [torch.ones(b, 1, dtype=torch.bool, device=h.device)]
        if self.memory_tokens:
            parts.append(self.memory_proj(memory) + self.memory_pos)
            masks.append(torch.ones(b, self.memory_tokens, dtype=torch.bool, device=h.device))
        dc = self.cfg.decoder
        present = self.presence(h, h_valid, heard) if dc.first_sight_classes else None
        marks = self.first_sight_marks(present) if dc.first_sight_classes else None
        if dc.first_sight_tokens:
            plays = None
            if dc.first_sight_onsets:  # each sound's plays that started in the window's valid snippets
                plays = (heard[..., dc.first_sight_sounds:] * h_valid[..., None]).sum(dim=1)
            parts.append(self.first_sight_summary(marks, present, plays))
            masks.append(torch.ones(b, dc.first_sight_classes, dtype=torch.bool, device=h.device))
        ages = (self.age_emb + self.age_code).flip(0)  # oldest first: age W-1 ... 0
        tokens = self.h_proj(h) + ages + self.h_pos
        if marks is not None:
            tokens = tokens + (marks @ self.first_sight_cues)[:, :, None]
        parts.append(tokens.reshape(b, w * m, -1))
        masks.append(h_valid.repeat_interleave(m, dim=1))
        return self.context_norm(torch.cat(parts, dim=1)), torch.cat(masks, dim=1)

    def presence_logits(self, h: torch.Tensor) -> torch.Tensor:
        """h [..., m, dl] (one snippet's latent tokens) -> [..., classes] logits that each class
        is present in that snippet."""
        return self.first_sight_head(h.mean(-2))

    def presence(self, h: torch.Tensor, h_valid: torch.Tensor, heard: torch.Tensor | None = None) -> torch.Tensor:
        """h [B, W, m, dl] oldest first, h_valid [B, W] -> [B, W, classes]: how surely each class
        is present in each valid snippet (0 in the others). With `first_sight_sounds`, the sounds'
        columns are the first of `heard` [B, W, sounds] ([B, W, 2 · sounds] with onsets: then the
        plays that start there), the hearing head's for those snippets (StreamerModel.heard),
        instead of the latent's."""
        present = torch.sigmoid(self.presence_logits(h))
        dc = self.cfg.decoder
        sounds = dc.first_sight_sounds
        if sounds:
            width = sounds * (2 if dc.first_sight_onsets else 1)
            if heard is None or heard.shape != (*present.shape[:-1], width):
                got = "none" if heard is None else tuple(heard.shape)
                raise ValueError(f"this decoder hears its {sounds} sounds apart from the latent: pass heard "
                                 f"[{', '.join(map(str, present.shape[:-1]))}, {width}] from StreamerModel.heard "
                                 f"for the same snippets as h, got {got}")
            present = torch.cat((present[..., :-sounds], heard[..., :sounds].to(present.dtype)), dim=-1)
        return present * h_valid[..., None]

    def first_sight(self, h: torch.Tensor, h_valid: torch.Tensor, heard: torch.Tensor | None = None) -> torch.Tensor:
        """h [B, W, m, dl] oldest first, h_valid [B, W] (heard as for `presence`) -> [B, W, classes]:
        `first_sight_marks` of the snippets' `presence`."""
        return self.first_sight_marks(self.presence(h, h_valid, heard))

    @staticmethod
    def first_sight_marks(present: torch.Tensor) -> torch.Tensor:
        """present [B, W, classes] (`presence`) -> [B, W, classes]: how surely each class is
        present in a snippet and in no valid snippet before it, p(k) · (1 − max_{j<k} p(j)).
        The running maximum, not a product of (1 − p), so that small doubts over many snippets
        do not add up to a sighting."""
        before = torch.cummax(present, dim=1).values
        before = torch.cat((torch.zeros_like(before[:, :1]), before[:, :-1]), dim=1)
        return present * (1.0 - before)

    def first_sight_ages(self, marks: torch.Tensor) -> torch.Tensor:
        """marks [B, W, classes] -> [B, classes]: the mark-weighted age of each class's first
        sight as a share of the window (0 = the newest snippet). The weights are floored so that
        a class never seen reads as age 0."""
        return (marks * self.window_ages[:, None]).sum(dim=1) / marks.sum(dim=1).clamp_min(1e-2)

    def context_parts(self, length: int, device: torch.device | None = None) -> dict[str, torch.Tensor]:
        """Where each part of a context of `length` tokens lies, as bool masks [length]: the
        memory slots, the first-sight tokens and the snippets' latent tokens (the null token
        comes first and is in none)."""
        first = 1 + self.memory_tokens
        tokens_end = first + (self.cfg.decoder.first_sight_classes if self.cfg.decoder.first_sight_tokens else 0)
        position = torch.arange(length, device=device)
        return {"memory": (position >= 1) & (position < first),
                "tokens": (position >= first) & (position < tokens_end),
                "snippets": position >= tokens_end}

    def first_sight_summary(self, marks: torch.Tensor, present: torch.Tensor | None = None,
                            plays: torch.Tensor | None = None) -> torch.Tensor:
        """marks [B, W, classes] (TextDecoder.first_sight) -> [B, classes, d]: per class, its
        embedding plus a projection of how surely it was first seen in the window (the largest
        mark) and how long ago it was (`first_sight_ages`), with `first_sight_age_code` also the
        sinusoidal code of that age in snippets, and with `first_sight_company` a projection of
        the `company` each class's first sight had, from `present` [B, W, classes] (`presence`;
        detached: the presence loss alone trains the head that finds it) or none without it
        (first-sight drills have no snippets), and with `first_sight_onsets` a projection of
        `count_code` of the sounds' plays [B, sounds] in the window on their tokens (detached too)."""
        features = torch.stack((marks.amax(dim=1), self.first_sight_ages(marks)), dim=-1)
        tokens = self.first_sight_token_class.weight + self.first_sight_token_features(features)
        dc = self.cfg.decoder
        if dc.first_sight_company and present is not None:
            tokens = tokens + self.company(marks.detach(), present.detach()) @ self.first_sight_company
        if dc.first_sight_onsets and plays is not None:
            counted = count_code(plays.detach()) @ self.first_sight_onsets  # [B, sounds, d]
            tokens = tokens + F.pad(counted, (0, 0, dc.first_sight_classes - dc.first_sight_sounds, 0))
        if dc.first_sight_age_code:
            tokens = tokens + age_code(self.snippets_ago(marks), dc.dim, dc.first_sight_age_code)
        return tokens

    @staticmethod
    def company(marks: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """marks, present [B, W, classes] -> [B, classes, 2 · classes]: per class, how surely each
        class was present where it was first seen, then one snippet later (mark-weighted means;
        about 0 for a class never seen)."""
        later = F.pad(present[:, 1:], (0, 0, 0, 1))
        around = torch.cat((present, later), dim=-1)  # [B, W, 2 · classes]
        return marks.transpose(1, 2) @ around / marks.sum(dim=1).clamp_min(1e-2)[..., None]

    def snippets_ago(self, marks: torch.Tensor) -> torch.Tensor:
        """marks [B, W, classes] -> [B, classes]: `first_sight_ages` in snippets."""
        return self.first_sight_ages(marks) * max(1, self.cfg.latent.window - 1)

    def cross_kv(self, context: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [block.cross.context_kv(context) for block in self.blocks]

    def slopes_per_snippet(self) -> torch.Tensor:
        """[layers, heads] scores added per snippet of age (positive: older preferred). The weights
        are scaled by AGE_SLOPE_GAIN so that a slope moves at a useful rate under a fine-tuning
        learning rate (AdamW moves a weight about lr per step)."""
        return AGE_SLOPE_GAIN * self.age_slopes

    def age_bias(self) -> torch.Tensor | None:
        """[layers, heads, Nc] scores added to the cross-attention, or None without age slopes."""
        if not self.cfg.decoder.age_slopes:
            return None
        return self.slopes_per_snippet()[:, :, None] * self.context_ages

    def token_ages(self, h: torch.Tensor, h_valid: torch.Tensor,
                   heard: torch.Tensor | None = None) -> torch.Tensor | None:
        """h [B, W, m, dl], h_valid [B, W], heard (as for `context`) -> [B, classes]: how many snippets
        ago each first-sight token's thing was first seen, for `first_sight_age_slopes` (None
        without them). Detached: the presence loss alone trains the head that finds them."""
        if not self.cfg.decoder.first_sight_age_slopes:
            return None
        return self.snippets_ago(self.first_sight(h, h_valid, heard).detach())

    def _score_bias(self, ctx_mask: torch.Tensor, token_ages: torch.Tensor | None,
                    tokens_only: bool) -> torch.Tensor | None:
        """The cross-attention score bias of every layer: [layers, heads, Nc] from the age slopes,
        or [layers, B, heads, Nc] with the first-sight tokens' age slopes; None with neither.
        `tokens_only`: the context is the null token and the first-sight tokens, whose ages the
        age slopes count as 0."""
        bias = None if tokens_only else self.age_bias()
        if bias is not None and bias.shape[-1] != ctx_mask.shape[1]:
            raise ValueError(f"a decoder with age slopes reads the {bias.shape[-1]} context tokens that "
                             f"TextDecoder.context makes for its window, got {ctx_mask.shape[1]}")
        if not self.cfg.decoder.first_sight_age_slopes:
            return bias
        ages = self._context_token_ages(ctx_mask, token_ages, tokens_only)
        tokens = AGE_SLOPE_GAIN * self.first_sight_age_slopes[:, None, :, None] * ages[None, :, None, :]
        return tokens if bias is None else tokens + bias[:, None]  # [layers, B, heads, Nc]

    def _context_token_ages(self, ctx_mask: torch.Tensor, token_ages: torch.Tensor | None,
                            tokens_only: bool) -> torch.Tensor:
        """[B, Nc]: each first-sight token's age in snippets at its place in the context, 0 elsewhere."""
        if token_ages is None:
            raise ValueError("a decoder with first-sight age slopes needs the tokens' ages: pass "
                             "token_ages=TextDecoder.token_ages(h, h_valid)")
        first = 1 if tokens_only else 1 + self.memory_tokens  # the tokens follow the null token and the memory
        return F.pad(token_ages, (first, ctx_mask.shape[1] - first - token_ages.shape[-1]))

    def _query_slopes(self, ctx_mask: torch.Tensor, token_ages: torch.Tensor | None,
                      tokens_only: bool) -> list | None:
        """Per layer, what DecoderBlock needs for `first_sight_query_slopes`, or None without them.
        The ages carry AGE_SLOPE_GAIN / sqrt(dim), so a slope moves about as fast as a head's fixed
        one under the first-sight parts' learning rate."""
        if not self.cfg.decoder.first_sight_query_slopes:
            return None
        gain = AGE_SLOPE_GAIN / math.sqrt(self.cfg.decoder.dim)
        ages = gain * self._context_token_ages(ctx_mask, token_ages, tokens_only)
        return [(weight, ages) for weight in self.first_sight_query_slopes]

    def _pointers(self, tokens_only: bool) -> list | None:
        """Per layer, what DecoderBlock needs for `first_sight_pointer`, or None without it."""
        if not self.cfg.decoder.first_sight_pointer:
            return None
        first = 1 if tokens_only else 1 + self.memory_tokens  # the tokens follow the null token and the memory
        lookups = self.first_sight_lookup if self.cfg.decoder.first_sight_lookup else [None] * len(self.blocks)
        return [(w, b, g, first, lookup) for w, b, g, lookup in zip(
            self.first_sight_pointer, self.first_sight_pointer_bias, self.first_sight_pointer_gains, lookups)]

    def query_scales(self, ctx_mask: torch.Tensor) -> torch.Tensor | None:
        """[layers, B, heads] gains on the cross-attention queries, growing with the log of each
        row's valid context tokens; None without `length_scale`."""
        if not self.cfg.decoder.length_scale:
            return None
        log_tokens = torch.log(ctx_mask.sum(dim=1).float()) / math.log(LENGTH_SCALE_REFERENCE_TOKENS)
        return self.length_scales[:, None, :] * log_tokens[None, :, None]

    def forward(self, ids, positions, self_mask, cross_kv, ctx_mask, caches=None, read: bool = False,
                token_ages=None, tokens_only: bool = False, names: bool = False, read_heads: bool = False):
        """ids [B, L] at `positions` [B, L]; `token_ages` [B, classes] from `token_ages` (needed
        with first-sight age slopes); `tokens_only`: the context is [null ; first-sight tokens]
        alone, which reads as the whole context with everything else masked (first-sight drills).
        Returns logits [B, L, V] and the per-layer KV caches, with `read` also the READ_HEAD's
        cross-attention weights [B, L, Nc] in the last layer (what the first-sight read loss
        supervises; with `read_heads`, every head's [B, heads, L, Nc]), and with `names` (needs
        `first_sight_pointer`) last every layer's pointer logits [layers, B, L, classes] (what the
        first-sight pointer loss supervises)."""
        dc = self.cfg.decoder
        x = self.embed(ids)
        rope = rope_angles(positions, dc.dim // dc.heads)
        age_bias = self._score_bias(ctx_mask, token_ages, tokens_only)
        query_scales = self.query_scales(ctx_mask)
        query_slopes = self._query_slopes(ctx_mask, token_ages, tokens_only)
        pointers = self._pointers(tokens_only)
        if names and pointers is None:
            raise ValueError("names asks for first-sight pointer logits this decoder lacks: set "
                             "decoder.first_sight_pointer")
        new_caches, layer_names = [], []
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            x, cache, weights, named = block(x, rope, self_mask, cross_kv[i], ctx_mask,
                                             None if age_bias is None else age_bias[i],
                                             None if query_scales is None else query_scales[i],
                                             None if caches is None else caches[i],
                                             read and i == last,
                                             None if query_slopes is None else query_slopes[i],
                                             None if pointers is None else pointers[i])
            new_caches.append(cache)
            layer_names.append(named)
        out = (self.head(self.norm(x)), new_caches)
        if read:
            out += (weights if read_heads else weights[:, READ_HEAD],)
        if names:
            out += (torch.stack(layer_names),)
        return out
