"""Why does the counter of plays miss on world:wild? The hearing head's count of the asked sound's
plays (what "how many times did you hear the drum?" reads, experiments.count_errors) on each
world:wild clip's audio as rendered and as the wild path made it, split by how it was made.

    .venv/bin/python -m experiments.wild_counter [CHECKPOINT] [--clips 100] [--threads 2]

The wild path (training.world.wild) draws per clip a sample rate (8-48 kHz), mono or stereo, a
container (H.264 + AAC or VP8 + Opus) and an audio gain (0.5-1.3). If the counter is right on
the clean audio and wrong on the wild one mostly for one of these, that one is what it does not
yet hear through; if it errs alike everywhere, the re-encoding as such is. Also the mean plays it
counts per question, clean and wild, and the true mean: a count that falls short misses plays.
Writes experiments/results/understanding/wild-counter.json (or `--out`).
"""

from __future__ import annotations

from collections import Counter, defaultdict

import torch

from experiments.asking import RESULTS, load, parser_for, rates, write_report
from experiments.count_errors import count_word, heard_plays
from model import StreamerModel
from training.world.clip import World, WorldConfig
from training.world.vocab import NUMBER_WORDS
from training.world.wild import WildMedia, wild_clip


def media_groups(media: WildMedia) -> list[str]:
    """The groups of a clip's wild media that the counter's answers are split by."""
    rate = media.sample_rate
    return [f"sample rate {'8-11' if rate < 16_000 else '16-24' if rate <= 24_000 else '32-48'} kHz",
            "stereo" if media.stereo else "mono",
            "H.264 + AAC" if media.container == "mp4" else "VP8 + Opus",
            f"audio gain {'0.5-0.8' if media.audio_gain < 0.8 else '0.8-1.05' if media.audio_gain < 1.05 else '1.05-1.3'}"]


@torch.no_grad()
def counter_on_wild(model: StreamerModel, clips: int) -> dict:
    world = World(WorldConfig.preset("wild", spec=model.cfg.media, kinds=("count_sound",), questions_per_clip=4))
    window = model.cfg.latent.window
    groups: dict[str, Counter] = defaultdict(Counter)
    plays_counted: Counter = Counter()
    for i in range(clips):
        clip = world.clip(i)
        _, audio, media = wild_clip(clip)
        clean, wild = heard_plays(model, clip.audio_snippets()), heard_plays(model, audio)
        for q in clip.questions:
            if q.ask_snippets > len(audio):  # the codec shortened the clip
                continue
            said_clean, said_wild = count_word(clean, q, window), count_word(wild, q, window)
            groups["counter on the clean audio"][said_clean == q.answer] += 1
            groups["counter on the wild audio, all"][said_wild == q.answer] += 1
            if said_clean == q.answer:
                for group in ["all", *media_groups(media)]:
                    groups[f"counter on the wild audio where right on the clean, {group}"][said_wild == q.answer] += 1
            plays_counted["true"] += NUMBER_WORDS.index(q.answer)
            plays_counted["clean"] += NUMBER_WORDS.index(said_clean)
            plays_counted["wild"] += NUMBER_WORDS.index(said_wild)
            plays_counted["questions"] += 1
    asked = max(1, plays_counted.pop("questions"))
    return {**rates(groups), "mean plays per question": {k: round(v / asked, 3) for k, v in plays_counted.items()}}


def main() -> None:
    parser = parser_for(__doc__, clips=100, default_out="wild-counter.json")
    args = parser.parse_args()
    model_dir, model = load(args)
    if not model.cfg.decoder.first_sight_onsets:
        parser.error(f"{model_dir} counts no plays; train one with --first-sight-onsets")
    report = {"checkpoint": str(model_dir), "fingerprint": model.fingerprint(), "clips": args.clips,
              "wild": counter_on_wild(model, args.clips)}
    write_report(report, args.out or RESULTS / "wild-counter.json")


if __name__ == "__main__":
    main()
