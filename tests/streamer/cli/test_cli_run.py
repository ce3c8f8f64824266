"""`streamer run`: questions paired and checked before streaming, one-line errors, lavfi read
like a file, --duration in stream time, and every early end (a source error, Ctrl-C) saving
the state and answering what is left."""

from __future__ import annotations

import re
import signal

import pytest
import torch
from cli_helpers import TEST_PATTERN, cli_process, finish

from streamer import Engine
from streamer.cli import INTERRUPTED, build_parser, main
from streamer.cli.run import TimedQuestion, stream_and_answer
from streamer.sources import File, Source, SourceError

QUESTION = "what is happening?"


def _questions(*argv: str) -> list[TimedQuestion]:
    return build_parser("run").parse_args(["run", "clip.mp4", *argv]).questions


def _run(checkpoint, *argv: str) -> int:
    return main(["run", "--checkpoint", str(checkpoint), "--device", "cpu", *argv])  # argv may name another device


def test_each_at_times_the_ask_right_before_it():
    """They were paired by position: C's --at timed B, and C waited for the end."""
    assert _questions("--ask", "A", "--at", "3", "--ask", "B", "--ask", "C", "--at", "9.5") == [
        TimedQuestion("A", 3.0), TimedQuestion("B", None), TimedQuestion("C", 9.5)]
    assert _questions("--ask", "A", "--quiet", "--at", "1") == [TimedQuestion("A", 1.0)]


@pytest.mark.parametrize("argv", [["--at", "3", "--ask", "A"], ["--ask", "A", "--at", "1", "--at", "2"],
                                  ["--ask", "A", "--at", "-1"]])
