"""Does the TTM memory hold which shape made which sound? A probe trained on the memory tells.

    .venv/bin/python -m experiments.memory_probe [CHECKPOINT] [--clips 400] [--threads 2]

The model streams world:long clips. For every sound of a clip that a shape made, the probe is
given the memory (the combiner's r tokens) some snippets after the sound's first play ended,
and the sound's name, and must name the shape that made it among the shapes the clip showed so
far. It reads the memory as the decoder does, with learned queries per sound attending over
the memory tokens, then an MLP over the shape names. One probe is trained for each range of
snippets between the play and the memory, on 3/4 of the clips, and scored on the rest. A positive
control probes, the same way, the latent tokens h of the snippet in which the play ended (what
the decoder reads directly while that snippet is inside its window). If the probe names the
maker from h but not from the memory taken right after the play, the memory never wrote the
binding; if it does from the fresh memory but not later, the memory lets it fade.
Writes experiments/results/understanding/memory-probe-long.json (or `--out`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from experiments.asking import RESULTS, load, parser_for, write_report
from training.data import world_sample
from training.world.clip import World, WorldConfig
from training.world.vocab import COLORS, SHAPES, SOUNDS

NAMES = [f"{c} {s}" for c in COLORS for s in SHAPES]
DELAY_BINS = ((0, 1), (2, 7), (8, 15), (16, 31), (32, 10**9))  # snippets after the play ended


def delay_bin(delay: int) -> str:
    low, high = next((lo, hi) for lo, hi in DELAY_BINS if lo <= delay <= hi)
    return f"{low}+ snippets" if high >= 10**9 else f"{low}-{high} snippets"


class AttentionProbe(nn.Module):
    """Reads tokens as the decoder reads the memory: a learned embedding per token position (the
    memory's slots are told apart by position, not content), a learned query per sound in each of
    `heads` heads, and an MLP over what the heads read."""

    def __init__(self, dim: int, tokens: int, heads: int = 4, hidden: int = 256) -> None:
        super().__init__()
        self.heads = heads
        self.norm = nn.LayerNorm(dim)
        self.position = nn.Parameter(torch.zeros(tokens, dim))
        self.query = nn.Embedding(len(SOUNDS), heads * dim)
        self.key = nn.Linear(dim, heads * dim)
        self.out = nn.Sequential(nn.Linear(2 * heads * dim, hidden), nn.GELU(), nn.Linear(hidden, len(NAMES)))

    def forward(self, tokens: torch.Tensor, sound: torch.Tensor) -> torch.Tensor:
        x = self.norm(tokens) + self.position
        b, n, d = x.shape
        q = self.query(sound)
        scores = torch.einsum("bnhd,bhd->bhn", self.key(x).view(b, n, self.heads, d), q.view(b, self.heads, d))
        read = torch.einsum("bhn,bnd->bhd", torch.softmax(scores, dim=-1), x).reshape(b, -1)
        return self.out(torch.cat((read, q), dim=-1))


def collect(model, clips: int, batch: int = 16):
    """Per clip: memories [T, r, d], latents h [T, m, d], and its bound sounds as
    (sound index, maker name index, snippet where the play ended, names shown so far by snippet)."""
    world = World(WorldConfig.preset("long", spec=model.cfg.media, questions_per_clip=1))
    seconds = model.cfg.media.snippet_seconds
    out = []
    for first in range(0, clips, batch):
        rendered = [world.clip(i) for i in range(first, min(clips, first + batch))]
        samples = [world_sample(c) for c in rendered]
        longest = max(s["video"].shape[0] for s in samples)
        video = torch.zeros((len(samples), longest, *samples[0]["video"].shape[1:]), dtype=torch.uint8)
        audio = torch.zeros((len(samples), longest, samples[0]["audio"].shape[1]))
        for i, s in enumerate(samples):  # streams are independent: padding after a clip's end is never read
            video[i, : s["video"].shape[0]] = torch.as_tensor(s["video"])
            audio[i, : s["audio"].shape[0]] = torch.as_tensor(s["audio"])
        state = model.init_state(len(samples))
        memories, latents = [], []
        for t in range(longest):
            state = model.step(state, video[:, t], audio[:, t])
            memories.append(state["memory"])
            latents.append(state["h_window"][:, t % model.cfg.latent.window])
        memories, latents = torch.stack(memories, 1), torch.stack(latents, 1)
        for i, (clip, sample) in enumerate(zip(rendered, samples)):
            tl, length = clip.timeline, sample["video"].shape[0]
            bound, seen = [], set()
            shown = [{NAMES.index(s.name) for s in tl.shapes if s.t_start < (t + 1) * seconds} for t in range(length)]
            for play in tl.sounds:
                if play.owner is None or play.sound in seen:
                    continue
                seen.add(play.sound)
                end = min(length - 1, int((play.t_end - 1e-6) // seconds))
                maker = tl.shapes[play.owner].name
                bound.append((SOUNDS.index(play.sound), NAMES.index(maker), end, shown))
            out.append((memories[i, :length].float(), latents[i, :length].float(), bound))
    return out


def examples(clips, source: str):
    """(tokens, sound, maker, candidates mask, delay) for every bound sound at every later snippet
    (`source` memory), or at the play's own snippet (`source` h)."""
    rows = []
    for memories, latents, bound in clips:
        for sound, maker, end, shown in bound:
            delays = range(memories.shape[0] - end) if source == "memory" else (0,)
            for d in delays:
                tokens = memories[end + d] if source == "memory" else latents[end]
                mask = torch.zeros(len(NAMES), dtype=torch.bool)
                mask[list(shown[end + d])] = True
                rows.append((tokens, sound, maker, mask, d))
    tokens = torch.stack([r[0] for r in rows])
    tensors = [torch.tensor([r[i] for r in rows]) for i in (1, 2)]
    return tokens, *tensors, torch.stack([r[3] for r in rows]), [r[4] for r in rows]


def select(rows, bin_name: str):
    """The examples whose delay falls in one bin."""
    tokens, sound, maker, mask, delays = rows
    in_bin = [delay_bin(d) == bin_name for d in delays]
    keep = torch.tensor(in_bin)
    return tokens[keep], sound[keep], maker[keep], mask[keep], [d for d, kept in zip(delays, in_bin) if kept]


def train_and_score(train, test, dim: int, steps: int = 600, seed: int = 0) -> dict:
    """Accuracy and chance (one over the shapes shown so far) of a probe trained on `train`."""
    torch.manual_seed(seed)
    probe = AttentionProbe(dim, train[0].shape[1])
    opt = torch.optim.AdamW(probe.parameters(), lr=3e-3, weight_decay=0.01)
    tokens, sound, maker, mask, _ = train
    for _ in range(steps):
        idx = torch.randint(0, len(sound), (512,))
        logits = probe(tokens[idx], sound[idx]).masked_fill(~mask[idx], -1e9)
        loss = F.cross_entropy(logits, maker[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    tokens, sound, maker, mask, delays = test
    with torch.no_grad():
        got = probe(tokens, sound).masked_fill(~mask, -1e9).argmax(-1)
    right = sum(int(g == m) for g, m in zip(got.tolist(), maker.tolist()))
    chance = sum(1 / c for c in mask.sum(-1).tolist())
    return {"right": right, "total": len(delays), "accuracy": round(right / len(delays), 3),
            "chance": round(chance / len(delays), 3), "probe training examples": len(train[4])}


def main() -> None:
    parser = parser_for(__doc__, clips=400, default_out="memory-probe-long.json")
    args = parser.parse_args()
    model_dir, model = load(args)
    if "memory" not in model.state_spec(1):
        raise SystemExit(f"{model_dir} has no TTM memory to probe (combiner.kind={model.cfg.combiner.kind})")
    clips = collect(model, args.clips)
    split = len(clips) * 3 // 4
    report = {"checkpoint": str(model_dir), "fingerprint": model.fingerprint(), "split": "long",
              "clips": {"probe training": split, "probe test": len(clips) - split},
              "latent_window_snippets": model.cfg.latent.window}
    train, test = examples(clips[:split], "memory"), examples(clips[split:], "memory")
    report["maker named from the memory, by snippets after the play"] = {
        name: train_and_score(select(train, name), select(test, name), model.cfg.combiner.dim)
        for name in (delay_bin(low) for low, _ in DELAY_BINS)}
    report["maker named from h of the play's snippet"] = train_and_score(
        examples(clips[:split], "h"), examples(clips[split:], "h"), model.cfg.latent.dim)
    write_report(report, args.out or RESULTS / "memory-probe-long.json")


if __name__ == "__main__":
    main()
