"""Do lures mislead the decoder through their first-sight tokens?

    .venv/bin/python -m experiments.order_lures [CHECKPOINT] [--clips 100] [--threads 2]

`experiments.order_age` finds "which came first" about two shapes answered wrong far more often
when a lure was shown: a shape first seen before both that shares a colour or a shape with the
newer of the two (`order_age.lures`). This asks every such world:long and world:test `order`
question three times and scores the whole answer as the evaluation does (every byte and the end
the decoder's first choice): with the whole context; with the lures' first-sight tokens hidden
from the decoder (masked out of its context); and, as a control, with as many tokens of other
shapes shown hidden (neither the two nor a lure, drawn at random), which tells what hiding any
shape's token does. If hiding the lures turns wrong answers right far more often than hiding
others, the lures mislead the decoder through their tokens. Needs first-sight tokens. For a
model with a first-sight pointer it also reports, per decoder layer, the pointer's mean
probability at the answer positions that the question names each of the two named shapes, each
lure and each other shape shown: a pointer that ANDs colour and shape gives the lures as little
as the others.
Writes experiments/results/understanding/order-lures.json (or `--out`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from experiments.asking import RESULTS, load, parser_for, write_report
from experiments.first_sight_readout import named_pair
from experiments.order_age import lures
from model import StreamerModel
from training.data import world_sample
from training.world.clip import World, WorldConfig
from training.world.first_sight import FIRST_SIGHT_CLASSES
from training.world.vocab import SOUNDS

SPLITS = ("long", "test")
CONDITIONS = ("whole context", "lures hidden", "as many others hidden")


@dataclass
class AskedQuestion:
    """One question's teacher-forced decoder inputs over its window, built once for every reading of it."""

    ids: torch.Tensor  # [1, L]: prompt and answer but its end
    answer_from: int  # the position whose next token is the answer's first byte
    targets: list[int]
    cross_kv: list
    mask: torch.Tensor  # [1, Nc]: the context tokens the decoder may read
    token_ages: torch.Tensor | None


def ask(model: StreamerModel, memory: torch.Tensor | None, h: torch.Tensor, valid: torch.Tensor,
        question: str, answer: str, heard: torch.Tensor | None = None) -> AskedQuestion:
    """`question` over the window h [1, W, m, dl] (valid [1, W]; heard [1, W, sounds] with a hearing
    head, `StreamerModel.clip_heard` of those snippets) with `answer` teacher-forced."""
    decoder = model.decoder
    context, mask = decoder.context(memory, h, valid, heard)
    prompt, targets = model.question_prompt(question), model.answer_targets(answer)
    return AskedQuestion(torch.tensor([prompt + targets[:-1]]), len(prompt) - 1, targets, decoder.cross_kv(context),
                         mask, decoder.token_ages(h, valid, heard))


def answered_right(model: StreamerModel, asked: AskedQuestion, hidden_sets: list[list[str]]) -> list[bool]:
    """For each list of classes in `hidden_sets`: whether the decoder, with those classes'
    first-sight tokens masked out of its context, gives every byte of the answer and its end as
    its first choice."""
    first_token = 1 + model.cfg.combiner.memory_tokens
    positions = torch.arange(asked.ids.shape[1])[None]
    right = []
    for hidden in hidden_sets:
        kept = asked.mask.clone()
        kept[0, [first_token + FIRST_SIGHT_CLASSES.index(name) for name in hidden]] = False
        logits, _ = model.decoder(asked.ids, positions, None, asked.cross_kv, kept, token_ages=asked.token_ages)
        right.append(logits[0, asked.answer_from:].argmax(-1).tolist() == asked.targets)
    return right


def pointer_probabilities(model: StreamerModel, asked: AskedQuestion) -> torch.Tensor:
    """[layers, classes]: the first-sight pointer's σ(logit) that the question names each class,
    averaged over the positions where the answer is written (whole context)."""
    *_, names = model.decoder(asked.ids, torch.arange(asked.ids.shape[1])[None], None, asked.cross_kv, asked.mask,
                              token_ages=asked.token_ages, names=True)
    return torch.sigmoid(names[:, 0, asked.answer_from:]).mean(dim=1)


def shown_others(clip, question) -> list[str]:
    """The shapes shown before the question that are neither of the two named nor a lure."""
    named, lured = set(named_pair(question.text)), set(lures(clip, question))
    t_ask = question.ask_snippets * clip.spec.snippet_seconds
    return sorted({f"{s.color} {s.shape}" for s in clip.timeline.shapes if s.t_start < t_ask} - named - lured)


