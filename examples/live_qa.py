"""Live camera + microphone: type questions while the stream runs, answers arrive token by token.

    python examples/live_qa.py [--seconds 30] [--checkpoint DIR]

With no camera (or no microphone) it falls back to ffmpeg's test pattern and a beeping
tone (a `lavfi` source), and says so. Ctrl-C or Ctrl-D ends it.
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

from streamer import Engine, sources

# Test pattern and a 1 kHz beep, paced to the wall clock like a real device.
TEST_PATTERN = "testsrc=size=320x240:rate=25,realtime[out0];sine=frequency=1000:beep_factor=4:sample_rate=16000,arealtime[out1]"


def open_live_sources(seconds: float | None) -> list:
    """Camera and microphone if they open, else the lavfi test source."""
    try:
        camera = sources.Camera(max_seconds=seconds)
    except ValueError as error:
        print(f"no camera ({error})\n-> using a lavfi test pattern with a beeping tone instead", file=sys.stderr)
        return [sources.Camera(TEST_PATTERN, format="lavfi", max_seconds=seconds)]
    try:
        microphone = sources.Microphone()
        microphone.start()
    except ValueError as error:
        print(f"no microphone ({error}); streaming the camera alone", file=sys.stderr)
        return [camera]
    return [camera, microphone]


def answer_questions(session, stop: threading.Event) -> None:
    print("type a question and press Enter (Ctrl-D to stop):", flush=True)
    for line in sys.stdin:
        if line.strip():
            print(f"[{session.t:6.2f}s] ", end="", flush=True)
            for piece in session.ask_stream(line.strip()):
                print(piece, end="", flush=True)
            print(flush=True)
    stop.set()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0, help="stream length (default 30; 0 = until Ctrl-C)")
    parser.add_argument("--checkpoint", type=Path, default=None, help="default: the bundled tiny model")
    args = parser.parse_args()

    engine = Engine.load(args.checkpoint)
    session = engine.session()
    live = open_live_sources(args.seconds or None)
    stop = threading.Event()
    threading.Thread(target=answer_questions, args=(session, stop), daemon=True).start()
    try:
        for update in session.stream(*live):
            if update.index % 8 == 0:  # a status line every ~5 s of stream
                print(f"  stream at {update.t1:6.2f}s  latency {update.latency_ms:5.0f} ms  "
                      f"dropped {update.dropped_total}  lag {update.lag_s:.2f}s", flush=True)
            if stop.is_set():
                break
    except KeyboardInterrupt:
        pass
    print(f"done: {session.steps} snippets, {session.dropped} dropped; last answer:",
          session.ask("what is happening?").text)
    engine.close()


if __name__ == "__main__":
    main()
