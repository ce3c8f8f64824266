"""`streamer run SOURCE`: stream any source through the engine and answer questions.

Questions come from `--ask "..."`, each timed by the `--at SECONDS` right after it
(answered exactly as of that stream time; an --ask without one is answered at the end),
or, with `--interactive`, from the terminal while the stream runs. Every --ask is checked
against the model before the stream starts, so a bad question never costs a long run.
`--watch PHRASE` prints an event each time the phrase starts to match; `--search PHRASE`
prints the best moments of the whole stream at its end (both need a checkpoint with an
alignment head, and are checked before the stream too).

However the stream ends (the source runs out, --duration is reached, Ctrl-C, an error from
the source or the engine) the run ends the same way: the state reached is saved (--save),
every question not answered yet is answered from it, and then an error, if there was one,
is reported in one line with exit code 1 (130 for Ctrl-C).
"""

from __future__ import annotations

import argparse
import sys
import threading
from dataclasses import dataclass, replace
from pathlib import Path

from streamer.cli import INTERRUPTED

SOURCE_HELP = (
    "a media file path, `camera[:DEVICE]`, `mic`, `lavfi:GRAPH` (e.g. lavfi:testsrc=size=64x64:rate=25, read as "
    "fast as the model goes unless --realtime) or `world:SEED` (clip SEED of the synthetic world's test split)"
)
STREAM_ERROR = 1  # the stream stopped on an error, or the session could not be saved


@dataclass(frozen=True)
class TimedQuestion:
    text: str
    at: float | None  # stream seconds; None: at the end of the stream


class _Ask(argparse.Action):
    """--ask QUESTION: a new question, answered at the end unless an --at follows it."""

    def __call__(self, parser, namespace, value, option_string=None) -> None:
        setattr(namespace, self.dest, [*(getattr(namespace, self.dest) or []), TimedQuestion(value, None)])


class _At(argparse.Action):
    """--at SECONDS: times the --ask right before it."""

    def __call__(self, parser, namespace, value, option_string=None) -> None:
        questions = list(getattr(namespace, self.dest) or [])
        if not questions or questions[-1].at is not None:
            parser.error(f"--at {value:g} must follow the --ask it times, e.g. --ask 'what color?' --at 3")
        if value < 0:
            parser.error(f"--at takes stream seconds >= 0, got {value:g}")
        questions[-1] = replace(questions[-1], at=value)
        setattr(namespace, self.dest, questions)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="SOURCE", help=SOURCE_HELP)
    parser.add_argument("--ask", action=_Ask, dest="questions", default=[], metavar="QUESTION",
                        help="a question to answer (repeat for more); at the end of the stream unless --at follows it")
    parser.add_argument("--at", action=_At, dest="questions", type=float, metavar="SECONDS",
                        help="stream time at which to answer the --ask right before it")
    parser.add_argument("--watch", action="append", default=[], metavar="PHRASE",
                        help="print an event each time PHRASE (e.g. 'red square', 'drum') starts to match (repeatable)")
    parser.add_argument("--search", action="append", default=[], metavar="PHRASE",
                        help="at the end of the stream, print the best moments for PHRASE (repeatable)")
    parser.add_argument("--top", type=int, default=5, metavar="K", help="moments printed per --search (default 5)")
    parser.add_argument("--interactive", action="store_true",
                        help="read questions from the terminal while the stream runs (Ctrl-D ends)")
    parser.add_argument("--checkpoint", type=Path, default=None, help="checkpoint folder (default: bundled tiny)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    parser.add_argument("--realtime", action="store_true",
                        help="pace a file, lavfi graph or world clip at its own speed, like a live source")
    parser.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                        help="stop after this much stream time, rounded up to whole snippets "
                             "(live sources otherwise run until Ctrl-C)")
    parser.add_argument("--resume", type=Path, default=None, metavar="STATE", help="continue a saved session")
    parser.add_argument("--save", default=None, metavar="STATE",
                        help="save the session when the stream ends, also when it ends early (Ctrl-C, an error)")
    parser.add_argument("--quiet", action="store_true", help="print answers only: no progress line, no summary")


def check_question(model, text: str) -> None:
    """Refuse (ValueError) an --ask the model cannot answer: blank, not UTF-8, over its byte budget."""
    if not text.strip():
        raise ValueError("--ask needs a question; got a blank one")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"--ask {text!r} is not valid UTF-8 text; check the terminal's encoding") from None
    try:
        model.question_prompt(text)
    except ValueError as exc:
        raise ValueError(f"--ask {text[:40]!r}{'...' if len(text) > 40 else ''}: {exc}") from None


def check_alignment(model, watches: list[str], searches: list[str], top: int) -> None:
    """Refuse (ValueError) --watch/--search the model cannot serve: no alignment head, a blank or
    over-long phrase, --top below 1."""
    if not (watches or searches):
        return
    if not model.can_align:
        raise ValueError("--watch and --search need a checkpoint with an alignment head; this one has none "
                         "(its config's align.dim is 0)")
    if top < 1:
        raise ValueError(f"--top takes a number of moments >= 1, got {top}")
    for option, phrases in (("--watch", watches), ("--search", searches)):
        for phrase in phrases:
            try:
                model.phrase_ids([phrase])
            except ValueError as exc:
                raise ValueError(f"{option} {phrase[:40]!r}: {exc}") from None


def _print_event(event) -> None:
    checked = "  (checked)" if event.checked else ""
    print(f"event  @ {event.t0:6.2f}s  {event.phrase!r}  score {event.score:.3f}  (snippet {event.index}){checked}",
          flush=True)


