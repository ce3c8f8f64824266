"""`streamer recipe`: train a model from nothing, stage after stage, in one command.

    streamer recipe --out runs/tiny                  # the bundled model's (BUNDLED_RECIPE), or: make model
    streamer recipe --out runs/tiny --dry-run        # print what it would run
    streamer recipe tiny --out runs/tiny-24          # another recipe by name: the 24-stage `tiny`

Each stage is a `training.train` run in `OUT/stageN`, started from the previous stage's
weights; with more than one process it runs under torchrun. Then the last stage is exported
to `OUT/model` (float16, standing-query threshold calibrated on world:val) and evaluated on
every world split into its card, which also records every stage's command and wall time.

Stopped at any point (Ctrl-C, a closed laptop, the end of a working session), the same
command continues: a finished stage is skipped, a stopped one resumes from its last
checkpoint (`--resume`), and the export and the evaluation run only if not already done.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from model.checkpoint import CARD, WEIGHTS
from training import checkpointing

EXPORTED = "model"
EVAL_SPLITS = ("world:test", "world:compositional", "world:long", "world:wild")


@dataclass(frozen=True)
class Stage:
    """One training run of a recipe; every stage after the first starts from the one before."""

    steps: int
    lr: float
    warmup: int
    seed: int = 0
    snippets: str = "4-32"  # clip lengths in snippets
    curriculum: int = 0  # steps over which the longest clip grows to the maximum
    one_length_a_step: bool = False  # every clip of a step (on every rank) as long as the others: no padding
    align_weight: float | None = None  # None: the model config's
    kind_weights: str = ""  # question kinds drawn more often, "who_made=3,describe=2"
    off_palette: float = 0.0  # share of clips whose shapes wear colours outside the palette
    latent_window: int | None = None  # snippets the decoder reads directly; None: the preset's
    decoder_layers: int | None = None  # text decoder layers; None: the preset's
    memory_update: str | None = None  # "pool" or "gated" TTM memory writes; None: the preset's
    window_dropout: float = 0.0  # share of questions whose latent window is cut, so the memory must answer
    age_code: float | None = None  # amplitude of the decoder's fixed sinusoidal age code; None: the preset's
    age_slopes: bool = False  # learned age slopes in the decoder's cross-attention
    length_scale: bool = False  # cross-attention scores scaled by a learned gain times log(context tokens)
    first_sight: float | None = None  # weight of the first-sight loss (> 0 adds the head); None: the model's
    first_sight_tokens: bool = False  # one decoder context token per first-sight class: how surely, how long ago
    first_sight_age_slopes: bool = False  # per-head score bias by each first-sight token's age
    first_sight_query_slopes: bool = False  # each decoder query's own score bias by a first-sight token's age
    first_sight_company: bool = False  # first-sight tokens also carry what was present at the first sight
    first_sight_hearing: bool = False  # the sounds' presence from a hearing head on the log-mel alone
    first_sight_onsets: bool = False  # the hearing head counts plays; the sounds' tokens carry the window's sum
    first_sight_lookup: bool = False  # every decoder layer adds the values of the tokens the pointer finds named
    first_sight_age_code: float | None = None  # amplitude of the first-sight tokens' sinusoidal age code
    first_sight_read: float | None = None  # weight of the loss pointing a decoder head at the answer's token
    read_kinds: str = ""  # kinds the read loss points at a token, "order,sound_of"; "": order
    read_sounds_apart: bool = False  # the read loss points another decoder head at sounds' tokens than at shapes'
    first_sight_only: float = 0.0  # share of `order` questions whose decoder reads the first-sight tokens alone
    company_only: float = 0.0  # share of `sound_of` questions whose decoder reads the first-sight tokens alone
    first_sight_drills: int = 0  # `order` drills per step answered from exact first-sight marks (training.drills)
    clip_drills: int = 0  # `order` drills per clip over the head's own marks of it (training.drills)
    first_sight_pointer: float | None = None  # weight of the loss of the pointer to the classes a question names
    lr_scales: str = ""  # parameters at another multiple of the rate, "decoder.first_sight_pointer=100"
    eval_every: int = 500
    keep_last: int = 2  # checkpoints kept; the export may average the last ones

    def train_flags(self) -> list[str]:
        flags = ["--steps", str(self.steps), "--lr", str(self.lr), "--warmup", str(self.warmup),
                 "--seed", str(self.seed), "--snippets", self.snippets, "--eval-every", str(self.eval_every),
                 "--keep-last", str(self.keep_last)]
        if self.curriculum:
            flags += ["--curriculum", str(self.curriculum)]
        if self.one_length_a_step:
            flags += ["--one-length-a-step"]
        if self.align_weight is not None:
            flags += ["--align-weight", str(self.align_weight)]
        if self.kind_weights:
            flags += ["--kind-weights", self.kind_weights]
        if self.off_palette:
            flags += ["--off-palette", str(self.off_palette)]
        if self.latent_window is not None:
            flags += ["--latent-window", str(self.latent_window)]
        if self.decoder_layers is not None:
            flags += ["--decoder-layers", str(self.decoder_layers)]
        if self.memory_update is not None:
            flags += ["--memory-update", self.memory_update]
        if self.window_dropout:
            flags += ["--window-dropout", str(self.window_dropout)]
        if self.age_code is not None:
            flags += ["--age-code", str(self.age_code)]
        if self.age_slopes:
            flags += ["--age-slopes"]
        if self.length_scale:
            flags += ["--length-scale"]
        if self.first_sight is not None:
            flags += ["--first-sight", str(self.first_sight)]
        if self.first_sight_tokens:
            flags += ["--first-sight-tokens"]
        if self.first_sight_age_slopes:
            flags += ["--first-sight-age-slopes"]
        if self.first_sight_query_slopes:
            flags += ["--first-sight-query-slopes"]
        if self.first_sight_company:
            flags += ["--first-sight-company"]
        if self.first_sight_hearing:
            flags += ["--first-sight-hearing"]
        if self.first_sight_onsets:
            flags += ["--first-sight-onsets"]
        if self.first_sight_lookup:
            flags += ["--first-sight-lookup"]
        if self.first_sight_age_code is not None:
            flags += ["--first-sight-age-code", str(self.first_sight_age_code)]
        if self.first_sight_read is not None:
            flags += ["--first-sight-read", str(self.first_sight_read)]
        if self.read_kinds:
            flags += ["--read-kinds", self.read_kinds]
        if self.read_sounds_apart:
            flags += ["--read-sounds-apart"]
        if self.first_sight_only:
            flags += ["--first-sight-only", str(self.first_sight_only)]
        if self.company_only:
            flags += ["--company-only", str(self.company_only)]
        if self.first_sight_drills:
            flags += ["--first-sight-drills", str(self.first_sight_drills)]
        if self.clip_drills:
            flags += ["--clip-drills", str(self.clip_drills)]
        if self.first_sight_pointer is not None:
            flags += ["--first-sight-pointer", str(self.first_sight_pointer)]
        if self.lr_scales:
            flags += ["--lr-scales", self.lr_scales]
        return flags


@dataclass(frozen=True)
class Recipe:
    """How a bundled model is made: the stages, what every stage shares, the export and the evaluation."""

    preset: str
    stages: tuple[Stage, ...]
    batch: int = 8
    questions: int = 8
    wild: float = 0.15  # share of clips re-made as media from the wild
    checkpoint_every: int = 100
    eval_clips_during_training: int = 32
    average_last: int = 1  # the export ships the mean of the last stage's last N checkpoints
    calibrate_watch: int = 200
    eval_clips: int = 200
    eval_splits: tuple[str, ...] = EVAL_SPLITS

    @classmethod
    def from_name(cls, name: str) -> Recipe:
        if name not in RECIPES:
            raise ValueError(f"no recipe named {name!r}; choose one of {', '.join(RECIPES)}")
        return RECIPES[name]

    def train_command(self, index: int, out: Path, processes: int, threads: int, resume: bool) -> list[str]:
        stage = self.stages[index]
        run = ["-m", "training.train", "--preset", self.preset, "--data", "world", "--out", str(stage_dir(out, index)),
               "--batch", str(self.batch), "--questions", str(self.questions), "--wild", str(self.wild),
               "--checkpoint-every", str(self.checkpoint_every), "--eval-clips", str(self.eval_clips_during_training),
               "--threads", str(threads), "--no-progress", *stage.train_flags()]
        if index > 0:
            run += ["--init", str(stage_dir(out, index - 1))]
        if resume:
            run.append("--resume")
        if processes > 1:
            return [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}", *run]
        return [sys.executable, *run]


# The 24-stage `tiny` (streamer/checkpoints/tiny-24), as trained on 2 CPU cores. Stage 1 learns to see
# and hear (clips grow to 32 snippets over its first third); the alignment loss joins at stage 2,
# as it did for the bundled weights, trained before the head existed. Later stages draw the
# kinds left weakest more often at lower learning rates; stage 5 trains on clips up to 48
# snippets for memory over longer streams; stage 6 re-colours 30% of its clips outside the
# palette, so that shape is read from the outline and not from the colour. Stages 7 and 8 train
# on clips up to 64 snippets with the memory kinds weighted up; stages 8 to 10 double the latent
# window the decoder reads directly (8 -> 16 -> 32 -> 64 snippets), as binding beyond the window
# is mostly lost. Stage 11 adds a fixed sinusoidal code of each snippet's age to the decoder's
# context, as the learned ages of old snippets had drifted together. Stage 12 draws `sound_of`
# and `order` most often, so the decoder learns to read that code, raises the alignment loss so
# that sounds on an empty screen keep their margin over the watch threshold, and adds learned
# age slopes to the decoder's cross-attention. Stage 13 scales the cross-attention scores with the
# log of the context's length, so that a few matching tokens stand out in a long window too (a
# control run without the scale did as well: the stage's gain is its 900 more steps). Stage 14
# adds the first-sight head, which marks where each shape and sound is first present in the
# decoder's context, for "which came first"; stage 15 trains 900 more steps at its settings.
# Stage 16 adds one context token per first-sight class that carries how long ago the thing was
# first seen, as the decoder did not read the marks for "which came first". Stages 17 and 18 make
# it read them: first-sight drills (training.drills) practise ranking the tokens by age, half the
# `order` questions read the tokens alone, and every head gets a score bias by a token's age.
# Stages 19 to 23 add drills over each clip's own first sights (--clip-drills), read from the
# head's soft marks rather than exact ones. Stage 24 adds the first-sight pointer: each decoder
# query learns which classes its question names (taught by the clips' questions and the drills,
# at 100 times the rate), and the heads weight down the tokens of the others, so that a shape of
# the same colour or shape seen earlier (a lure) misleads "which came first" less often.
# Stages 17 to 23: stage 16's settings with the tokens read by age and practised in drills; they
# differ in the seed and the number of drills.
DRILL_STAGE = Stage(steps=450, lr=1e-4, warmup=30, snippets="4-64", align_weight=0.3, eval_every=0,
                    off_palette=0.3, latent_window=64, age_code=0.1, age_slopes=True, length_scale=True,
                    first_sight=0.5, first_sight_tokens=True, first_sight_age_slopes=True, first_sight_only=0.5,
                    first_sight_drills=128,
                    kind_weights="sound_of=5,order=5,who_made=3,count_sound=3,describe=2,first_shape=2,"
                                 "shape_now=2")
MEMORY_KIND_WEIGHTS = "who_made=4,sound_of=3,count_sound=2.5,order=2.5,describe=2,first_shape=2,shape_now=2"

# The two stages of `tiny-fast`, which `tiny-lean` varies. The first learns to see and hear with
# every part of the bundled model in place (clips grow to 32 snippets); the second remembers
# (clips up to 64 snippets, the clip drills, the memory kinds drawn more often).
FAST_LEARN_STAGE = Stage(
    steps=1300, lr=3e-4, warmup=100, seed=60, curriculum=600, align_weight=0.3, eval_every=650,
    off_palette=0.3, latent_window=64, age_code=0.1, age_slopes=True, length_scale=True,
    first_sight=0.5, first_sight_tokens=True, first_sight_age_slopes=True, first_sight_only=0.5,
    first_sight_drills=64, first_sight_pointer=0.5,
    lr_scales="decoder.first_sight_pointer_gains=3,decoder.first_sight_pointer=30",
    kind_weights="who_made=2.5,direction=2,describe=2,sound_of=2,count_sound=1.5,first_shape=1.5,"
                 "shape_now=1.5,order=1.5")
FAST_REMEMBER_STAGE = replace(
    FAST_LEARN_STAGE, steps=450, lr=1.5e-4, warmup=30, seed=61, snippets="4-64", curriculum=0, eval_every=0,
    first_sight_drills=128, clip_drills=16,
    lr_scales="decoder.first_sight_pointer_gains=7,decoder.first_sight_pointer=70",
    kind_weights="who_made=3,sound_of=3,order=3,count_sound=2.5,describe=2,first_shape=2,shape_now=2,direction=1.5")

# The three stages of `tiny-lean`: see and hear with a latent window of 8 and no drills (clips grow
# to 32 snippets over the first 1,200 steps); widen the window to 64 and add the drills; remember.
LEAN_SEE_STAGE = replace(FAST_LEARN_STAGE, steps=3400, seed=70, curriculum=1200, eval_every=1700, latent_window=8,
                         first_sight_drills=0)
LEAN_WIDEN_STAGE = replace(FAST_LEARN_STAGE, steps=300, lr=2e-4, warmup=20, seed=71, curriculum=0, eval_every=0,
                           kind_weights=FAST_LEARN_STAGE.kind_weights.replace("order=1.5", "order=2"))
LEAN_REMEMBER_STAGE = replace(FAST_REMEMBER_STAGE, steps=300, warmup=20, seed=72)

# tiny-lean's stages with one clip length a step and 600 more seeing steps (`tiny-lean-even`).
EVEN_STAGES = (
    replace(LEAN_SEE_STAGE, steps=4000, eval_every=2000, one_length_a_step=True),
    replace(LEAN_WIDEN_STAGE, one_length_a_step=True),
    replace(LEAN_REMEMBER_STAGE, one_length_a_step=True),
)
# Binds sounds to shapes over long streams: clips of 32 to 64 snippets only, the binding and
# counting kinds drawn most, at a lower rate.
LEAN_BIND_STAGE = replace(LEAN_REMEMBER_STAGE, steps=400, lr=1e-4, seed=73, snippets="32-64", eval_every=200,
                          one_length_a_step=True,
                          kind_weights="who_made=4,sound_of=4,count_sound=3,describe=2.5,order=2,first_shape=1.5,"
                                       "shape_now=1.5,direction=1.5")

RECIPES: dict[str, Recipe] = {
    "tiny": Recipe(
        preset="tiny",
        stages=(
            Stage(steps=3000, lr=3e-4, warmup=100, seed=0, curriculum=1000, align_weight=0.0),
            Stage(steps=2000, lr=2e-4, warmup=50, seed=1,
                  kind_weights="direction=2.5,who_made=2.5,describe=2,first_shape=2,sound_of=1.5,count_sound=1.5,"
                               "shape_now=1.5"),
            Stage(steps=1800, lr=1.5e-4, warmup=50, seed=2, align_weight=0.2, eval_every=600,
                  kind_weights="who_made=3,describe=2.5,sound_of=2,count_sound=2,first_shape=2,shape_now=1.5,"
                               "order=1.5,direction=1.5"),
            Stage(steps=1000, lr=1e-4, warmup=30, seed=3, align_weight=0.2,
                  kind_weights="who_made=3.5,sound_of=2.5,describe=2,count_sound=2,first_shape=2,order=1.5,"
                               "shape_now=1.5"),
            Stage(steps=2400, lr=1.2e-4, warmup=40, seed=4, snippets="4-48", align_weight=0.2, eval_every=800,
                  kind_weights="who_made=3.5,sound_of=2.5,describe=2,count_sound=2,first_shape=2,order=2,"
                               "shape_now=2"),
            Stage(steps=1400, lr=1e-4, warmup=30, seed=5, snippets="4-48", align_weight=0.2, eval_every=700,
                  off_palette=0.3,
                  kind_weights="who_made=3.5,sound_of=2.5,describe=2,count_sound=2,first_shape=2,order=2,"
                               "shape_now=2"),
            Stage(steps=700, lr=8e-5, warmup=30, seed=6, snippets="4-64", align_weight=0.2, eval_every=350,
                  off_palette=0.3, kind_weights=MEMORY_KIND_WEIGHTS),
            Stage(steps=700, lr=8e-5, warmup=30, seed=7, snippets="4-64", align_weight=0.2, eval_every=700,
                  off_palette=0.3, latent_window=16, kind_weights=MEMORY_KIND_WEIGHTS),
            Stage(steps=500, lr=8e-5, warmup=30, seed=8, snippets="4-64", align_weight=0.2, eval_every=500,
                  off_palette=0.3, latent_window=32, kind_weights=MEMORY_KIND_WEIGHTS),
            Stage(steps=500, lr=8e-5, warmup=30, seed=9, snippets="4-64", align_weight=0.2, eval_every=500,
                  off_palette=0.3, latent_window=64, kind_weights=MEMORY_KIND_WEIGHTS),
            Stage(steps=900, lr=1e-4, warmup=30, seed=11, snippets="4-64", align_weight=0.2, eval_every=450,
                  off_palette=0.3, latent_window=64, age_code=0.1, kind_weights=MEMORY_KIND_WEIGHTS),
            Stage(steps=900, lr=1e-4, warmup=30, seed=13, snippets="4-64", align_weight=0.3, eval_every=900,
                  off_palette=0.3, latent_window=64, age_code=0.1, age_slopes=True,
                  kind_weights="sound_of=5,order=5,who_made=3,count_sound=3,describe=2,first_shape=2,shape_now=2"),
            Stage(steps=900, lr=1e-4, warmup=30, seed=14, snippets="4-64", align_weight=0.3, eval_every=900,
                  off_palette=0.3, latent_window=64, age_code=0.1, age_slopes=True, length_scale=True,
                  kind_weights="sound_of=5,order=5,who_made=3,count_sound=3,describe=2,first_shape=2,shape_now=2"),
            Stage(steps=900, lr=1e-4, warmup=30, seed=15, snippets="4-64", align_weight=0.3, eval_every=900,
                  off_palette=0.3, latent_window=64, age_code=0.1, age_slopes=True, length_scale=True,
                  first_sight=0.5,
                  kind_weights="sound_of=5,order=5,who_made=3,count_sound=3,describe=2,first_shape=2,shape_now=2"),
            Stage(steps=900, lr=1e-4, warmup=30, seed=16, snippets="4-64", align_weight=0.3, eval_every=900,
                  off_palette=0.3, latent_window=64, age_code=0.1, age_slopes=True, length_scale=True,
                  first_sight=0.5,
                  kind_weights="sound_of=5,order=5,who_made=3,count_sound=3,describe=2,first_shape=2,shape_now=2"),
            Stage(steps=600, lr=1e-4, warmup=30, seed=17, snippets="4-64", align_weight=0.3, eval_every=600,
                  off_palette=0.3, latent_window=64, age_code=0.1, age_slopes=True, length_scale=True,
                  first_sight=0.5, first_sight_tokens=True,
                  kind_weights="sound_of=5,order=5,who_made=3,count_sound=3,describe=2,first_shape=2,shape_now=2"),
            replace(DRILL_STAGE, seed=31, first_sight_drills=64),
            replace(DRILL_STAGE, seed=32),
            replace(DRILL_STAGE, seed=34, clip_drills=16),
            replace(DRILL_STAGE, seed=35, clip_drills=24),
            replace(DRILL_STAGE, seed=36, clip_drills=32),
            replace(DRILL_STAGE, seed=37, clip_drills=48),
            replace(DRILL_STAGE, seed=38, clip_drills=48),
            replace(DRILL_STAGE, seed=45, clip_drills=48, first_sight_pointer=0.5,
                    lr_scales="decoder.first_sight_pointer_gains=10,decoder.first_sight_pointer=100"),
        ),
    ),
    # `tiny` in about 2 hours of the 2 CPU cores, from scratch: every part the 24 stages of `tiny` added one
    # by one (alignment head, 64-snippet window, age code and slopes, length scale, first-sight head and
    # tokens, drills, pointer) is in place from the first step, as a measure of what those hours buy.
    "tiny-fast": Recipe(preset="tiny", stages=(FAST_LEARN_STAGE, FAST_REMEMBER_STAGE)),
    # tiny-fast's model, but most steps run without its two dear parts, a 64-snippet window and the
    # drills, which join for the last two stages. One process alone said they cost 43% of a step
    # (experiments.step_cost); in the two-rank run they cost 16% (experiments.run_pace).
    "tiny-lean": Recipe(preset="tiny", stages=(LEAN_SEE_STAGE, LEAN_WIDEN_STAGE, LEAN_REMEMBER_STAGE)),
    # tiny-lean with 900 fewer steps of seeing and 200 more of remembering: tiny-lean's binding and
    # memory kinds fell behind on world:long and world:compositional, and those kinds were learned by
    # `tiny` only once it trained on 64-snippet clips. Measured, it did worse on every split (77.6% on
    # test against 84.6%; README, Training): at this budget the seeing steps buy more.
    "tiny-lean-long": Recipe(
        preset="tiny",
        stages=(
            replace(LEAN_SEE_STAGE, steps=2500, eval_every=1250),
            replace(LEAN_WIDEN_STAGE, steps=200),
            replace(LEAN_REMEMBER_STAGE, steps=500, eval_every=250),
        ),
    ),
    # tiny-lean with every clip of a step one length (no padding, no rank waiting on the other): the
    # same stages' steps run about a sixth faster (experiments/results/understanding/one-length-pace.json),
    # and the seeing stage spends the time saved on 600 more steps. Measured: 1.95 h of training and
    # 86.1% on test, 72.7% compositional, 79.9% long, 83.9% wild, above tiny-lean on every split
    # (tiny-lean-even-card.json); the long memory kinds still trail test by 19-24 points.
    "tiny-lean-even": Recipe(preset="tiny", stages=EVEN_STAGES),
    # tiny-lean-even and a fourth stage that binds sounds to shapes over long streams: tiny-lean-even's
    # who_made, sound_of and count_sound trailed test by 19-24 points on world:long and its binding
    # kinds held world:compositional under 75%; this spends the ~0.5 h its 1.95 h left of the budget.
    # Measured: 2.45 h, 86.4% test, 74.0% compositional, 82.2% long, 84.1% wild; who_made on long
    # within 5 points of test, sound_of and count_sound still 16-24 under (tiny-lean-bind-card.json).
    "tiny-lean-bind": Recipe(preset="tiny", stages=(*EVEN_STAGES, LEAN_BIND_STAGE)),
    # tiny-lean-bind with its binding stage drawing sound_of and count_sound most: after
    # tiny-lean-bind, who_made on world:long came within 5 points of test but sound_of and
    # count_sound still trailed by 16-24. Measured: 87.1 / 73.9 / 82.1 / 84.1%, sound_of on long
    # unmoved at 43.6% and who_made there 8 points lower (tiny-lean-bind-sound-card.json).
    "tiny-lean-bind-sound": Recipe(preset="tiny", stages=(*EVEN_STAGES, replace(
        LEAN_BIND_STAGE, kind_weights="sound_of=6,count_sound=5,who_made=3,order=3,describe=2.5,first_shape=1.5,"
                                      "shape_now=1.5,direction=1.5"))),
    # tiny-lean-bind whose binding stage also gives every first-sight token what the head found present at
    # that first sight (decoder.first_sight_company): sound_of on world:long stayed at 40-44% through
    # tiny-lean-bind and its two controls, about half its wrong answers naming another sound of the clip.
    # Measured: 2.46 h, 87.4 / 74.9 / 83.6 / 85.2%, sound_of on long 58.2% (tiny-lean-company-card.json).
    "tiny-lean-company": Recipe(preset="tiny", stages=(*EVEN_STAGES, replace(LEAN_BIND_STAGE,
                                                                               first_sight_company=True))),
    # tiny-lean-company with the company from the third stage on, so that the decoder learns to read it over
    # 700 steps instead of 400. Measured: 2.38 h, 87.7 / 74.5 / 84.0 / 85.3%, sound_of 79.9% on test and
    # 63.6% on long, count_sound 73.3% and 50.8% (tiny-lean-company-early-card.json).
    "tiny-lean-company-early": Recipe(preset="tiny", stages=(
        *EVEN_STAGES[:2], replace(EVEN_STAGES[2], first_sight_company=True),
        replace(LEAN_BIND_STAGE, first_sight_company=True))),
    # tiny-lean-company with half its `sound_of` questions answered from the first-sight tokens alone:
    # there the tokens' company named the right sound for 81% of the questions on world:long, the
    # decoder for 52.5% (experiments.company_readout). Measured: 86.5 / 74.4 / 84.0 / 85.3%, sound_of on
    # long 60.9% but on test 70.5%, 6 points under tiny-lean-company (tiny-lean-company-only-card.json).
    "tiny-lean-company-only": Recipe(preset="tiny", stages=(*EVEN_STAGES, replace(
        LEAN_BIND_STAGE, first_sight_company=True, company_only=0.5))),
    # tiny-lean-company-early whose sounds' presence comes from a hearing head on the log-mel alone
    # (decoder.first_sight_sounds): on world:compositional the latent's head heard nothing at the first
    # sight of 35-36% of the shapes that sounded (2-2.5% on test), a prior learned from the training pairs
    # (experiments.company_readout). Measured: 2.44 h, 87.2 / 74.1 / 84.3 / 85.0%, level with -early; the readout
    # still heard nothing at 33.5%: what it missed were the shapes of held-out colour-shape pairs, which the
    # first-sight head never finds (experiments.held_out_sight; tiny-lean-hearing-card.json).
    "tiny-lean-hearing": Recipe(preset="tiny", stages=(
        *EVEN_STAGES[:2], replace(EVEN_STAGES[2], first_sight_company=True, first_sight_hearing=True),
        replace(LEAN_BIND_STAGE, first_sight_company=True, first_sight_hearing=True))),
    # tiny-lean-hearing whose last stage also counts the plays the hearing head hears into the sounds'
    # first-sight tokens (decoder.first_sight_onsets): count_sound on world:long trailed test by 22.5
    # points, the decoder counting plays among the window's snippets (experiments.count_errors). Measured:
    # 2.43 h, 88.5 / 76.2 / 86.4 / 83.9%, count_sound 91.8% on test and 83.6% on long; sound_of on long still
    # 16 points under test (tiny-lean-counting-card.json).
    "tiny-lean-counting": Recipe(preset="tiny", stages=(
        *EVEN_STAGES[:2], replace(EVEN_STAGES[2], first_sight_company=True, first_sight_hearing=True),
        replace(LEAN_BIND_STAGE, first_sight_company=True, first_sight_hearing=True, first_sight_onsets=True))),
    # tiny-lean-counting whose last stage points one decoder head at the asked shape's first-sight token
    # while a `sound_of` answer is written (--read-kinds sound_of): that token's company named the right
    # sound for 85% of the long questions, the decoder for 57%, and one head of its last layer put a median
    # 2% of its attention on the token (experiments.company_readout). Measured: 2.43 h, 89.1 / 75.4 / 87.1 /
    # 85.2%, sound_of 79.9% on test and 80.0% on long, the head 99% on the token; count_sound on long 11.3
    # points under test (tiny-lean-read-sound-card.json).
    "tiny-lean-read-sound": Recipe(preset="tiny", stages=(
        *EVEN_STAGES[:2], replace(EVEN_STAGES[2], first_sight_company=True, first_sight_hearing=True),
        replace(LEAN_BIND_STAGE, first_sight_company=True, first_sight_hearing=True, first_sight_onsets=True,
                first_sight_read=0.2, read_kinds="sound_of"))),
    # tiny-lean-counting whose last stage lets every decoder layer add what the tokens of the classes a
    # question names hold, picked by the first-sight pointer (decoder.first_sight_lookup): read by attention
    # alone, the first-sight tokens answered `sound_of` 41% right on test and 52% on long where their
    # company held the answer 85% of the time (experiments.company_readout). Measured: 88.2 / 75.3 / 85.8 /
    # 82.2%, sound_of on long 60.0%, unchanged: the read loss did what this did not (tiny-lean-lookup-card.json).
    "tiny-lean-lookup": Recipe(preset="tiny", stages=(
        *EVEN_STAGES[:2], replace(EVEN_STAGES[2], first_sight_company=True, first_sight_hearing=True),
        replace(LEAN_BIND_STAGE, first_sight_company=True, first_sight_hearing=True, first_sight_onsets=True,
                first_sight_lookup=True))),
    # tiny-lean-read-sound whose read loss also points count_sound and who_made answers at the token of the
    # sound their question names: on long, count_sound trailed test by 11.3 points there, the counter
    # in the sound's token right for 89.5% of the questions and the decoder for 89.1% of those
    # (experiments.count_errors). Measured: 2.45 h, 88.2 / 75.4 / 86.4 / 84.2%, every target of the
    # understanding issue met on its card; long count_sound 8.6 and sound_of 7.7 points under test
    # (tiny-lean-read-named-card.json).
    "tiny-lean-read-named": Recipe(preset="tiny", stages=(
        *EVEN_STAGES[:2], replace(EVEN_STAGES[2], first_sight_company=True, first_sight_hearing=True),
        replace(LEAN_BIND_STAGE, first_sight_company=True, first_sight_hearing=True, first_sight_onsets=True,
                first_sight_read=0.2, read_kinds="sound_of,count_sound,who_made"))),
    # tiny-lean-read-named with the sounds' tokens read by the decoder's other head: one head reading both
    # cost test who_made 9.1 points and long sound_of 10.0 against tiny-lean-read-sound, whose head read
    # shapes alone for sound_of. Measured: 2.48 h, 88.8 / 75.4 / 87.8 / 84.6%, every target met on its
    # card; test who_made 81.1%, long sound_of 77.3% and count_sound 5.7 points under test (the bundled
    # model's card, streamer/checkpoints/tiny/card.json).
    "tiny-lean-read-apart": Recipe(preset="tiny", stages=(
        *EVEN_STAGES[:2], replace(EVEN_STAGES[2], first_sight_company=True, first_sight_hearing=True),
        replace(LEAN_BIND_STAGE, first_sight_company=True, first_sight_hearing=True, first_sight_onsets=True,
                first_sight_read=0.2, read_kinds="sound_of,count_sound,who_made", read_sounds_apart=True))),
}

# The recipe of the bundled model (streamer/checkpoints/tiny): every target of the understanding
# issue on its card, in about 2.5 hours on 2 CPU cores. The 24 stages of `tiny` score higher but
# take 19.1 h (streamer/checkpoints/tiny-24).
BUNDLED_RECIPE = "tiny-lean-read-apart"


def stage_dir(out: Path, index: int) -> Path:
    return out / f"stage{index + 1}"


def stage_progress(run: Path) -> int | None:
    """Steps a stage's run folder has reached (None: not started)."""
    latest = checkpointing.latest_checkpoint(run) if run.exists() else None
    return None if latest is None else int(checkpointing.read_trainer_state(latest)["step"])


