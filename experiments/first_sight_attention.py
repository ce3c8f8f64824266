"""How much of the decoder's attention goes to the first-sight tokens when it answers `order`?

    .venv/bin/python -m experiments.first_sight_attention [CHECKPOINT] [--clips 30] [--threads 2]

For a checkpoint with first-sight tokens (decoder.first_sight_tokens): streams world:long and
world:test clips, asks `order` questions, and at every decoder call takes the cross-attention
weights of the last query position (the one that picks the next answer token) in every layer
and head. Reports the share of those weights on the one-per-class first-sight tokens beside
the share they would get if every valid context token weighed the same. A head that reads the
tokens to rank two things puts far more than that share on them.
Writes experiments/results/understanding/first-sight-attention.json (or `--out`).
"""

from __future__ import annotations

import torch

from experiments.asking import RESULTS, ask_world, load, parser_for, write_report
from model import StreamerModel

SPLITS = ("long", "test")


class TokenShare:
    """Forward hooks on every decoder cross-attention that add up, per layer and head, the
    weight the last query position gives the first-sight tokens, and the share they hold of
    the valid context."""

    def __init__(self, model: StreamerModel) -> None:
        dc = model.cfg.decoder
        first = 1 + model.cfg.combiner.memory_tokens  # after the null token and the memory slots
        self.tokens = slice(first, first + dc.first_sight_classes)
        self.weight = torch.zeros(dc.layers, dc.heads)
        self.uniform = torch.zeros(dc.layers)
        self.rows = torch.zeros(dc.layers)
        self.handles = [block.cross.register_forward_hook(self._hook(i))
                        for i, block in enumerate(model.decoder.blocks)]

    def _hook(self, layer: int):
        def record(cross, args, _output) -> None:
            x, k, _v, mask, *rest = args
            if rest and rest[0] is not None and rest[0].dim() == 4:  # each query's own bias: keep the last's
                rest[0] = rest[0][:, :, -1:]
            w = cross.weights(x[:, -1:], k, mask, *rest)[:, :, 0]  # [B, heads, Nc]
            self.weight[layer] += w[:, :, self.tokens].sum(-1).sum(0)
            classes = self.tokens.stop - self.tokens.start
            self.uniform[layer] += (classes / mask.sum(-1).float()).sum()
            self.rows[layer] += x.shape[0]
        return record

    def report(self) -> dict[str, list]:
        for handle in self.handles:
            handle.remove()
        shares = (self.weight / self.rows[:, None]).double().round(decimals=4)
        return {"share per layer and head": shares.tolist(),
                "uniform share per layer": (self.uniform / self.rows).double().round(decimals=4).tolist(),
                "query positions": int(self.rows[0])}


@torch.no_grad()
def token_share(model: StreamerModel, split: str, clips: int) -> dict[str, list]:
    share = TokenShare(model)
    try:
        ask_world(model, split, ("order",), clips)
    finally:
        result = share.report()
    return result


def main() -> None:
    parser = parser_for(__doc__, clips=30, default_out="first-sight-attention.json")
    args = parser.parse_args()
    model_dir, model = load(args)
    if not model.cfg.decoder.first_sight_tokens:
        parser.error(f"{model_dir} has no first-sight tokens; train them with --first-sight-tokens")
    report = {"checkpoint": str(model_dir), "fingerprint": model.fingerprint(), "clips": args.clips,
              **{split: token_share(model, split, args.clips) for split in SPLITS}}
    write_report(report, args.out or RESULTS / "first-sight-attention.json")


if __name__ == "__main__":
    main()
