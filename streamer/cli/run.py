"""`streamer run SOURCE`: stream any source through the engine and answer questions.

Questions come from `--ask "..." --at SECONDS` pairs (answered exactly as of that stream
time) or, with `--interactive`, from the terminal while the stream runs.
"""

from __future__ import annotations

import argparse
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

_SOURCE_HELP = (
    "a media file path, `camera[:DEVICE]`, `mic`, `lavfi:GRAPH` (e.g. lavfi:testsrc=size=64x64:rate=25) "
    "or `world:SEED` (clip SEED of the synthetic world's test split)"
)


@dataclass(frozen=True)
class TimedQuestion:
    text: str
    at: float | None  # stream seconds; None: at the end of the stream


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="SOURCE", help=_SOURCE_HELP)
    parser.add_argument("--ask", action="append", default=[], metavar="QUESTION",
                        help="a question to answer (repeat for more); pair with --at")
    parser.add_argument("--at", action="append", type=float, default=[], metavar="SECONDS",
                        help="stream time for the --ask of the same position (default: end of stream)")
    parser.add_argument("--interactive", action="store_true",
                        help="read questions from the terminal while the stream runs (Ctrl-D ends)")
    parser.add_argument("--checkpoint", type=Path, default=None, help="checkpoint folder (default: bundled tiny)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    parser.add_argument("--realtime", action="store_true", help="pace a file at its own speed, like a live source")
    parser.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                        help="stop after this much stream time (live sources otherwise run until Ctrl-C)")
    parser.add_argument("--resume", type=Path, default=None, metavar="STATE", help="continue a saved session")
    parser.add_argument("--save", type=Path, default=None, metavar="STATE", help="save the session at the end")
    parser.add_argument("--quiet", action="store_true", help="print answers only, no per-snippet lines")


def pair_questions(asks: list[str], ats: list[float]) -> list[TimedQuestion]:
    """--ask/--at pairs by position; questions beyond the last --at are asked at the end."""
    if len(ats) > len(asks):
        raise ValueError(f"{len(ats)} --at values for {len(asks)} --ask questions; give one --ask per --at")
    if any(at < 0 for at in ats):
        raise ValueError("--at takes stream seconds >= 0")
    return [TimedQuestion(text, ats[i] if i < len(ats) else None) for i, text in enumerate(asks)]


def open_source(text: str, *, realtime: bool = False):
    """Turn a SOURCE argument into a source object (see `_SOURCE_HELP`)."""
    from streamer import sources

    kind, _, rest = text.partition(":")
    if kind == "camera":
        return sources.Camera(rest) if rest else sources.Camera()
    if kind == "lavfi":
        if not rest:
            raise ValueError("lavfi needs a filter graph, e.g. lavfi:testsrc=size=64x64:rate=25")
        return sources.Camera(rest, format="lavfi")
    if text == "mic":
        return sources.Microphone()
    if kind == "world":
        try:
            seed = int(rest)
        except ValueError:
            raise ValueError(f"world sources take an integer seed, e.g. world:7 (got {text!r})") from None
        from training.world.clip import World, WorldConfig

        clip = World(WorldConfig.preset("test")).clip(seed)
        print(f"world clip {seed} of the test split: {clip.duration:.2f} s; its questions and answers:")
        for q in clip.questions:
            print(f"  at {q.t_ask:5.2f}s  {q.text!r} -> {q.answer!r}")
        return clip.source()
    path = Path(text)
    if not path.exists():
        raise ValueError(f"{text!r} is not a file, nor camera[:DEVICE], mic, lavfi:GRAPH or world:SEED")
    return sources.File(path, realtime=realtime)


def _print_answer(label: str, answer) -> None:
    print(f"{label} @ {answer.t:6.2f}s  {answer.question!r} -> {answer.text!r}  ({answer.latency_ms:.0f} ms)",
          flush=True)


def _interactive(session, done: threading.Event) -> None:
    """Answer terminal questions, token by token, until EOF (Ctrl-D)."""
    print("ask questions while the stream runs (Ctrl-D to stop):", flush=True)
    for line in sys.stdin:
        question = line.strip()
        if not question:
            continue
        print(f"[{session.t:6.2f}s] ", end="", flush=True)
        for piece in session.ask_stream(question):
            print(piece, end="", flush=True)
        print(flush=True)
    done.set()


def main(args: argparse.Namespace) -> int:
    from streamer.engine import Engine

    try:
        questions = pair_questions(args.ask, args.at)
        engine = Engine.load(args.checkpoint, device=args.device)
        session = engine.load_session(args.resume) if args.resume else engine.session()
        source = open_source(args.source, realtime=args.realtime)
    except (ValueError, OSError) as exc:  # bad arguments, missing checkpoint, refused state, unopenable source
        print(f"streamer run: {exc}", file=sys.stderr)
        return 2
    with engine:
        timed = sorted((q for q in questions if q.at is not None), key=lambda q: q.at)
        at_end = [q for q in questions if q.at is None]
        stdin_done = threading.Event()
        if args.interactive:
            threading.Thread(target=_interactive, args=(session, stdin_done), daemon=True).start()
        updates = session.stream(source)
        try:
            for update in updates:
                if not args.quiet and not args.interactive:
                    print(f"#{update.index:<5d} {update.t0:7.2f}-{update.t1:7.2f}s  latency {update.latency_ms:6.1f} ms"
                          f"  batch {update.batch_size}  dropped {update.dropped_total}  lag {update.lag_s:.2f}s",
                          flush=True)
                while timed and update.t1 >= timed[0].at:
                    _print_answer("answer", session.ask(timed.pop(0).text, at=update))
                if args.duration is not None and update.t1 >= args.duration:
                    break
        except KeyboardInterrupt:
            print("stopped", file=sys.stderr)
        finally:
            updates.close()
        for question in timed + at_end:
            _print_answer("answer", session.ask(question.text))
        if args.interactive and not stdin_done.is_set():
            print("stream ended; still answering from the final state (Ctrl-D to quit)", flush=True)
            stdin_done.wait()
        if args.save:
            print(f"saved session to {session.save(args.save)}", flush=True)
        print(f"{session.steps} snippets, {session.t:.2f} s of stream, {session.dropped} dropped", flush=True)
    return 0
