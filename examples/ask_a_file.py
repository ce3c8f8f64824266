"""Stream a video file through the engine and ask questions while it plays.

    python examples/ask_a_file.py [VIDEO] [--checkpoint DIR]

Without VIDEO, a clip of the synthetic world is written to a temporary mp4 first, so the
example runs anywhere; its questions and the world's answers are printed alongside.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import av
import numpy as np

from streamer import Engine, sources
from training.world.clip import World, WorldConfig


def write_world_clip(path: Path, index: int = 0):
    """Encode world clip `index` (test split) as H.264 + AAC; returns the clip (for its answers)."""
    clip = World(WorldConfig.preset("test")).clip(index)
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=25, options={"preset": "ultrafast", "crf": "12"})
        video.width, video.height, video.pix_fmt = clip.spec.width, clip.spec.height, "yuv444p"
        audio = out.add_stream("aac", rate=clip.spec.sample_rate, layout="mono")
        for i in range(round(clip.duration * 25)):  # 25 fps file from the 12.5 fps clip
            frame = av.VideoFrame.from_ndarray(clip.frames[int(i * clip.spec.fps / 25)], format="rgb24")
            frame.pts = i
            out.mux(video.encode(frame))
        for start in range(0, len(clip.audio), 1024):
            frame = av.AudioFrame.from_ndarray(clip.audio[None, start : start + 1024], format="fltp", layout="mono")
            frame.sample_rate, frame.pts = clip.spec.sample_rate, start
            out.mux(audio.encode(frame))
        out.mux(video.encode())
        out.mux(audio.encode())
    return clip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("video", nargs="?", type=Path)
    parser.add_argument("--checkpoint", type=Path, default=None, help="default: the bundled tiny model")
    args = parser.parse_args()

    engine = Engine.load(args.checkpoint)
    with tempfile.TemporaryDirectory() as folder:
        questions = [(1.28, "what shape is on the screen?"), (2.56, "what color is the circle?")]
        path = args.video
        if path is None:
            path = Path(folder) / "world.mp4"
            clip = write_world_clip(path)
            questions = [(q.t_ask, q.text) for q in clip.questions]
            answers = {q.text: q.answer for q in clip.questions}
            print(f"no video given: wrote world clip to {path} ({clip.duration:.2f} s)")
        else:
            answers = {}

        session = engine.session()
        for update in session.stream(sources.File(path)):
            print(f"snippet {update.index:3d}  {update.t0:6.2f}-{update.t1:6.2f}s  {update.latency_ms:6.1f} ms")
            while questions and update.t1 >= questions[0][0] - 1e-6:
                _, text = questions.pop(0)
                answer = session.ask(text, at=update)  # exactly as of this snippet
                truth = f"   (world: {answers[text]!r})" if text in answers else ""
                print(f"  Q: {text}\n  A: {answer.text!r} at {answer.t:.2f}s in {answer.latency_ms:.0f} ms{truth}")

    print("at the end:", end=" ", flush=True)
    for piece in session.ask_stream("what is happening?"):  # token by token
        print(piece, end="", flush=True)
    print()
    engine.close()


if __name__ == "__main__":
    main()
