"""Many streams on one engine: each session has its own state; the engine steps them in batches.

    python examples/many_sessions.py [--streams 8] [--checkpoint DIR]

Each stream is a different clip of the synthetic world, streamed concurrently with
`astream` on one asyncio loop; at the end every session answers its clip's last question.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from streamer import Engine
from training.world.clip import World, WorldConfig


async def follow(engine: Engine, clip) -> tuple[int, str, str, str]:
    """Stream one clip; answer its last question at its own time."""
    session = engine.session()
    source = clip.source()
    question = clip.questions[-1]
    answer = None
    async for update in session.astream(source):
        if update.index + 1 == question.ask_snippets:
            answer = await session.aask(question.text, at=update)
    session.close()
    return clip.seed, question.text, answer.text, question.answer


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--checkpoint", type=Path, default=None, help="default: the bundled tiny model")
    args = parser.parse_args()

    engine = Engine.load(args.checkpoint)
    world = World(WorldConfig.preset("test"))
    clips = [world.clip(i) for i in range(args.streams)]
    started = time.perf_counter()
    results = await asyncio.gather(*(follow(engine, clip) for clip in clips))
    wall = time.perf_counter() - started
    for seed, question, said, truth in results:
        print(f"clip {seed}: {question!r} -> {said!r} (world: {truth!r}) {'right' if said == truth else 'wrong'}")
    stats = engine.stats
    media = sum(clip.duration for clip in clips)
    print(f"{args.streams} streams, {media:.1f} s of media in {wall:.2f} s; {stats['snippets']} snippets in "
          f"{stats['steps']} batched steps (mean batch {stats['mean_batch']:.1f})")
    engine.close()


if __name__ == "__main__":
    asyncio.run(main())
