"""The `streamer` command line: one subcommand per job, each in its own module.

This package is the top layer (ARCHITECTURE.md, "Layers"): it may import the runtime and
the training package (the world for `demo` and `run world:SEED`, the training commands),
which the runtime under `streamer/` never does. Each subcommand module exposes
`add_arguments(parser)` and `main(args) -> int`. Only the subcommand being run is
imported, so `streamer --help` and `streamer run --help` never import torch; a subcommand
whose module imports torch at its top (model-info, the training ones) pays for it only
when it is the one named.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("streamer.cli.demo", "stream a world clip through the engine and print a live timeline"),
    "model-info": ("streamer.cli.model_info", "parameters per component and state bytes per stream"),
    "run": ("streamer.cli.run", "stream a file, camera, mic, lavfi or world source and answer questions"),
    "serve": ("streamer.serve.command", "the live server: browser page, WebRTC and WHIP ingest, answers as you stream"),
    "cluster": ("streamer.cli.cluster", "the engine workers of a Ray cluster: device, sessions, speed, lag"),
    "train": ("training.train", "train a model on the synthetic world or a dataset folder (also under torchrun)"),
    "eval": ("training.evaluate", "exact-match accuracy of a checkpoint per question kind, by streaming"),
    "recipe": ("training.recipe", "train a model (by default the bundled one's recipe) from nothing: every stage, the export and the evaluation"),
    "export": ("training.export", "copy a checkpoint for shipping with float16 or bfloat16 weights"),
    "plot-run": ("training.plot_run", "draw a training run's loss and accuracy curves to a PNG"),
    "world": ("training.world_command", "render world clips to media files with annotations"),
}

INTERRUPTED = 130  # the shell's code for a command ended by Ctrl-C (128 + SIGINT)


class _Version(argparse.Action):
    """`--version`, looked up only when asked for (the package metadata costs an import)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs) -> None:
        super().__init__(option_strings, dest=dest, nargs=0, help="print the streamer version and exit")

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            text = version("streamer")
        except PackageNotFoundError:
            text = "unknown (not installed; run `pip install -e .`)"
        print(f"streamer {text}")
        parser.exit()


def _named_command(argv: list[str]) -> str | None:
    """The subcommand in `argv`: its first word that is not an option (the top level takes no values)."""
    return next((word for word in argv if not word.startswith("-")), None)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only `command`'s module is imported to add its arguments."""
    parser = argparse.ArgumentParser(
        prog="streamer",
        description="Real-time audio-video understanding: stream video and audio, ask questions.",
    )
    parser.add_argument("--version", action=_Version)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(_module=module_name)
        if name == command:
            importlib.import_module(module_name).add_arguments(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        parser = build_parser(_named_command(argv))
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        return int(importlib.import_module(args._module).main(args) or 0)
    except KeyboardInterrupt:  # Ctrl-C while starting up, or after a command's own handling
        print("streamer: interrupted", file=sys.stderr)
        return INTERRUPTED
