"""Can the decoder learn to rank two first-sight tokens by age at all?

    .venv/bin/python -m experiments.token_compare [CHECKPOINT] [--steps 400] [--threads 2]

The first-sight tokens' ages alone answer `order` on world:long 95% of the time
(experiments/first_sight_readout.py), yet a decoder that reads the tokens alone answers at
chance, even after training that hid the memory and the snippets from half its `order`
questions. This takes the decoder out of the model and gives it perfect tokens: first-sight drills
(training.drills: a few of the world's shapes and sounds first seen at random ages in the
window, exact marks, one `order` question about two of the same sort, and a context in which
only the null token and the first-sight tokens are readable). It fine-tunes the decoder alone on
drills at the fine-tuning learning rates of
training.trainer and reports held-out accuracy by how far apart the two ages are, for each way
of putting the age into the tokens (VARIANTS). If the decoder cannot learn it here, no amount of
world training will make it read the tokens.
Writes experiments/results/understanding/token-compare.json (or `--out`).
"""

from __future__ import annotations

import time
from dataclasses import replace

import torch

from experiments.asking import RESULTS, load, parser_for, write_report
from model import StreamerModel
from training.drills import Drills, draw_drills, drill_batch
from training.trainer import FAST_PART_LR_SCALE, FAST_PARTS, parameter_groups

# Ways of putting the age into the decoder's reading of the tokens, as DecoderConfig fields over the
# checkpoint's: as trained, the age enters only as a share of the window through the tokens'
# feature projection; new weights start as training.trainer starts them (slopes at zero).
VARIANTS = {"age as a share of the window": {},
            "plus a sinusoidal age code": {"first_sight_age_code": 1.0},
            "plus first-sight age slopes": {"first_sight_age_slopes": True}}
AGE_GAPS = ((1, 2), (3, 7), (8, 63))  # snippets between the two first sights, inclusive


def answer_pass(model: StreamerModel, drills: Drills):
    """Teacher-forced logits [N, La, V] of the drills' answers, with the answer ids and mask."""
    batch = drill_batch(model, drills)
    a_ids, a_mask = batch["drill_answer_ids"], batch["drill_answer_mask"]
    logits = model.drill_logits(drills.marks, batch["drill_question_ids"], batch["drill_question_mask"], a_ids, a_mask)
    return logits, a_ids, a_mask


def accuracy_by_gap(model: StreamerModel, drills: Drills) -> dict[str, float]:
    with torch.no_grad():
        logits, a_ids, a_mask = answer_pass(model, drills)
    right = ((logits.argmax(-1) == a_ids) | ~a_mask).all(-1)
    gaps = torch.tensor(drills.gaps)
    report = {"all": round(float(right.float().mean()), 3)}
    for low, high in AGE_GAPS:
        chosen = (gaps >= low) & (gaps <= high)
        report[f"ages {low}-{high} snippets apart"] = round(float(right[chosen].float().mean()), 3)
    return report


def train_variant(base: StreamerModel, fields: dict, steps: int, batch: int, lr: float, seed: int
                  ) -> dict[str, object]:
    model = StreamerModel(replace(base.cfg, decoder=replace(base.cfg.decoder, **fields)))
    missing, unexpected = model.load_state_dict(base.state_dict(), strict=False)
    if unexpected or any(not n.startswith(FAST_PARTS) for n in missing):
        raise SystemExit(f"variant {fields} does not fit {unexpected or missing}")
    with torch.no_grad():
        for name in missing:
            model.get_parameter(name).zero_()
    window = model.cfg.latent.window
    held_out = draw_drills(400, window, torch.Generator().manual_seed(seed + 1))
    before = accuracy_by_gap(model.eval(), held_out)
    groups = parameter_groups(model, weight_decay=0.0)  # the trainer's groups; only the decoder gets gradients
    optimizer = torch.optim.AdamW([{**group, "lr": lr * group["lr_scale"]} for group in groups])
    generator = torch.Generator().manual_seed(seed)
    model.train()
    curve, start = [], time.perf_counter()
    for step in range(1, steps + 1):
        logits, a_ids, a_mask = answer_pass(model, draw_drills(batch, window, generator))
        loss = torch.nn.functional.cross_entropy(logits[a_mask], a_ids[a_mask])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % max(1, steps // 4) == 0:
            curve.append({"step": step, "loss": round(float(loss.detach()), 4),
                          "held-out accuracy": accuracy_by_gap(model.eval(), held_out)["all"]})
            model.train()
    return {"decoder fields": fields, "held-out before": before,
            "held-out after": accuracy_by_gap(model.eval(), held_out), "curve": curve,
            "seconds": round(time.perf_counter() - start, 1)}


def main() -> None:
    parser = parser_for(__doc__, clips=0, default_out="token-compare.json")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    model_dir, model = load(args)
    if not model.cfg.decoder.first_sight_tokens:
        raise SystemExit(f"{model_dir} has no first-sight tokens (decoder.first_sight_tokens); train them with "
                         "--first-sight-tokens first")
    report = {"checkpoint": str(model_dir), "fingerprint": model.fingerprint(), "steps": args.steps,
              "batch": args.batch, "lr": args.lr, "fast part lr": args.lr * FAST_PART_LR_SCALE,
              "chance": 0.5, "variants": {}}
    for name, fields in VARIANTS.items():
        report["variants"][name] = train_variant(model, fields, args.steps, args.batch, args.lr, args.seed)
        print(name, report["variants"][name]["held-out after"], flush=True)
    write_report(report, args.out or RESULTS / "token-compare.json")


if __name__ == "__main__":
    main()
