"""How far a `streamer run` has got: a live progress line and a closing summary.

A long run used to print a line per snippet (thousands for an hour of video) or nothing.
On a terminal one line is rewritten in place instead, a few times a second; in a log (not
a terminal) a plain line is written every few seconds of wall time, so the log keeps the
run's history without a line per snippet.
"""

from __future__ import annotations

import time
from typing import TextIO

TTY_REDRAW_S = 0.1  # the terminal line is redrawn at most this often
LOG_EVERY_S = 10.0  # a log gets a line this often


def real_time_factor(wall_s: float, stream_s: float) -> float | None:
    """Wall seconds spent per second of stream: below 1 keeps up with a live source."""
    return wall_s / stream_s if stream_s > 0 else None


class Progress:
    """Stream time, snippets, lag, drops and real-time factor, fed one `Update` at a time."""

    def __init__(self, out: TextIO, *, show: bool = True, tty: bool | None = None,
                 log_every_s: float = LOG_EVERY_S) -> None:
        self.out, self.show = out, show  # show=False: count for the summary, print nothing
        self.tty = out.isatty() if tty is None else tty
        self.every_s = TTY_REDRAW_S if self.tty else log_every_s
        self.started = time.perf_counter()
        self.snippets = 0
        self.dropped = 0
        self.first_t0: float | None = None
        self.t1: float | None = None
        self.lag_s = 0.0
        self.ended: float | None = None
        self._shown_at = self.started
        self._drawn = False  # a terminal line is on screen, to clear before other output

    @property
    def stream_s(self) -> float:
        """Stream seconds stepped in this run."""
        return 0.0 if self.t1 is None else self.t1 - self.first_t0

    def update(self, update) -> None:
        """Count a `streamer.session.Update` and show the line when it is due."""
        self.snippets += 1
        self.dropped += update.dropped
        self.first_t0 = update.t0 if self.first_t0 is None else self.first_t0
        self.t1, self.lag_s = update.t1, update.lag_s
        now = time.perf_counter()
        if not self.show or now - self._shown_at < self.every_s:
            return
        self._shown_at = now
        if self.tty:
            self.out.write(f"\r{self.line(now)}\033[K")
            self._drawn = True
        else:
            self.out.write(self.line(now) + "\n")
        self.out.flush()

    def line(self, now: float | None = None) -> str:
        wall_s = (time.perf_counter() if now is None else now) - self.started
        rtf = real_time_factor(wall_s, self.stream_s)
        return (f"stream {self.t1 or 0.0:8.2f}s  {self.snippets} snippets  lag {self.lag_s:.2f}s  "
                f"dropped {self.dropped}  RTF {'-' if rtf is None else f'{rtf:.2f}'}")

    def clear(self) -> None:
        """Take the terminal line off the screen before something else is printed."""
        if self._drawn:
            self.out.write("\r\033[K")
            self.out.flush()
            self._drawn = False

    def finish(self) -> None:
        """The stream has ended: clear the line and stop the wall clock (answering and saving
        after it are not streaming time)."""
        self.clear()
        self.ended = time.perf_counter()

    def summary(self, *, dropped: int, corrupt_packets: int | None = None) -> str:
        """The closing line: wall time, real-time factor, snippets, drops (and corrupt packets
        skipped, when the source counts them)."""
        wall_s = (self.ended or time.perf_counter()) - self.started
        rtf = real_time_factor(wall_s, self.stream_s)
        parts = [f"{self.stream_s:.2f} s of stream in {wall_s:.2f} s"
                 + ("" if rtf is None else f" (RTF {rtf:.2f})"),
                 f"{self.snippets} snippets", f"{dropped} dropped"]
        if corrupt_packets is not None:
            parts.append(f"{corrupt_packets} corrupt packets skipped")
        return ", ".join(parts)