def others_to_hide(clip, question, count: int, generator: torch.Generator) -> list[str]:
    """`count` shapes shown before the question (at most as many as there are) that are neither
    of the two named nor a lure, drawn at random."""
    shown = shown_others(clip, question)
    order = torch.randperm(len(shown), generator=generator).tolist()
    return [shown[i] for i in order[:count]]


@torch.no_grad()
def lure_study(model: StreamerModel, split: str, clips: int) -> dict[str, float | int]:
    world = World(WorldConfig.preset(split, spec=model.cfg.media, kinds=("order",), questions_per_clip=4))
    w = model.cfg.latent.window
    generator = torch.Generator().manual_seed(0)
    right = dict.fromkeys(CONDITIONS, 0)
    flips = {"wrong made right by hiding the lures": 0, "right made wrong by hiding the lures": 0,
             "wrong made right by hiding others": 0, "right made wrong by hiding others": 0}
    asked = fewer_others = 0
    pointed = model.cfg.decoder.first_sight_pointer
    pointer_sums = {group: torch.zeros(model.cfg.decoder.layers) for group in ("named", "lures", "others shown")}
    pointer_counts = dict.fromkeys(pointer_sums, 0)
    for i in range(clips):
        clip = world.clip(i)
        sample = world_sample(clip)
        lured_questions = [(q, lured) for q in sample["questions"] if named_pair(q.text)[0] not in SOUNDS
                           for lured in [lures(clip, q)] if lured]
        if not lured_questions:
            continue
        video, audio = torch.as_tensor(sample["video"])[None], torch.as_tensor(sample["audio"])[None]
        _, memories, h = model._clip_latents(video, audio)
        heard = model.clip_heard(audio)
        for q, lured in lured_questions:
            chunks = q.ask_snippets - w + torch.arange(w)
            window, valid = h[:, chunks.clamp(min=0)], (chunks >= 0)[None]
            heard_window = heard[:, chunks.clamp(min=0)] if heard is not None else None
            memory = memories[:, q.ask_snippets] if memories is not None else None
            others = others_to_hide(clip, q, len(lured), generator)
            fewer_others += int(len(others) < len(lured))
            asked_question = ask(model, memory, window, valid, q.text, q.answer, heard_window)
            got = dict(zip(CONDITIONS, answered_right(model, asked_question, [[], lured, others])))
            asked += 1
            if pointed:
                probabilities = pointer_probabilities(model, asked_question)
                for group, names in (("named", named_pair(q.text)), ("lures", lured),
                                     ("others shown", shown_others(clip, q))):
                    columns = [FIRST_SIGHT_CLASSES.index(name) for name in names]
                    pointer_sums[group] += probabilities[:, columns].sum(dim=1)
                    pointer_counts[group] += len(columns)
            for condition, ok in got.items():
                right[condition] += int(ok)
            whole = got["whole context"]
            for name, condition in (("the lures", "lures hidden"), ("others", "as many others hidden")):
                if got[condition] != whole:
                    flips[f"{'wrong made right' if got[condition] else 'right made wrong'} by hiding {name}"] += 1
    report = {"questions with a lure": asked, **{f"right, {c}": right[c] for c in CONDITIONS},
              **{f"accuracy, {c}": round(right[c] / max(asked, 1), 3) for c in CONDITIONS}, **flips,
              "questions with fewer others than lures to hide": fewer_others}
    if pointed and asked:
        report["pointer's mean probability that the question names a shape, per decoder layer"] = {
            group: [round(float(p) / max(pointer_counts[group], 1), 3) for p in total]
            for group, total in pointer_sums.items() if pointer_counts[group]}
    return report


def main() -> None:
    parser = parser_for(__doc__, clips=100, default_out="order-lures.json")
    args = parser.parse_args()
    model_dir, model = load(args)
    if not model.cfg.decoder.first_sight_tokens:
        parser.error(f"{model_dir} has no first-sight tokens to hide; train them with --first-sight-tokens")
    report = {"checkpoint": str(model_dir), "fingerprint": model.fingerprint(), "clips": args.clips,
              **{split: lure_study(model, split, args.clips) for split in SPLITS}}
    write_report(report, args.out or RESULTS / "order-lures.json")


if __name__ == "__main__":
    main()
