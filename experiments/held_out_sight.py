"""Can the model see a shape whose colour and shape it never saw together?

    .venv/bin/python -m experiments.held_out_sight [CHECKPOINT] [--clips 40] [--train-clips 64] [--threads 1]

world:compositional holds colour-shape pairs no training clip shows (HELD_OUT_COLOR_SHAPE) and
shape-sound pairs no training shape made. For a checkpoint with a first-sight head: on every
snippet of `--clips` compositional clips, how often the head finds a named shape present where
the truth says it is, for held-out pairs and for trained ones, and how often it finds one that
is not there. Then, as probes of what the representation holds, small heads trained for 400
steps (Adam, frozen model) on `--train-clips` training clips to find the same classes from a
colour and a shape score per token, added (so that a held-out pair is scored from parts that
were trained): "bound" takes the best token for the pair, "unbound" the best token for each
part; on the latent tokens h (what the first-sight head reads) and on the encoder's video
tokens. A probe that finds held-out pairs where the head does not says that the head, not the
representation, limits them.
Writes experiments/results/understanding/held-out-sight.json (or `--out`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from experiments.asking import RESULTS, load, parser_for, write_report
from model import StreamerModel
from model.encoders import audio_windows
from training.world.clip import World, WorldConfig
from training.world.first_sight import ABSENT, FIRST_SIGHT_CLASSES, PRESENT, UNKNOWN, presence_targets
from training.world.phrases import snippet_truths
from training.world.vocab import COLORS, HELD_OUT_COLOR_SHAPE, SHAPES

SHAPE_CLASSES = len(COLORS) * len(SHAPES)  # FIRST_SIGHT_CLASSES begins with every colour-shape name
PROBE_STEPS, PROBE_BATCH, PROBE_LR = 400, 128, 3e-3
THRESHOLD = 0.5


def snippets(model: StreamerModel, split: str, clips: int) -> dict[str, torch.Tensor]:
    """Every snippet of `clips` clips: latent tokens [N, m, dl], encoder video tokens [N, v, de],
    the shape classes' truth [N, SHAPE_CLASSES] and which classes are held-out pairs [N, SHAPE_CLASSES]."""
    world = World(WorldConfig.preset(split, spec=model.cfg.media))
    held_out = torch.tensor([(c, s) in HELD_OUT_COLOR_SHAPE for c in COLORS for s in SHAPES])
    parts: dict[str, list[torch.Tensor]] = {"latent": [], "encoder": [], "truth": [], "held_out": []}
    for i in range(clips):
        clip = world.clip(i)
        video, audio = torch.as_tensor(clip.video_snippets()), torch.as_tensor(clip.audio_snippets())
        _, _, h = model._clip_latents(video[None], audio[None])
        windows = audio_windows(audio.reshape(1, -1), model.encoder.logmel.context, audio.shape[1])[0]
        parts["latent"].append(h[0])
        parts["encoder"].append(model.encoder(video, windows)[:, :model.cfg.video_tokens])  # video tokens come first
        truth = torch.as_tensor(presence_targets(snippet_truths(clip.timeline, clip.spec, clip.n_snippets)))
        parts["truth"].append(truth[:, :SHAPE_CLASSES])
        parts["held_out"].append(held_out.expand(clip.n_snippets, -1))
    return {name: torch.cat(values) for name, values in parts.items()}


def detection(present: torch.Tensor, data: dict[str, torch.Tensor]) -> dict[str, float]:
    """Shares of the known truths that `present` [N, SHAPE_CLASSES] (probabilities) gets right."""
    said, truth, held_out = present > THRESHOLD, data["truth"], data["held_out"]
    there, absent = truth == PRESENT, truth == ABSENT
    return {"held-out pairs found": round(float(said[there & held_out].float().mean()), 3),
            "held-out pairs present": int((there & held_out).sum()),
            "trained pairs found": round(float(said[there & ~held_out].float().mean()), 3),
            "trained pairs present": int((there & ~held_out).sum()),
            "found where absent": round(float(said[absent].float().mean()), 4)}


def probe_logits(scores: torch.Tensor, mode: str) -> torch.Tensor:
    """scores [N, tokens, colours + shapes] -> [N, SHAPE_CLASSES] logits, colour-major as
    FIRST_SIGHT_CLASSES: the colour's and the shape's scores added, on one token ("bound") or
    each at its best token ("unbound")."""
    colour, shape = scores[..., :len(COLORS)], scores[..., len(COLORS):]
    if mode == "unbound":
        return (colour.amax(dim=1)[:, :, None] + shape.amax(dim=1)[:, None, :]).flatten(1)
    return (colour[..., :, None] + shape[..., None, :]).amax(dim=1).flatten(1)


def probe(train: dict[str, torch.Tensor], test: dict[str, torch.Tensor], features: str, mode: str,
          hidden: bool) -> dict[str, float]:
    torch.manual_seed(0)
    dim, parts = train[features].shape[-1], len(COLORS) + len(SHAPES)
    head = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, parts)) if hidden else nn.Linear(dim, parts)
    optimizer = torch.optim.Adam(head.parameters(), lr=PROBE_LR)
    generator = torch.Generator().manual_seed(0)
    for _ in range(PROBE_STEPS):
        rows = torch.randint(0, len(train[features]), (PROBE_BATCH,), generator=generator)
        truth = train["truth"][rows]
        known = truth != UNKNOWN
        logits = probe_logits(head(train[features][rows]), mode)
        loss = F.binary_cross_entropy_with_logits(logits[known], (truth[known] == PRESENT).float())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return detection(torch.sigmoid(probe_logits(head(test[features]), mode)), test)


def main() -> None:
    parser = parser_for(__doc__, clips=40, default_out="held-out-sight.json")
    parser.add_argument("--train-clips", type=int, default=64, help="training clips the probes learn from")
    args = parser.parse_args()
    model_dir, model = load(args)
    if model.cfg.decoder.first_sight_classes != len(FIRST_SIGHT_CLASSES):
        parser.error(f"{model_dir} has no first-sight head for the world's classes; train one with --first-sight W")
    with torch.no_grad():
        test = snippets(model, "compositional", args.clips)
        train = snippets(model, "train", args.train_clips)
        head = torch.sigmoid(model.decoder.presence_logits(test["latent"]))[:, :SHAPE_CLASSES]
    report = {"checkpoint": str(model_dir), "fingerprint": model.fingerprint(), "clips": args.clips,
              "train clips": args.train_clips, "first-sight head": detection(head, test)}
    for features in ("latent", "encoder"):
        for mode in ("bound", "unbound"):
            for hidden in (False, True):
                name = f"probe on {features} tokens, {mode}, {'one hidden layer' if hidden else 'linear'}"
                report[name] = probe(train, test, features, mode, hidden)
    write_report(report, args.out or RESULTS / "held-out-sight.json")


if __name__ == "__main__":
    main()
