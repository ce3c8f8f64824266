"""Where a training step's time goes: rendering the clips against the step itself, for a recipe's
first stage's flags as they are and with its costliest parts switched off, on one process of one thread.

    python -m experiments.step_cost --recipe tiny-fast --steps 25

Each variant trains `steps` steps from a fresh model (clip lengths fixed at the stage's longest,
one rank's share of the batch and of the first-sight drills) and reports seconds per step, the first step left out."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from experiments.asking import RESULTS, write_report
from training import train
from training.recipe import RECIPES
from training.machine import machine_description
from training.trainer import Trainer

# variant name -> (flag to change, new value or None to drop it)
VARIANTS: dict[str, list[tuple[str, str | None]]] = {
    "as the stage": [],
    "latent window 8": [("--latent-window", "8")],
    "no first-sight drills": [("--first-sight-drills", None)],
    "latent window 8, no first-sight drills": [("--latent-window", "8"), ("--first-sight-drills", None)],
}


def with_flags(command: list[str], changes: list[tuple[str, str | None]]) -> list[str]:
    """`command` (a training.train argument list) with each flag set to a value or dropped."""
    command = list(command)
    for flag, value in changes:
        if flag not in command:
            raise ValueError(f"{flag} is not among the stage's flags")
        i = command.index(flag)
        takes_value = i + 1 < len(command) and not command[i + 1].startswith("--")
        if value is None:
            del command[i:i + 1 + takes_value]
        else:
            command[i + 1] = value
    return command


def one_rank(command: list[str], ranks: int) -> list[str]:
    """A training command as one of `ranks` data-parallel ranks sees it: its share of the batch
    and of the first-sight drills, clip lengths at their longest from the first step."""
    command = list(command)
    for shared in ("--batch", "--first-sight-drills"):  # split between the ranks (clip drills go with the clips)
        if shared in command:
            i = command.index(shared)
            command[i + 1] = str(int(command[i + 1]) // ranks)
    if "--curriculum" in command:
        command = with_flags(command, [("--curriculum", None)])
    return command


def step_cost(command: list[str], steps: int) -> dict[str, float]:
    """Seconds per step spent rendering clips and in the training step, over `steps` steps (the
    first, which warms up, left out)."""
    if steps < 2:
        raise ValueError("step_cost needs 2 or more steps: the first is left out")
    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    with tempfile.TemporaryDirectory() as out:
        args = parser.parse_args(with_flags(command, [("--out", out)]))
        trainer = Trainer(train.config_from_args(args))
        try:
            render = stepping = 0.0
            for step in range(steps):
                started = time.perf_counter()
                samples = trainer._load_step(step)
                rendered = time.perf_counter()
                trainer._train_step(step, samples)
                if step:
                    render += rendered - started
                    stepping += time.perf_counter() - rendered
        finally:
            trainer.close()
    n = steps - 1
    return {"render clips s": round(render / n, 3), "train step s": round(stepping / n, 3),
            "render share": round(render / (render + stepping), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="tiny-fast", choices=sorted(RECIPES))
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--ranks", type=int, default=2, help="the recipe's data-parallel ranks (its batch is split)")
    parser.add_argument("--out", type=Path, help="report file (default: results/understanding/step-cost.json)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    recipe = RECIPES[args.recipe]
    full = recipe.train_command(0, Path("unused"), processes=1, threads=1, resume=False)
    command = one_rank(full[3:], args.ranks)
    report = {"recipe": args.recipe, "stage": 1, "steps": args.steps, "ranks": args.ranks,
              "machine": machine_description(torch.device("cpu"), 1), "command": command,
              **{name: step_cost(with_flags(command, changes), args.steps) for name, changes in VARIANTS.items()
                 if all(flag in command for flag, _ in changes)}}
    write_report(report, args.out or RESULTS / "step-cost.json")


if __name__ == "__main__":
    main()
