"""Could the first-sight tokens' company answer `sound_of` and `who_made` on its own?

    .venv/bin/python -m experiments.company_readout [CHECKPOINT] [--clips 100] [--threads 2]

For a checkpoint with first-sight company (decoder.first_sight_company): on world:long,
world:test and world:compositional clips, takes every `sound_of` question ("what sound did the
red circle make?") and computes what the first-sight head found present where the named shape
was first seen in the window and one snippet later (`TextDecoder.company`), and answers with the
sound found most surely there, or "silence" where none reaches one half; and every `who_made`
question ("which shape made the drum?"), answered with the shape seen in the window whose
company holds the sound most surely. It also scores the decoder's whole answer as the evaluation
does (teacher forced; every byte its first choice), and splits both by how long before the
question the shape appeared (inside the latent window or before it) and the decoder's by whether
the readout was right. If the readout is right far more often than the decoder, the decoder does
not yet read the tokens; if it is wrong where the decoder is, the head's presence at first sight
is what limits the kind; for `sound_of` it also counts how often the readout hears nothing at the
first sight of a shape that sounded, how often the decoder answers right reading the first-sight
tokens alone (everything else masked), and the weight the last layer's READ_HEAD puts on the
asked shape's token where the answer's first byte is written.
Writes experiments/results/understanding/company-readout.json (or `--out`).
"""

from __future__ import annotations

from collections import Counter, defaultdict

import torch

from experiments.asking import RESULTS, load, parser_for, rates, write_report
from experiments.binding_errors import SOUND_OF_SUBJECT
from experiments.first_sight_readout import first_answer_position
from model import StreamerModel
from training.data import world_sample
from training.world.clip import World, WorldConfig
from training.world.first_sight import FIRST_SIGHT_CLASSES
from training.world.vocab import HELD_OUT_COLOR_SHAPE, SOUNDS

SPLITS = ("long", "test", "compositional")
KINDS = ("sound_of", "who_made")
SHAPE_CLASSES = [i for i, name in enumerate(FIRST_SIGHT_CLASSES) if name not in SOUNDS]
PRESENT = 0.5  # the presence at first sight a sound needs to be the readout's answer


def company_answer(company: torch.Tensor, subject: int) -> str:
    """company [classes, 2 · classes] (`TextDecoder.company` of one window) -> the sound most
    surely present where class `subject` was first seen or one snippet later, or "silence"."""
    classes = len(FIRST_SIGHT_CLASSES)
    sounds = [FIRST_SIGHT_CLASSES.index(s) for s in SOUNDS]
    heard = torch.maximum(company[subject, sounds], company[subject, [classes + j for j in sounds]])
    return SOUNDS[int(heard.argmax())] if float(heard.max()) >= PRESENT else "silence"


def maker_answer(company: torch.Tensor, seen: torch.Tensor, sound: str) -> str:
    """company [classes, 2 · classes], seen [classes] (how surely each class was first seen in the
    window) -> the shape class seen whose first sight most surely came with `sound`."""
    classes = len(FIRST_SIGHT_CLASSES)
    j = FIRST_SIGHT_CLASSES.index(sound)
    heard = torch.maximum(company[SHAPE_CLASSES, j], company[SHAPE_CLASSES, classes + j]) * seen[SHAPE_CLASSES]
    return FIRST_SIGHT_CLASSES[SHAPE_CLASSES[int(heard.argmax())]]


@torch.no_grad()
def readout(model: StreamerModel, split: str, clips: int) -> dict[str, dict]:
    world = World(WorldConfig.preset(split, spec=model.cfg.media, kinds=KINDS, questions_per_clip=4))
    w = model.cfg.latent.window
    groups: dict[str, Counter] = defaultdict(Counter)
    skipped, on_token = 0, []
    for i in range(clips):
        clip = world.clip(i)
        sample = world_sample(clip)
        audio = torch.as_tensor(sample["audio"])[None]
        _, memories, h = model._clip_latents(torch.as_tensor(sample["video"])[None], audio)
        heard = model.clip_heard(audio)
        for q in sample["questions"]:
            name = " ".join(SOUND_OF_SUBJECT.search(q.text).groups()) if q.kind == "sound_of" else q.answer
            if name not in FIRST_SIGHT_CLASSES:  # an off-palette colour
                skipped += 1
                continue
            chunks = q.ask_snippets - w + torch.arange(w)
            window, valid = h[:, chunks.clamp(min=0)], (chunks >= 0)[None]
            heard_window = heard[:, chunks.clamp(min=0)] if heard is not None else None
            present = model.decoder.presence(window, valid, heard_window)
            marks = model.decoder.first_sight_marks(present)
            company = model.decoder.company(marks, present)[0]
            if q.kind == "sound_of":
                said = company_answer(company, FIRST_SIGHT_CLASSES.index(name))
            else:
                said = maker_answer(company, marks[0].amax(dim=0), q.text.rstrip("?").split()[-1])
            tokens_right = said == q.answer
            memory = memories[:, q.ask_snippets] if memories is not None else None
            _, weights, rights = first_answer_position(model, memory, window, valid, q.text, q.answer,
                                                       heard_window)
            answer_right = rights["whole context"]
            t_ask = q.ask_snippets * clip.spec.snippet_seconds
            shown = [s for s in clip.timeline.shapes if s.name == name and s.t_start < t_ask]
            ago = (t_ask - shown[-1].t_start) / clip.spec.snippet_seconds if shown else 0.0
            reach = "appeared inside the window" if ago < w else "appeared before the window"
            # the shape asked about (sound_of) or the one that made the sound (who_made)
            pair = "held-out colour-shape pair" if tuple(name.split()) in HELD_OUT_COLOR_SHAPE else \
                "trained colour-shape pair"
            for group in ("all", reach, pair):
                groups[f"{q.kind} readout, {group}"][tokens_right] += 1
                groups[f"{q.kind} decoder, {group}"][answer_right] += 1
            groups[f"{q.kind} decoder, readout {'right' if tokens_right else 'wrong'}"][answer_right] += 1
            groups[f"{q.kind} decoder reading the first-sight tokens alone"][rights["first-sight tokens only"]] += 1
            if q.kind == "sound_of":  # how much of the read head's attention the shape's token holds
                on_token.append(float(weights[1 + model.decoder.memory_tokens + FIRST_SIGHT_CLASSES.index(name)]))
            if q.kind == "sound_of" and q.answer != "silence":  # what the head heard at a sounding shape's first sight
                groups["sound_of readout says silence for a shape that sounded"][said == "silence"] += 1
    read = torch.tensor(on_token)
    return {"questions skipped (no class)": skipped, **rates(groups),
            "sound_of read head's weight on the shape's token at the first answer byte":
                {"mean": round(float(read.mean()), 3), "median": round(float(read.median()), 3)}}


def main() -> None:
    parser = parser_for(__doc__, clips=100, default_out="company-readout.json")
    args = parser.parse_args()
    model_dir, model = load(args)
    if not model.cfg.decoder.first_sight_company:
        parser.error(f"{model_dir} has no first-sight company; train one with --first-sight-company")
    report = {"checkpoint": str(model_dir), "fingerprint": model.fingerprint(), "clips": args.clips,
              **{split: readout(model, split, args.clips) for split in SPLITS}}
    write_report(report, args.out or RESULTS / "company-readout.json")


if __name__ == "__main__":
    main()
