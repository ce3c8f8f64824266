"""`streamer model-info`: parameters per component and state bytes per stream for a preset
or a checkpoint. Presets are built on the meta device, so even `paper` (~3B) costs no memory."""

from __future__ import annotations

import argparse
import sys

import torch

from model import PRESET_NAMES, ModelConfig, StreamerModel
from streamer.watch import SnippetIndex

COMPONENTS = ("encoder", "combiner", "latent", "decoder")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--preset", choices=PRESET_NAMES, default="tiny", help="model preset (default: tiny)")
    group.add_argument("--checkpoint", help="checkpoint folder (model.safetensors + config.json + tokenizer.json)")
    parser.add_argument("--combiner", choices=("ttm", "transformer"), help="override the combiner kind")
    parser.add_argument("--batch-size", type=int, default=1, help="streams per batch for the state size")


def component_parameters(model: StreamerModel) -> dict[str, int]:
    """Parameter count per top-level component, plus the total."""
    present = COMPONENTS + (("align",) if model.can_align else ())
    counts = {name: sum(p.numel() for p in getattr(model, name).parameters()) for name in present}
    counts["total"] = sum(p.numel() for p in model.parameters())
    return counts


def describe(model: StreamerModel, batch_size: int = 1) -> str:
    cfg = model.cfg
    lines = [f"model {cfg.name!r}: combiner={cfg.combiner.kind}, "
             f"{cfg.media.width}x{cfg.media.height} @ {cfg.media.fps:g} fps, "
             f"{cfg.media.frames_per_snippet} frames per snippet ({cfg.media.snippet_seconds:g} s), "
             f"n={cfg.snippet_tokens} tokens per snippet, m={cfg.combiner.out_tokens}, W={cfg.latent.window}",
             f"alignment head: {cfg.align.dim} dimensions, watch threshold {cfg.align.watch_threshold:g}, moment "
             f"index {SnippetIndex.bytes_per_snippet(cfg.align.dim)} bytes a snippet" if model.can_align
             else "alignment head: none (this model cannot watch or search)",
             "", f"{'component':<12}{'parameters':>16}"]
    for name, count in component_parameters(model).items():
        lines.append(f"{name:<12}{count:>16,}  ({count / 1e6:,.1f} M)")
    lines += ["", f"state per batch of {batch_size}:"]
    for name, (shape, dtype) in model.state_spec(batch_size).items():
        lines.append(f"  {name:<12}{str(tuple(shape)):<28}{str(dtype).removeprefix('torch.')}")
    total = model.state_nbytes(batch_size)
    lines.append(f"  {'total':<12}{total:,} bytes ({total / 1024:,.1f} KiB)")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        print("error: --batch-size must be at least 1", file=sys.stderr)
        return 2
    try:
        if args.checkpoint:
            model = StreamerModel.load(args.checkpoint)
            if args.combiner and args.combiner != model.cfg.combiner.kind:
                raise ValueError("--combiner cannot change a trained checkpoint's combiner")
        else:
            cfg = ModelConfig.from_name(args.preset)
            if args.combiner:
                cfg.combiner.kind = args.combiner
            with torch.device("meta"):
                model = StreamerModel(cfg)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(describe(model, args.batch_size))
    return 0