def stage_record(run: Path) -> dict[str, Any]:
    """A finished stage as the card tells it: its command, steps and wall time."""
    latest = checkpointing.latest_checkpoint(run)
    card = checkpointing.read_card(latest)
    return {"run": run.name, "command": card.get("command"), "steps": card.get("steps"),
            "wall_seconds": card.get("wall_seconds")}


def recipe_record(name: str, command: str, runs: Sequence[Path]) -> dict[str, Any]:
    """What the exported card says of the whole recipe."""
    stages = [stage_record(run) for run in runs]
    return {"name": name, "command": command, "stages": stages,
            "wall_seconds": round(sum(s["wall_seconds"] or 0.0 for s in stages), 1)}


@dataclass
class RecipeRun:
    """Runs a recipe into `out`, skipping what is done; `run` runs one training command."""

    name: str
    recipe: Recipe
    out: Path
    processes: int = 2
    threads: int = 1
    dry_run: bool = False
    run: Callable[[list[str], dict[str, str]], int] = field(default=lambda cmd, env: subprocess.call(cmd, env=env))
    say: Callable[[str], None] = print

    def __call__(self) -> int:
        recipe = self.recipe
        started = time.perf_counter()
        for index, stage in enumerate(recipe.stages):
            reached = stage_progress(stage_dir(self.out, index))
            if reached is not None and reached >= stage.steps:
                self.say(f"stage {index + 1}/{len(recipe.stages)}: done ({reached} steps)")
                continue
            command = recipe.train_command(index, self.out, self.processes, self.threads, resume=reached is not None)
            what = "train" if reached is None else f"resume at step {reached}"
            self.say(f"stage {index + 1}/{len(recipe.stages)}: {what}\n  {' '.join(command)}")
            if self.dry_run:
                continue
            env = dict(os.environ, OMP_NUM_THREADS=str(self.threads))
            code = self.run(command, env)
            if code != 0:
                self.say(f"stage {index + 1} stopped (exit {code}); run the same command again to continue it")
                return code
        if self.dry_run:
            self.say(f"then: export {stage_dir(self.out, len(recipe.stages) - 1)} to {self.out / EXPORTED} and "
                     f"evaluate {', '.join(recipe.eval_splits)} ({recipe.eval_clips} clips each) into its card")
            return 0
        self._export(recipe)
        self._evaluate(recipe)
        self.say(f"recipe {self.name} finished in {time.perf_counter() - started:.0f} s; the model is in "
                 f"{self.out / EXPORTED} (its card holds every stage and the evaluation)")
        return 0

    def _export(self, recipe: Recipe) -> None:
        from training.export import export

        model = self.out / EXPORTED
        if (model / WEIGHTS).exists():
            self.say(f"export: done ({model})")
            return
        last = stage_dir(self.out, len(recipe.stages) - 1)
        self.say(f"export: {last} -> {model}")
        card = export(last, model, "float16", calibrate_watch=recipe.calibrate_watch, average_last=recipe.average_last)
        card["recipe"] = recipe_record(self.name, f"streamer recipe {self.name} --out {self.out}",
                                       [stage_dir(self.out, i) for i in range(len(recipe.stages))])
        checkpointing.write_json_atomic(model / CARD, card)

    def _evaluate(self, recipe: Recipe) -> None:
        from training import evaluate

        model = self.out / EXPORTED
        card = checkpointing.read_card(model)
        if all(split in card.get("evaluation", {}) for split in recipe.eval_splits):
            self.say("evaluation: done")
            return
        argv = [str(model), "--clips", str(recipe.eval_clips), "--card", "--align", "--threads",
                str(self.processes * self.threads)]
        for split in recipe.eval_splits:
            argv += ["--data", split]
        self.say("evaluation: streamer eval " + " ".join(argv))
        parser = argparse.ArgumentParser()
        evaluate.add_arguments(parser)
        if evaluate.main(parser.parse_args(argv)) != 0:
            raise RuntimeError(f"the evaluation of {model} failed; run the same command again to retry it")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", default=BUNDLED_RECIPE,
                        help=f"the recipe: {', '.join(RECIPES)} (default {BUNDLED_RECIPE}, the bundled model's)")
    parser.add_argument("--out", type=Path, required=True, help="folder of the stages' runs and the exported model")
    parser.add_argument("--processes", type=int, default=2,
                        help="data-parallel training processes (torchrun when more than 1; default 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (default 1)")
    parser.add_argument("--dry-run", action="store_true", help="print the stages' commands and what is done")


def main(args: argparse.Namespace) -> int:
    if args.processes < 1 or args.threads < 1:
        print("streamer recipe: --processes and --threads take 1 or more", file=sys.stderr)
        return 2
    try:
        return RecipeRun(args.name, Recipe.from_name(args.name), args.out, args.processes, args.threads, args.dry_run)()
    except (ValueError, RuntimeError) as err:
        print(f"streamer recipe: {err}", file=sys.stderr)
        return 2
