"""How fast the world renders: clips/s and snippets/s at the tiny preset's 64×64, one process.

    .venv/bin/python -m bench.world [--clips 300] [--threads 1] [--out bench/results/world.json]

Training renders clips in its data workers while the model trains, so a rate well above the
trainer's clips/s (about 10 on 2 cores) means training never waits for data.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from tqdm import tqdm

from training.world.clip import World, WorldConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (rendering is numpy)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "world.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    world = World(WorldConfig.preset("train"))
    world.clip(0)  # warm-up: imports and first allocations
    snippets = frames = 0
    started = time.perf_counter()
    for index in tqdm(range(1, args.clips + 1), desc="rendering world clips", unit="clip"):
        clip = world.clip(index)
        snippets += len(clip.frames) // clip.spec.frames_per_snippet
        frames += len(clip.frames)
    wall = time.perf_counter() - started
    spec = world.config.spec
    results = {
        "cpu": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "resolution": [spec.height, spec.width],
        "fps": spec.fps,
        "snippets_per_clip": list(world.config.snippets),
        "clips": args.clips,
        "wall_s": wall,
        "clips_per_s": args.clips / wall,
        "snippets_per_s": snippets / wall,
        "frames_per_s": frames / wall,
    }
    print(json.dumps(results, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