def test_an_at_without_its_ask_is_refused(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        _questions(*argv)
    assert exit_.value.code == 2
    assert "--at" in capsys.readouterr().err


@pytest.mark.parametrize("question, message", [
    ("  ", "blank"),
    ("what color\udcff?", "not valid UTF-8"),  # how Python hands over an argument that is not UTF-8
    ("what " * 40, "at most"),  # past the model's question byte budget
])
def test_questions_are_checked_before_the_stream(checkpoint, tmp_path, capsys, question, message):
    """A bad --ask was refused only when it was answered, after the whole stream, with a traceback."""
    state = tmp_path / "run.state"
    assert _run(checkpoint, TEST_PATTERN, "--duration", "1", "--ask", "fine?", "--ask", question,
                "--save", str(state)) == 2
    err = capsys.readouterr().err
    assert message in err and "--ask" in err and len(err.strip().splitlines()) == 1
    assert not state.exists()  # refused before anything was streamed


def test_bad_arguments_are_one_line_errors(checkpoint, tmp_path, capsys):
    cases = [([str(tmp_path), "--duration", "1"], "is a folder, not a media file"),
             ([TEST_PATTERN, "--save", ""], "--save: no file name"),
             ([TEST_PATTERN, "--save", str(tmp_path)], "is a folder"),
             ([TEST_PATTERN, "--device", "tpu"], "unknown device 'tpu'"),
             ([TEST_PATTERN, "--duration", "0"], "--duration")]
    if not torch.cuda.is_available():
        cases.append(([TEST_PATTERN, "--device", "cuda"], "no CUDA GPU"))
    for argv, message in cases:
        assert _run(checkpoint, *argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, (argv, err)


def test_no_microphone_is_a_one_line_error(checkpoint, capsys):
    """Without one, `run mic` failed once streaming, in the reader thread, with a traceback."""
    code = _run(checkpoint, "mic", "--duration", "0.5")
    err = capsys.readouterr().err
    assert code in (0, 2)  # 0 where this machine has a microphone
    if code == 2:
        assert "microphone" in err and len(err.strip().splitlines()) == 1


def test_lavfi_is_read_like_a_file_and_duration_counts_stream_time(checkpoint, tmp_path, capsys):
    """The `--help` example dropped ~85% of snippets (read as a live camera), and --duration 3
    ran to 6.4 s."""
    state = tmp_path / "run.state"
    assert _run(checkpoint, TEST_PATTERN, "--duration", "2", "--save", str(state), "--ask", QUESTION) == 0
    out, err = capsys.readouterr()
    with Engine.load(checkpoint, device="cpu") as engine:
        saved = engine.load_session(state)
        assert (saved.steps, saved.dropped, saved.pending) == (4, 0, 0)  # 2 s is 4 whole 0.64 s snippets
        assert saved.t == pytest.approx(2.56)
    assert f"answer @   2.56s  {QUESTION!r}" in out
    assert "4 snippets, 0 dropped" in err and "RTF" in err


def test_realtime_paces_a_lavfi_graph(checkpoint, capsys):
    """--realtime was ignored for lavfi graphs."""
    assert _run(checkpoint, TEST_PATTERN, "--realtime", "--duration", "1") == 0
    summary = capsys.readouterr().err.strip().splitlines()[-1]
    assert "1.28 s of stream" in summary  # 2 snippets
    assert float(re.search(r"RTF (\d+\.\d+)", summary).group(1)) >= 0.9  # at the wall clock's pace, or slower


class BreaksAfter(Source):
    """A file that fails to decode after `items` items, as a damaged one does."""

    def __init__(self, source: Source, items: int) -> None:
        self.source, self.items = source, items

    def __iter__(self):
        for n, item in enumerate(self.source):
            if n == self.items:
                raise SourceError("clip.mp4: could not decode (Invalid data found when processing input)")
            yield item

    def close(self) -> None:
        self.source.close()


def test_a_source_error_saves_answers_then_reports_one_line(checkpoint, tmp_path, media, capsys):
    """A damaged file ended the run with a traceback after 6 of 16 snippets: the questions went
    unanswered and --save wrote nothing."""
    clip = media.encode(tmp_path / "clip.mp4", seconds=4.0)
    state = tmp_path / "run.state"
    questions = [TimedQuestion(QUESTION, 0.5), TimedQuestion("what color?", None), TimedQuestion("later?", 60.0)]
    with Engine.load(checkpoint, device="cpu") as engine:
        session = engine.session()
        code = stream_and_answer(session, BreaksAfter(File(clip), items=150), questions, save=state)
        assert code == 1
        assert 0 < session.steps < 6 and engine.load_session(state).steps == session.steps
    out, err = capsys.readouterr()
    assert f"saved session to {state}" in out
    assert f"answer @   0.64s  {QUESTION!r}" in out  # on time, before the error
    assert "'what color?'" in out and "'later?'" in out and "(asked for 60 s; the stream ended first)" in out
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("streamer run: the stream stopped at ")
    assert "could not decode" in err.strip().splitlines()[-1]


@pytest.mark.slow
def test_ctrl_c_saves_answers_and_exits_130(checkpoint, tmp_path):
    """Ctrl-C ended a live run with exit code 0."""
    state = tmp_path / "run.state"
    process = cli_process("-m", "streamer.cli", "run", TEST_PATTERN, "--realtime", "--ask", QUESTION, "--at", "0.5",
                          "--ask", "later?", "--at", "100", "--save", str(state), "--checkpoint", str(checkpoint),
                          "--device", "cpu")
    first = process.stdout.readline()
    assert first.startswith(f"answer @   0.64s  {QUESTION!r}")  # a snippet is in the state
    process.send_signal(signal.SIGINT)
    out, err = finish(process, timeout=300)  # saving and answering; generous for a loaded machine
    assert process.returncode == INTERRUPTED, err
    assert f"saved session to {state}" in out
    assert "'later?'" in out and "(asked for 100 s; the stream ended first)" in out
    assert "Traceback" not in err and "\r" not in err  # not a terminal: plain lines
    assert err.strip().splitlines()[-1].startswith("streamer run: interrupted at ")
    with Engine.load(checkpoint, device="cpu") as engine:
        assert engine.load_session(state).t > 0


WATCHED = ("whistle", "a drum", "red square", "blue circle")


@pytest.fixture(scope="module")
def eager_checkpoint(tmp_path_factory):
    """A random checkpoint whose calibrated watch threshold is 0: a watch fires where its phrase's
    score is positive, so a random model fires some (the threshold comes from the checkpoint)."""
    import dataclasses

    from model import ModelConfig, StreamerModel

    cfg = ModelConfig.from_name("tiny")
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-eager")
    StreamerModel(dataclasses.replace(cfg, align=dataclasses.replace(cfg.align, watch_threshold=0.0))).save(folder)
    return folder


def test_watch_prints_events_as_they_happen_and_search_the_best_moments(eager_checkpoint, capsys):
    from streamer.sources import Arrays
    from training.world.clip import World, WorldConfig

    argv = [f"--watch={phrase}" for phrase in WATCHED] + ["--search", "whistle", "--top", "2", "--quiet"]
    assert _run(eager_checkpoint, "world:0", "--duration", "3", *argv) == 0  # 5 snippets
    out = capsys.readouterr().out.splitlines()
    printed = [re.match(r"event  @ +([\d.]+)s  '(.+)'  score (-?[\d.]+)  \(snippet (\d+)\)", line) for line in out]
    printed = [(m[2], int(m[4])) for m in printed if m]
    clip = World(WorldConfig.preset("test")).clip(0)
    with Engine.load(eager_checkpoint, device="cpu") as engine:  # the same run through the API
        session = engine.session()
        for phrase in WATCHED:
            session.watch(phrase)
        f, s = clip.spec.frames_per_snippet, clip.spec.samples_per_snippet
        source = Arrays(video=clip.frames[:5 * f], fps=clip.spec.fps, audio=clip.audio[:5 * s],
                        rate=clip.spec.sample_rate)
        expected = [(e.phrase, e.index) for u in session.stream(source) for e in u.events]
        moments = session.search("whistle", k=2)
        session.close()
    assert printed == expected and printed, out
    at = out.index(f"search 'whistle': {len(moments)} best moment(s)")
    assert out[at + 1:] == [f"  {m.start:7.2f}s - {m.end:7.2f}s  score {m.score:.3f}" for m in moments]


def test_watch_and_search_are_checked_before_the_stream(checkpoint, tmp_path, capsys):
    import dataclasses

    from model import ModelConfig, StreamerModel

    cfg = ModelConfig.from_name("tiny")
    headless = tmp_path / "headless"
    StreamerModel(dataclasses.replace(cfg, align=dataclasses.replace(cfg.align, dim=0))).save(headless)
    cases = [(headless, ["--watch", "drum"], "alignment head"), (headless, ["--search", "drum"], "alignment head"),
             (checkpoint, ["--watch", " "], "--watch ' ': the phrase is empty"),
             (checkpoint, ["--search", "very " * 20], "--search 'very very"),
             (checkpoint, ["--search", "drum", "--top", "0"], "--top")]
    for folder, argv, message in cases:
        state = tmp_path / "run.state"
        assert _run(folder, TEST_PATTERN, "--duration", "1", *argv, "--save", str(state)) == 2, argv
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, (argv, err)
        assert not state.exists()
