"""Streams spread over engine workers on a Ray cluster, with the same code as in one process.

    python examples/cluster.py [--workers 2] [--streams 4] [--address auto]

Without --address a Ray cluster is started on this machine (127.0.0.1 only) and stopped at
the end. Each stream is a world clip; every session then answers its clip's questions, and
the table says which worker held it.
"""

from __future__ import annotations

import argparse
from concurrent.futures import ThreadPoolExecutor

import streamer
from training.world.clip import World, WorldConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--address", default=None, help="a running Ray cluster: auto or ray://HOST:PORT")
    args = parser.parse_args()
    world = World(WorldConfig.preset("test", questions_per_clip=2))
    clips = [world.clip(i) for i in range(args.streams)]
    with streamer.connect(args.address, workers=args.workers) as cluster:
        sessions = [cluster.session() for _ in clips]

        def follow(session, clip):
            for _ in session.stream(clip.source()):
                pass
            return [(q.text, session.ask(q.text).text, q.answer) for q in clip.questions]

        with ThreadPoolExecutor(len(sessions)) as pool:
            answered = list(pool.map(follow, sessions, clips))
        for session, answers in zip(sessions, answered):
            for question, said, truth in answers:
                print(f"{session.worker:9} {question:40} {said:14} (truth: {truth})")
        for row in cluster.status():
            print(f"{row['name']}: {row['sessions']} sessions, {row['snippets']} snippets, "
                  f"mean batch {row['mean_batch']:.2f}")


if __name__ == "__main__":
    main()
