"""`streamer world`: render world clips to media files with annotations.jsonl."""

from __future__ import annotations

import argparse
import sys

from training.config import snippet_range
from training.world.clip import SPLITS, WorldConfig
from training.world.media_files import FORMATS, write_dataset
from training.world.vocab import QUESTION_KINDS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="folder to write clips/ and annotations.jsonl into")
    parser.add_argument("--clips", type=int, default=100, help="number of clips (default 100)")
    parser.add_argument("--seed", type=int, default=0, help="index of the first clip in the split (default 0)")
    parser.add_argument("--split", choices=list(SPLITS), default="train",
                        help="train, test, compositional (held-out pairs) or long (4x longer); "
                             "splits never share seeds (default train)")
    parser.add_argument("--snippets", type=snippet_range, default=None,
                        help="clip length range in snippets, e.g. 4-16 (default: the split's)")
    parser.add_argument("--questions", type=int, default=None, help="questions per clip (default 8)")
    parser.add_argument("--kinds", default=None,
                        help=f"comma-separated question kinds (default all: {','.join(QUESTION_KINDS)})")
    parser.add_argument("--format", choices=list(FORMATS), default="mp4",
                        help="mp4 (H.264 + AAC) or webm (VP8 + Opus); default mp4")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    overrides = {}
    if args.snippets is not None:
        overrides["snippets"] = args.snippets
    if args.questions is not None:
        overrides["questions_per_clip"] = args.questions
    if args.kinds:
        overrides["kinds"] = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    try:
        config = WorldConfig.preset(args.split, **overrides)
        annotations = write_dataset(args.out, config, args.clips, first=args.seed, fmt=args.format,
                                    progress=not args.quiet)
    except (ValueError, OSError) as error:
        print(f"streamer world: {error}", file=sys.stderr)
        return 2
    print(f"wrote {args.clips} {args.split} clips ({args.format}) and {annotations}")
    return 0
