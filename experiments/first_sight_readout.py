"""Could the first-sight tokens answer `order` on their own?

    .venv/bin/python -m experiments.first_sight_readout [CHECKPOINT] [--clips 100] [--threads 2]

For a checkpoint with a first-sight head (decoder.first_sight_classes): on world:long and
world:test clips, takes every `order` question ("which came first, the A or the B?"), computes
the window's first-sight summary the decoder's context would hold when it is asked (how surely
and how long ago each class was first seen, `TextDecoder.first_sight_summary`), and answers
with the named thing first seen longer ago. A pair the head saw neither of, or saw at the same
age, is counted as undecided. If this readout is right far more often than the decoder, what
limits `order` is how the decoder reads the tokens, not what they hold.
With first-sight tokens it also reports the decoder's own choice at the position that picks the
first answer byte: which of the two things' tokens the READ_HEAD of the last layer (the head the
first-sight read loss trains) weighs more, and, where the two names start with different bytes,
which of the two bytes the decoder ranks higher: with the whole context, and with parts of it
masked (`CONTEXT_PARTS`), which shows where the answer comes from. And it scores the whole
answer with the whole context as the evaluation does (every byte and the end the decoder's first
choice, which is what greedy generation gives), on three times the `order` questions a 200-clip
evaluation of world:long asks, split by whether the two names start with the same byte. Last,
it splits the questions as `experiments.order_age` does (two sounds; two shapes by how many
shapes were shown before the question) and counts, in each group, how often the tokens' ages
and the whole answer are right, and the answer where the tokens are right and where they are
not: whether the decoder or the head that marks first sights loses a group's answers.
Writes experiments/results/understanding/first-sight-readout.json (or `--out`).
"""

from __future__ import annotations

import re

import torch

from experiments.asking import RESULTS, load, parser_for, write_report
from experiments.order_age import shapes_shown
from model import StreamerModel
from training.data import world_sample
from training.world.clip import World, WorldConfig
from training.world.first_sight import FIRST_SIGHT_CLASSES

SPLITS = ("long", "test")
# What the decoder may read when the first byte is scored: the null token always, and these.
CONTEXT_PARTS = {
    "whole context": ("memory", "tokens", "snippets"),
    "no snippets": ("memory", "tokens"),
    "no first-sight tokens": ("memory", "snippets"),
    "memory only": ("memory",),
    "first-sight tokens only": ("tokens",),
    "null token only": (),
}
NAMED_PAIR = re.compile(r"the (.+) or the (.+)\?$")


def named_pair(question: str) -> tuple[str, str]:
    """The two things an `order` question names, in its order."""
    found = NAMED_PAIR.search(question)
    if found is None:
        raise ValueError(f"not an order question: {question!r}")
    return found.group(1), found.group(2)


def older(a: str, b: str, age_a: torch.Tensor, age_b: torch.Tensor, window: int) -> str | None:
    """The one of `a` and `b` first seen longer ago (ages as shares of the window); None when
    their ages are within half a snippet of each other."""
    if abs(float(age_a - age_b)) < 0.5 / window:
        return None
    return a if age_a > age_b else b


