"""The `streamer` command line: one subcommand per job, each in its own module.

This package is the top layer (ARCHITECTURE.md, "Layers"): it may import the runtime and
the training package (the world for `demo` and `run world:SEED`, the training commands),
which the runtime under `streamer/` never does. Each subcommand module exposes
`add_arguments(parser)` and `main(args) -> int` and imports what it runs only inside
`main`, so `streamer --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("streamer.cli.demo", "stream a world clip through the engine and print a live timeline"),
    "model-info": ("streamer.cli.model_info", "parameters per component and state bytes per stream"),
    "run": ("streamer.cli.run", "stream a file, camera, mic, lavfi or world source and answer questions"),
    "serve": ("streamer.serve.command", "the live server: browser page, WebRTC and WHIP ingest, answers as you stream"),
    "train": ("training.train", "train a model on the synthetic world or a dataset folder (also under torchrun)"),
    "eval": ("training.evaluate", "exact-match accuracy of a checkpoint per question kind, by streaming"),
    "export": ("training.export", "copy a checkpoint for shipping with float16 or bfloat16 weights"),
    "plot-run": ("training.plot_run", "draw a training run's loss and accuracy curves to a PNG"),
    "world": ("training.world_command", "render world clips to media files with annotations"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamer",
        description="Real-time audio-video understanding: stream video and audio, ask questions.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(_module=module_name)
        importlib.import_module(module_name).add_arguments(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return int(importlib.import_module(args._module).main(args) or 0)
