"""Do the decoder's answers about old events fade because its attention spreads thinner over a
long context? Answers `order` and `sound_of` on world:test (4–16 snippets) and world:long
(16–64) with a checkpoint as it is, and with its cross-attention scores multiplied by
log(context tokens) / log(145), the `decoder.length_scale` with every gain 1, untrained.

    .venv/bin/python -m experiments.length_scale [CHECKPOINT] [--clips 100] [--threads 2]

If the untrained scale lifts long and leaves test as it was, the softmax's dilution over many
tokens is part of the gap between the splits, and training with the scale (`--length-scale`)
can build on it. For a checkpoint trained with the scale, its learned gains are compared with
gains of 1. Writes experiments/results/understanding/length-scale.json (or `--out`).
"""

from __future__ import annotations

import dataclasses

import torch

from experiments.asking import RESULTS, accuracies, load, parser_for, write_report
from model import StreamerModel

KINDS = ("order", "sound_of")
SPLITS = ("test", "long")


def with_unit_gains(model: StreamerModel) -> StreamerModel:
    """`model` with `decoder.length_scale` on and every gain 1, its other weights as they are."""
    cfg = dataclasses.replace(model.cfg, decoder=dataclasses.replace(model.cfg.decoder, length_scale=True))
    scaled = StreamerModel(cfg)
    scaled.load_state_dict(model.state_dict(), strict=False)
    with torch.no_grad():
        scaled.decoder.length_scales.fill_(1.0)
    return scaled.eval()


def main() -> None:
    parser = parser_for(__doc__, clips=100, default_out="length-scale.json")
    args = parser.parse_args()
    model_dir, model = load(args)
    report = {"checkpoint": str(model_dir), "fingerprint": model.fingerprint(), "clips": args.clips}
    if model.cfg.decoder.length_scale:
        report["learned gains"] = model.decoder.length_scales.round(decimals=4).tolist()
        report["learned gains, accuracy"] = accuracies(model, args.clips, KINDS, SPLITS)
    else:
        report["no scale, accuracy"] = accuracies(model, args.clips, KINDS, SPLITS)
    report["gains of 1, untrained, accuracy"] = accuracies(with_unit_gains(model), args.clips, KINDS, SPLITS)
    write_report(report, args.out or RESULTS / "length-scale.json")


if __name__ == "__main__":
    main()
