"""The progress line of `streamer run`: rewritten in place on a terminal, plain lines in a log."""

from __future__ import annotations

import io
import os
import time

from streamer.cli.progress import TTY_REDRAW_S, Progress
from streamer.session import Update


def _update(index: int, dropped: int = 0) -> Update:
    return Update(index=index, t0=0.64 * index, t1=0.64 * (index + 1), latency_ms=20.0, dropped=dropped, lag_s=0.64,
                  dropped_total=dropped, queued=1, batch_size=1, step_ms=12.0, video_filled=False,
                  audio_filled=False)


def _read_all(leader: int) -> str:
    """What was written to a pseudo-terminal whose other end is closed."""
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the other end is closed and everything was read
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    return b"".join(chunks).decode()


def test_on_a_terminal_one_line_rewrites_itself():
    leader, follower = os.openpty()
    with open(follower, "w") as terminal:
        progress = Progress(terminal)
        for index in range(3):
            time.sleep(TTY_REDRAW_S)
            progress.update(_update(index, dropped=1))
        progress.finish()
    shown = _read_all(leader)
    assert shown.count("\r") >= 3 and "\n" not in shown  # drawn over itself, then cleared
    assert "stream     1.92s  3 snippets  lag 0.64s  dropped 3  RTF" in shown


def test_in_a_log_plain_lines_at_intervals():
    log = io.StringIO()
    progress = Progress(log, log_every_s=0.0)
    for index in range(3):
        progress.update(_update(index))
    assert "\r" not in log.getvalue() and len(log.getvalue().splitlines()) == 3
    quiet = Progress(io.StringIO(), log_every_s=3600.0)  # a short run writes no progress lines
    quiet.update(_update(0))
    assert quiet.out.getvalue() == ""


def test_summary_counts_what_the_source_skipped():
    progress = Progress(io.StringIO(), show=False)
    for index in range(2):
        progress.update(_update(index))
    progress.finish()
    assert progress.out.getvalue() == ""
    summary = progress.summary(dropped=0)
    assert summary.startswith("1.28 s of stream in ") and "RTF" in summary and "2 snippets, 0 dropped" in summary
    assert "corrupt" not in summary
    assert progress.summary(dropped=1, corrupt_packets=3).endswith("1 dropped, 3 corrupt packets skipped")
