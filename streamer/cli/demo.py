"""`streamer demo`: world clips through the bundled model, a live timeline and a scored quiz.

For every snippet it prints what is really on screen and heard (from the world's
timeline) beside what the model says is happening, and at each of the world's question
times it asks the question, marking the answer right or wrong against the world's own
answer. No hardware, no downloads: the world is rendered from a seed.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

RIGHT, WRONG = "✓", "✗"
DESCRIBE = "what is happening?"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clips", type=int, default=3, help="how many world clips to stream (default 3)")
    parser.add_argument("--seed", type=int, default=0,
                        help="index of the first clip in the split, 0 or more (default 0)")
    parser.add_argument("--split", default="test", help="world split: test, compositional, long, train")
    parser.add_argument("--checkpoint", type=Path, default=None, help="checkpoint folder (default: bundled tiny)")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")


def _heard(clip, t0: float, t1: float) -> str:
    sounds = [s.sound for s in clip.timeline.sounds if s.overlap(t0, t1) > 0]
    return ", ".join(dict.fromkeys(sounds)) or "silence"


def _mark(ok: bool) -> str:
    return RIGHT if ok else WRONG


def run_clip(engine, clip, tally: Counter) -> None:
    """Stream one clip, printing the timeline and answering its questions at their times."""
    questions = sorted(clip.questions, key=lambda q: q.ask_snippets)
    print(f"\nclip {clip.seed}: {clip.n_snippets} snippets, {clip.duration:.2f} s, {len(questions)} questions")
    print(f"{'#':>3}  {'time (s)':<11}  {'on screen (world)':<38} {'heard (world)':<14} model: {DESCRIBE}")
    session = engine.session()
    for update in session.stream(clip.source()):
        truth = clip.answer("describe", update.t1)
        said = session.ask(DESCRIBE, at=update).text
        tally["describe_right"] += said == truth
        tally["describe_total"] += 1
        print(f"{update.index:>3}  {update.t0:5.2f}-{update.t1:<5.2f}  {truth:<38.38} "
              f"{_heard(clip, update.t0, update.t1):<14.14} {said:.40}  {_mark(said == truth)}", flush=True)
        while questions and questions[0].ask_snippets == update.index + 1:
            question = questions.pop(0)
            answer = session.ask(question.text, at=update)
            ok = answer.text == question.answer
            tally["right"] += ok
            tally["total"] += 1
            tally[f"{question.kind}:right"] += ok
            tally[f"{question.kind}:total"] += 1
            print(f"     Q @ {answer.t:5.2f}s  {question.text:<44} -> {answer.text!r:<22} "
                  f"world: {question.answer!r:<22} {_mark(ok)}  ({answer.latency_ms:.0f} ms)", flush=True)
    session.close()


def media_timeline(world, first: int, clips: int) -> None:
    """Without a model: stream world clips through the live source and the chunker, per snippet."""
    import time

    import numpy as np

    from streamer.chunker import Chunker

    for index in range(first, first + clips):
        clip = world.clip(index)
        with clip.source() as source:
            chunker = Chunker(clip.spec)
            print(f"\nclip {clip.seed}: {clip.n_snippets} snippets, {clip.duration:.2f} s")
            print(f"{'#':>3}  {'time (s)':<11}  {'frames':>6} {'samples':>7}  {'mean RGB':<13} {'RMS dBFS':>8}  "
                  f"{'ms':>5}  on screen (world)")
            started = time.perf_counter()
            for snippet in chunker.snippets(source):
                took_ms = 1e3 * (time.perf_counter() - started)
                rgb = snippet.video.reshape(-1, 3).mean(axis=0)
                rms = float(np.sqrt(np.mean(snippet.audio.astype(np.float64) ** 2)))
                db = 20 * np.log10(max(rms, 1e-9))
                fills = ("V" if snippet.video_filled else "") + ("A" if snippet.audio_filled else "")
                print(f"{snippet.index:>3}  {snippet.t0:5.2f}-{snippet.t1:<5.2f}  {len(snippet.video):>6} "
                      f"{len(snippet.audio):>7}  {'%3.0f %3.0f %3.0f' % tuple(rgb):<13} {db:8.1f}  "
                      f"{took_ms:5.1f}  {clip.answer('describe', snippet.t1)} {fills}", flush=True)
                started = time.perf_counter()
            print(f"chunker: {chunker.stats}")


def main(args: argparse.Namespace) -> int:
    from streamer.engine import CheckpointNotFound, Engine
    from training.world.clip import World, WorldConfig

    if args.clips < 1:
        print("streamer demo: --clips must be at least 1", file=sys.stderr)
        return 2
    try:
        world = World(WorldConfig.preset(args.split))
        for index in (args.seed, args.seed + args.clips - 1):  # the first and last clip exist
            world.seed(index)
        engine = Engine.load(args.checkpoint, device=args.device)
    except CheckpointNotFound as exc:
        if args.checkpoint is not None:
            print(f"streamer demo: {exc}", file=sys.stderr)
            return 2
        print(f"streamer demo: no trained model is bundled yet ({exc}).\n"
              "Showing the media pipeline instead: world clips through the live source and the chunker.")
        media_timeline(world, args.seed, args.clips)
        return 0
    except ValueError as exc:
        print(f"streamer demo: {exc}", file=sys.stderr)
        return 2
    tally: Counter = Counter()
    with engine:
        media = engine.media
        print(f"streamer demo: {args.clips} clip(s) of the {args.split!r} world split; model fingerprint "
              f"{engine.fingerprint[:12]}, {media.width}x{media.height} @ {media.fps:g} fps, "
              f"snippets of {media.snippet_seconds:g} s, state {engine.model.state_nbytes(1) / 1024:.0f} KiB per stream")
        for index in range(args.seed, args.seed + args.clips):
            run_clip(engine, world.clip(index), tally)
        stats = engine.stats
    total, right = tally["total"], tally["right"]
    print(f"\nscore: {right}/{total} questions right ({100 * right / max(total, 1):.0f}%); "
          f"'{DESCRIBE}' right on {tally['describe_right']}/{tally['describe_total']} snippets")
    kinds = sorted({key.split(":")[0] for key in tally if key.endswith(":total")})
    print("by kind: " + ", ".join(f"{k} {tally[k + ':right']}/{tally[k + ':total']}" for k in kinds))
    print(f"engine: {stats['snippets']} snippets in {stats['busy_s']:.2f} s of model time "
          f"({1e3 * stats['busy_s'] / max(stats['snippets'], 1):.1f} ms per snippet)")
    return 0
