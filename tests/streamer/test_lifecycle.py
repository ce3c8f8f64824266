"""How streams, sessions and engines end: closed mid-stream, or never closed at all.

Closing an engine ends every stream it serves and joins the threads behind them; a script
that leaves a stream early and never closes anything must still exit cleanly. The exit
cases run as real processes, several at once: a thread still inside torch or ffmpeg while
the interpreter tears down aborts the process ("terminate called without an active
exception"), or hangs it, only some of the time.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from model import ModelConfig, StreamerModel
from streamer import Engine
from streamer.sources import Arrays

REPO = Path(__file__).resolve().parents[2]
READER_THREADS = ("streamer-source", "streamer-scheduler")


@pytest.fixture(scope="module")
def model() -> StreamerModel:
    torch.manual_seed(0)
    return StreamerModel(ModelConfig.from_name("tiny"))


def _long_source(realtime: bool = False, seconds: float = 120.0) -> Arrays:
    frames = np.zeros((int(seconds * 12.5), 64, 64, 3), np.uint8)
    return Arrays(video=frames, fps=12.5, audio=np.zeros(int(seconds * 16000), np.float32), rate=16000,
                  realtime=realtime)


def _new_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name in READER_THREADS and t not in before and t.is_alive()]


def test_closing_the_engine_ends_every_stream_and_joins_their_threads(model, tmp_path):
    before = set(threading.enumerate())
    engine = Engine(model)
    offline, live = engine.session(), engine.session()
    started = [threading.Event(), threading.Event()]
    ended = []

    def consume(session, source, started):
        for _ in session.stream(source):
            started.set()
        ended.append(session)

    consumers = [
        threading.Thread(target=consume, args=(offline, _long_source(), started[0]), daemon=True),
        threading.Thread(target=consume, args=(live, _long_source(realtime=True), started[1]), daemon=True),
    ]
    for consumer in consumers:
        consumer.start()
    assert all(event.wait(120) for event in started)
    engine.close()
    for consumer in consumers:
        consumer.join(30)
    assert not any(consumer.is_alive() for consumer in consumers), "a stream went on after engine.close()"
    assert sorted(map(id, ended)) == sorted([id(offline), id(live)]) and offline.closed and live.closed
    assert not _new_threads(before), "engine.close() left reader or scheduler threads running"
    with pytest.raises(RuntimeError, match="engine is closed"):
        engine.session()
    with pytest.raises(RuntimeError, match="session is closed"):
        next(offline.stream(_long_source()))
    assert offline.steps > 0 and offline.save(tmp_path / "closed.msgpack").is_file()  # the state stays
    engine.close()  # closing twice is harmless


_EXIT_SCRIPT = textwrap.dedent('''
    import itertools
    import sys

    import numpy as np
    import torch

    from model import ModelConfig, StreamerModel
    from streamer import Engine, sources
    from streamer.media import AudioBlock, VideoFrame


    class SlowModel(StreamerModel):
        """Steps spend their time inside one long torch call, as a large model's do."""

        def step(self, state, video, audio):
            torch.randn(500, 500) @ torch.randn(500, 500)
            return super().step(state, video, audio)


    class Endless:
        """A live source that never ends nor waits: the engine is always busy behind it."""

        is_live = True

        def __iter__(self):
            frame, pcm = np.zeros((64, 64, 3), np.uint8), np.zeros((1280, 1), np.float32)
            for i in itertools.count():
                yield VideoFrame(i * 0.08, frame)
                yield AudioBlock(i * 0.08, pcm, 16000, 1)


    engine = Engine(SlowModel(ModelConfig.from_name("tiny")))
    session = engine.session()
    case = sys.argv[1]
    if case == "break":  # the README's loop, left early, nothing closed
        frames = np.zeros((100, 64, 64, 3), np.uint8)
        audio = np.zeros(16000 * 8, np.float32)
        for update in session.stream(sources.Arrays(video=frames, fps=12.5, audio=audio, rate=16000)):
            break
    elif case == "raise":  # the loop body fails
        try:
            for update in session.stream(sources.File(sys.argv[2])):
                raise RuntimeError("the loop body failed")
        except RuntimeError:
            pass
    else:  # a stream left suspended while its threads are busy
        updates = session.stream(Endless())
        next(updates)
''')


@pytest.mark.slow
def test_the_process_exits_cleanly_when_nothing_was_closed(tmp_path, media):
    script = tmp_path / "forgot_to_close.py"
    script.write_text(_EXIT_SCRIPT)
    clip = media.encode(tmp_path / "clip.mp4", seconds=8.0)
    runs = [(case, repetition) for case in ("break", "raise", "suspended") for repetition in range(3)]
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    processes = [
        subprocess.Popen([sys.executable, str(script), case, str(clip)], cwd=REPO, env=env, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for case, _ in runs
    ]
    failures, deadline = [], time.monotonic() + 400
    for (case, repetition), process in zip(runs, processes):
        try:
            _, stderr = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            failures.append(f"{case} #{repetition}: hung at exit")
            continue
        if process.returncode != 0 or "terminate called" in stderr:
            failures.append(f"{case} #{repetition}: exit code {process.returncode}: {stderr[-500:]}")
    assert not failures, "\n".join(failures)