def _print_moments(session, phrase: str, top: int) -> None:
    moments = session.search(phrase, k=top)
    print(f"search {phrase!r}: " + ("nothing indexed" if not moments else f"{len(moments)} best moment(s)"), flush=True)
    for moment in moments:
        print(f"  {moment.start:7.2f}s - {moment.end:7.2f}s  score {moment.score:.3f}", flush=True)


def _print_answer(answer, note: str = "") -> None:
    print(f"answer @ {answer.t:6.2f}s  {answer.question!r} -> {answer.text!r}  ({answer.latency_ms:.0f} ms){note}",
          flush=True)


def _interactive(session, done: threading.Event) -> None:
    """Answer terminal questions, token by token, until EOF (Ctrl-D)."""
    print("ask questions while the stream runs (Ctrl-D to stop):", flush=True)
    for line in sys.stdin:
        question = line.strip()
        if not question:
            continue
        try:
            pieces = session.ask_stream(question)
            print(f"[{session.t:6.2f}s] ", end="", flush=True)
            for piece in pieces:
                print(piece, end="", flush=True)
            print(flush=True)
        except ValueError as exc:  # too long for the model, not UTF-8
            print(f"cannot ask that: {exc}", flush=True)
    done.set()


def _one_line(error: BaseException) -> str:
    """An error as one line: our own errors by message, anything else with its type."""
    text = " ".join(str(error).split())
    return text if isinstance(error, (ValueError, OSError)) else f"{type(error).__name__}: {text}"


def stream_and_answer(session, source, questions: list[TimedQuestion], *, save: str | Path | None = None,
                      quiet: bool = False, interactive: bool = False, searches: list[str] = (), top: int = 5) -> int:
    """Stream `source` into `session`, answering `questions` on time and printing the events of
    its watches; then save, answer what is left from the state reached, search the stream for
    `searches`, and return the exit code (see the module docstring)."""
    from streamer.cli.progress import Progress

    timed = sorted((q for q in questions if q.at is not None), key=lambda q: q.at)
    at_end = [q for q in questions if q.at is None]
    stdin_done = threading.Event()
    if interactive:
        threading.Thread(target=_interactive, args=(session, stdin_done), daemon=True).start()
    progress = Progress(sys.stderr, show=not (quiet or interactive))  # --interactive: the terminal is for questions
    dropped_before = session.dropped
    stopped: BaseException | None = None
    updates = session.stream(source)
    try:
        for update in updates:
            progress.update(update)
            if update.events:
                progress.clear()
                for event in update.events:
                    _print_event(event)
            while timed and update.t1 >= timed[0].at:
                progress.clear()
                _print_answer(session.ask(timed[0].text, at=update))
                timed.pop(0)  # only once answered: a question cut off by Ctrl-C is answered at the end
    except (Exception, KeyboardInterrupt) as exc:  # ends the stream like its end does, reported below
        stopped = exc
    finally:
        updates.close()
        progress.finish()
    failed = []
    if save is not None:
        try:
            print(f"saved session to {session.save(save)}", flush=True)
        except (OSError, ValueError) as exc:
            failed.append(f"could not save the session to {save}: {_one_line(exc)}")
    for question in timed + at_end:
        answer = session.ask(question.text)
        late = question.at is not None and question.at > answer.t
        _print_answer(answer, f"  (asked for {question.at:g} s; the stream ended first)" if late else "")
    for phrase in searches:
        _print_moments(session, phrase, top)
    if interactive and stopped is None and not stdin_done.is_set():
        print("stream ended; still answering from the final state (Ctrl-D to quit)", flush=True)
        stdin_done.wait()
    if not quiet:
        summary = progress.summary(dropped=session.dropped - dropped_before,
                                   corrupt_packets=getattr(source, "corrupt_packets", None))
        print(f"streamer run: {summary}; the state covers {session.t:.2f} s", file=sys.stderr, flush=True)
    if isinstance(stopped, KeyboardInterrupt):
        print(f"streamer run: interrupted at {session.t:.2f} s of stream", file=sys.stderr)
        return INTERRUPTED
    if stopped is not None:
        failed.insert(0, f"the stream stopped at {session.t:.2f} s: {_one_line(stopped)}")
    for line in failed:
        print(f"streamer run: {line}", file=sys.stderr)
    return STREAM_ERROR if failed else 0


def main(args: argparse.Namespace) -> int:
    from streamer.cli.run_source import open_source, whole_snippets
    from streamer.engine import Engine
    from streamer.files import file_path

    try:
        if args.duration is not None and args.duration <= 0:
            raise ValueError(f"--duration takes stream seconds > 0, got {args.duration:g}")
        try:
            save = file_path(args.save) if args.save is not None else None
        except ValueError as exc:
            raise ValueError(f"--save: {exc}") from None
        engine = Engine.load(args.checkpoint, device=args.device)
    except (ValueError, OSError) as exc:  # bad arguments, missing checkpoint, no such device
        print(f"streamer run: {_one_line(exc)}", file=sys.stderr)
        return 2
    with engine:
        try:
            for question in args.questions:
                check_question(engine.model, question.text)
            check_alignment(engine.model, args.watch, args.search, args.top)
            session = engine.load_session(args.resume) if args.resume else engine.session()
            for phrase in args.watch:
                session.watch(phrase)
            seconds = whole_snippets(args.duration, engine.media.snippet_seconds)
            source = open_source(args.source, realtime=args.realtime, seconds=seconds)
        except (ValueError, OSError) as exc:  # a bad question, a refused state, an unopenable source
            print(f"streamer run: {_one_line(exc)}", file=sys.stderr)
            return 2
        if not args.quiet:
            print(f"streamer run: streaming {args.source} (Ctrl-C stops, saves and answers)", file=sys.stderr,
                  flush=True)
        return stream_and_answer(session, source, args.questions, save=save, quiet=args.quiet,
                                 interactive=args.interactive, searches=args.search, top=args.top)
