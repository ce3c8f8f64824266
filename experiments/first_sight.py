"""Does the decoder use the first-sight marks, and does the head find first appearances?

    .venv/bin/python -m experiments.first_sight [CHECKPOINT] [--clips 100] [--threads 2]

For a checkpoint trained with `--first-sight` (decoder.first_sight_classes > 0):
- the head: on world:test and world:long clips, the precision and recall at probability 0.5 of
  its presence predictions (truth: training.world.first_sight), and of the first-sight marks
  the decoder makes from them, against the snippet where each named shape or sound is first
  present;
- the marks' worth: `order`, `sound_of` and `who_made` answered with the cues as trained, with
  every cue set to zero, and with the cues 3 and 10 times as large. If zeroing them costs a
  kind, the decoder reads the marks for it (a shape's sound first plays within 0.3 s of its
  appearance, so the marks may bind sounds to shapes as well as order them); if neither zero nor
  larger cues move it, the decoder does not read them for that kind;
- with first-sight tokens (decoder.first_sight_tokens), the same kinds once more with the
  tokens' age feature zeroed: every class then reads as first seen just now, and what `order`
  loses is what it reads from the tokens' ages.
Writes experiments/results/understanding/first-sight.json (or `--out`).
"""

from __future__ import annotations

import copy

import torch

from experiments.asking import RESULTS, accuracies, load, parser_for, write_report
from model import StreamerModel
from training.data import world_sample
from training.world.clip import World, WorldConfig
from training.world.first_sight import PRESENT, UNKNOWN, presence_targets

KINDS = ("order", "sound_of", "who_made")
SPLITS = ("test", "long")
THRESHOLD = 0.5
CUE_FACTORS = (0.0, 3.0, 10.0)


def with_cues_times(model: StreamerModel, factor: float) -> StreamerModel:
    """A copy of `model` with every first-sight cue multiplied by `factor` (0: the context as if
    the head were not there)."""
    scaled = copy.deepcopy(model)
    with torch.no_grad():
        scaled.decoder.first_sight_cues.mul_(factor)
    return scaled.eval()


def without_token_ages(model: StreamerModel) -> StreamerModel:
    """A copy of `model` whose first-sight tokens carry no age (the age column of their feature
    projection set to zero)."""
    blind = copy.deepcopy(model)
    with torch.no_grad():
        blind.decoder.first_sight_token_features.weight[:, 1] = 0.0
    return blind.eval()


@torch.no_grad()
def head_quality(model: StreamerModel, split: str, clips: int) -> dict[str, dict[str, float]]:
    """Precision and recall at THRESHOLD of the presence predictions and of the first-sight
    marks on `clips` clips (unknown truths left out)."""
    world = World(WorldConfig.preset(split, spec=model.cfg.media))
    counts = {"presence": [0, 0, 0], "first sight": [0, 0, 0]}  # hits, said, true
    for i in range(clips):
        sample = world_sample(world.clip(i))
        video = torch.as_tensor(sample["video"])[None]
        audio = torch.as_tensor(sample["audio"])[None]
        h = model._clip_latents(video, audio)[2]  # [1, T, m, dl]
        truth = torch.as_tensor(presence_targets(sample["phrases"].truths))[None]
        present = truth == PRESENT
        first = present & (torch.cumsum(present.int(), dim=1) == 1)
        known = truth != UNKNOWN
        presence = model.decoder.presence(h, torch.ones(h.shape[:2], dtype=torch.bool), model.clip_heard(audio))
        said = {"presence": presence > THRESHOLD,
                "first sight": model.decoder.first_sight_marks(presence) > THRESHOLD}
        for name, target in (("presence", present), ("first sight", first)):
            guess = said[name] & known
            counts[name][0] += int((guess & target).sum())
            counts[name][1] += int(guess.sum())
            counts[name][2] += int((target & known).sum())
    return {name: {"true": true, "precision": round(hits / max(guessed, 1), 3), "recall": round(hits / max(true, 1), 3)}
            for name, (hits, guessed, true) in counts.items()}


def main() -> None:
    parser = parser_for(__doc__, clips=100, default_out="first-sight.json")
    args = parser.parse_args()
    model_dir, model = load(args)
    if not model.cfg.decoder.first_sight_classes:
        parser.error(f"{model_dir} has no first-sight head; train one with --first-sight")
    report = {"checkpoint": str(model_dir), "fingerprint": model.fingerprint(), "clips": args.clips,
              "cue norms": [round(float(n), 3) for n in model.decoder.first_sight_cues.detach().norm(dim=1)],
              "head": {split: head_quality(model, split, args.clips) for split in SPLITS},
              "cues as trained, accuracy": accuracies(model, args.clips, KINDS, SPLITS)}
    for factor in CUE_FACTORS:
        report[f"cues x{factor:g}, accuracy"] = accuracies(with_cues_times(model, factor), args.clips, KINDS, SPLITS)
    if model.cfg.decoder.first_sight_tokens:
        report["token ages zeroed, accuracy"] = accuracies(without_token_ages(model), args.clips, KINDS, SPLITS)
    write_report(report, args.out or RESULTS / "first-sight.json")


if __name__ == "__main__":
    main()