def context_part_masks(model: StreamerModel, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """The context mask [1, Nc] narrowed to each of CONTEXT_PARTS (`TextDecoder.context_parts`)."""
    part = model.decoder.context_parts(mask.shape[1])
    null = torch.arange(mask.shape[1]) == 0
    masks = {}
    for name, kept in CONTEXT_PARTS.items():
        readable = null
        for p in kept:
            readable = readable | part[p]
        masks[name] = mask & readable[None]
    return masks


def first_answer_position(model: StreamerModel, memory: torch.Tensor | None, h: torch.Tensor,
                          valid: torch.Tensor, question: str, answer: str, heard: torch.Tensor | None = None
                          ) -> tuple[dict[str, torch.Tensor], torch.Tensor, dict[str, bool]]:
    """For one question asked over the window h [1, W, m, dl] (valid [1, W]; heard [1, W, sounds]
    with a hearing head, `StreamerModel.clip_heard` of those snippets): the logits [V] that
    pick the first answer byte with each of CONTEXT_PARTS readable, the READ_HEAD's
    cross-attention weights [Nc] there with the whole context, and per part whether it gives
    every byte of `answer` and its end as the decoder's first choice."""
    decoder = model.decoder
    context, mask = decoder.context(memory, h, valid, heard)
    prompt, targets = model.question_prompt(question), model.answer_targets(answer)
    ids = torch.tensor([prompt + targets[:-1]])
    positions = torch.arange(ids.shape[1])[None]
    cross_kv, token_ages = decoder.cross_kv(context), decoder.token_ages(h, valid, heard)
    outputs = {name: decoder(ids, positions, None, cross_kv, part_mask, read=True, token_ages=token_ages)
               for name, part_mask in context_part_masks(model, mask).items()}
    first = len(prompt) - 1
    return ({name: logits[0, first] for name, (logits, _, _) in outputs.items()},
            outputs["whole context"][2][0, first],
            {name: logits[0, first:].argmax(-1).tolist() == targets for name, (logits, _, _) in outputs.items()})


@torch.no_grad()
def readout(model: StreamerModel, split: str, clips: int) -> dict[str, dict[str, float]]:
    world = World(WorldConfig.preset(split, spec=model.cfg.media, kinds=("order",), questions_per_clip=4))
    w = model.cfg.latent.window
    first_token = 1 + model.cfg.combiner.memory_tokens
    counts = {"right": 0, "wrong": 0, "undecided": 0, "not a class": 0}
    decoder_counts = {"read head right": 0, "first bytes differ": 0,
                      **{f"first byte right, {name}": 0 for name in CONTEXT_PARTS},
                      "whole answer right, first bytes differ": 0, "first bytes the same": 0,
                      "whole answer right, first bytes the same": 0}
    groups: dict[str, dict[str, int]] = {}
    for i in range(clips):
        clip = world.clip(i)
        sample = world_sample(clip)
        video = torch.as_tensor(sample["video"])[None]
        audio = torch.as_tensor(sample["audio"])[None]
        _, memories, h = model._clip_latents(video, audio)
        heard = model.clip_heard(audio)
        for q in sample["questions"]:
            a, b = named_pair(q.text)
            if a not in FIRST_SIGHT_CLASSES or b not in FIRST_SIGHT_CLASSES:
                counts["not a class"] += 1
                continue
            pair = [FIRST_SIGHT_CLASSES.index(a), FIRST_SIGHT_CLASSES.index(b)]
            chunks = q.ask_snippets - w + torch.arange(w)
            window, valid = h[:, chunks.clamp(min=0)], (chunks >= 0)[None]
            heard_window = heard[:, chunks.clamp(min=0)] if heard is not None else None
            age = model.decoder.first_sight_ages(model.decoder.first_sight(window, valid, heard_window))[0]
            said = older(a, b, age[pair[0]], age[pair[1]], w)
            counts["undecided" if said is None else "right" if said == q.answer else "wrong"] += 1
            if not model.cfg.decoder.first_sight_tokens:
                continue
            memory = memories[:, q.ask_snippets] if memories is not None else None
            logits, weights, rights = first_answer_position(model, memory, window, valid, q.text, q.answer,
                                                            heard_window)
            exact = rights["whole context"]
            group = groups.setdefault((shapes_shown(clip, q) or ("two sounds",))[0], {
                "questions": 0, "tokens right": 0, "answer right": 0, "answer right, tokens right": 0,
                "answer right, tokens wrong or undecided": 0})
            tokens_right = said == q.answer
            group["questions"] += 1
            group["tokens right"] += int(tokens_right)
            group["answer right"] += int(exact)
            group[f"answer right, tokens {'right' if tokens_right else 'wrong or undecided'}"] += int(exact)
            on = weights[[first_token + j for j in pair]]
            decoder_counts["read head right"] += int((a, b)[int(on[1] > on[0])] == q.answer)
            byte_a, byte_b = model.tokenizer.encode(a)[0], model.tokenizer.encode(b)[0]
            decoder_counts["first bytes the same"] += int(byte_a == byte_b)
            decoder_counts[f"whole answer right, first bytes {'the same' if byte_a == byte_b else 'differ'}"] += int(exact)
            if byte_a != byte_b:
                decoder_counts["first bytes differ"] += 1
                for name, part_logits in logits.items():
                    decoder_counts[f"first byte right, {name}"] += int(
                        (a, b)[int(part_logits[byte_b] > part_logits[byte_a])] == q.answer)
    asked = counts["right"] + counts["wrong"] + counts["undecided"]
    report = {"tokens' ages": {**counts, "questions": asked, "accuracy": round(counts["right"] / max(asked, 1), 3)}}
    if model.cfg.decoder.first_sight_tokens:
        differ = decoder_counts["first bytes differ"]
        report["decoder at the first answer byte"] = {
            **decoder_counts, "read head accuracy": round(decoder_counts["read head right"] / max(asked, 1), 3),
            **{f"first byte accuracy, {name}": round(decoder_counts[f"first byte right, {name}"] / max(differ, 1), 3)
               for name in CONTEXT_PARTS},
            "whole answer accuracy": round((decoder_counts["whole answer right, first bytes differ"]
                                            + decoder_counts["whole answer right, first bytes the same"])
                                           / max(asked, 1), 3),
            "whole answer accuracy, first bytes the same": round(
                decoder_counts["whole answer right, first bytes the same"]
                / max(decoder_counts["first bytes the same"], 1), 3)}
        report["by what was shown"] = {name: group_rates(group) for name, group in sorted(groups.items())}
    return report


def group_rates(group: dict[str, int]) -> dict[str, float | int]:
    """A group's counts with the tokens' and the answer's accuracy, and the answer's where the
    tokens are right and where they are not."""
    n, right = group["questions"], group["tokens right"]
    return {**group, "tokens accuracy": round(right / max(n, 1), 3),
            "answer accuracy": round(group["answer right"] / max(n, 1), 3),
            "answer accuracy, tokens right": round(group["answer right, tokens right"] / max(right, 1), 3),
            "answer accuracy, tokens wrong or undecided": round(
                group["answer right, tokens wrong or undecided"] / max(n - right, 1), 3)}


def main() -> None:
    parser = parser_for(__doc__, clips=100, default_out="first-sight-readout.json")
    args = parser.parse_args()
    model_dir, model = load(args)
    if not model.cfg.decoder.first_sight_classes:
        parser.error(f"{model_dir} has no first-sight head; train one with --first-sight")
    report = {"checkpoint": str(model_dir), "fingerprint": model.fingerprint(), "clips": args.clips,
              **{split: readout(model, split, args.clips) for split in SPLITS}}
    write_report(report, args.out or RESULTS / "first-sight-readout.json")


if __name__ == "__main__":
    main()
