"""Streaming speed and memory of the engine: step and answer latency, real-time factor, concurrent streams, RSS.

    .venv/bin/python -m bench.streaming [--checkpoint DIR] [--out bench/results/streaming.json]

0. Model latency of one stream: the batched model step per snippet (batch of 1) and the time
   from asking a question to its first answer token, over world clips.
1. End-to-end real-time factor of one stream from an mp4 (decode + resize + resample +
   chunk + step): wall seconds per media second (< 1 is faster than real time).
2. Concurrent streams: N sessions on one engine, each reading its own mp4 as fast as it
   can; N streams are sustained in real time when every stream's RTF stays below 1.
3. Memory (measured first): one session fed a world clip looped for 60 minutes of stream time at full
   speed; RSS after 1 and after 60 minutes of stream (they should agree within 2%).

Without --checkpoint a randomly initialised `tiny` model is used: the speed and memory
are the same as for a trained one.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import tempfile
import threading
import time
from pathlib import Path

import av
import numpy as np
import torch
from tqdm import tqdm

from model import ModelConfig, StreamerModel
from streamer.engine import Engine
from streamer.media import AudioBlock, VideoFrame
from streamer.sources import File
from training.world.clip import Clip, WorldConfig


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status (Linux only)")


def write_mp4(path: Path, clip: Clip, seconds: float, size: tuple[int, int] = (320, 240)) -> None:
    """A camera-like file: the clip looped, scaled up to `size`, H.264 at 25 fps + AAC 48 kHz."""
    width, height = size
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio = out.add_stream("aac", rate=48000, layout="mono")
        n_frames = round(seconds * 25)
        src_fps = clip.spec.fps
        for i in range(n_frames):
            frame_index = int(i / 25 * src_fps) % len(clip.frames)
            rgb = np.repeat(np.repeat(clip.frames[frame_index], height // 64 + 1, 0), width // 64 + 1, 1)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[:height, :width]), format="rgb24")
            frame.pts = i
            out.mux(video.encode(frame))
        pcm48 = np.repeat(clip.audio, 3)  # 16 kHz -> 48 kHz by repetition: the content does not matter here
        total = round(seconds * 48000)
        for start in range(0, total, 1024):
            block = pcm48[np.arange(start, min(start + 1024, total)) % len(pcm48)]
            frame = av.AudioFrame.from_ndarray(block[None].astype(np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 48000, start
            out.mux(audio.encode(frame))
        out.mux(video.encode())
        out.mux(audio.encode())


class LoopedClip:
    """A clip repeated for `seconds` of stream time, generated lazily (constant memory)."""

    is_live = False

    def __init__(self, clip: Clip, seconds: float, block: int = 1600) -> None:
        self.clip, self.seconds, self.block = clip, seconds, block

    def __iter__(self):
        clip, fps, rate = self.clip, self.clip.spec.fps, self.clip.spec.sample_rate
        n_frames, n_samples = round(self.seconds * fps), round(self.seconds * rate)
        frame_step = rate / fps
        next_sample = 0
        for j in range(n_frames):
            t = j / fps
            while next_sample < n_samples and next_sample <= j * frame_step:
                idx = np.arange(next_sample, next_sample + self.block) % len(clip.audio)
                yield AudioBlock(next_sample / rate, clip.audio[idx, None], rate, 1)
                next_sample += self.block
            yield VideoFrame(t, clip.frames[j % len(clip.frames)])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def step_and_first_token(engine: Engine, clips: list[Clip]) -> dict:
    """One stream at a time: model step per snippet, and ask -> first token after every snippet."""
    steps, first_tokens, answers = [], [], []
    for clip in clips:
        session = engine.session()
        for update in session.stream(clip.source()):
            steps.append(update.step_ms)
            question = clip.questions[update.index % len(clip.questions)].text
            answer = session.ask(question, at=update)
            first_tokens.append(answer.first_token_ms)
            answers.append(answer.latency_ms)
        session.close()
    return {
        "snippet_s": clips[0].spec.snippet_seconds,
        "steps": len(steps),
        "step_ms_p50": percentile(steps, 0.5),
        "step_ms_p95": percentile(steps, 0.95),
        "questions": len(first_tokens),
        "first_token_ms_p50": percentile(first_tokens, 0.5),
        "first_token_ms_p95": percentile(first_tokens, 0.95),
        "whole_answer_ms_p50": percentile(answers, 0.5),
    }


def real_time_factor(engine: Engine, path: Path, seconds: float) -> dict:
    session = engine.session()
    started = time.perf_counter()
    updates = list(session.stream(File(path)))
    wall = time.perf_counter() - started
    session.close()
    latencies = [u.latency_ms for u in updates]
    return {
        "media_s": seconds,
        "wall_s": wall,
        "rtf": wall / seconds,
        "snippets": len(updates),
        "latency_ms_p50": percentile(latencies, 0.5),
        "latency_ms_p95": percentile(latencies, 0.95),
    }


def concurrent(engine: Engine, paths: list[Path], seconds: float) -> dict:
    sessions = [engine.session() for _ in paths]
    walls: list[float] = [0.0] * len(paths)
    before = dict(engine.stats)

    def run(i: int) -> None:
        started = time.perf_counter()
        for _ in sessions[i].stream(File(paths[i])):
            pass
        walls[i] = time.perf_counter() - started

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(paths))]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    for session in sessions:
        session.close()
    steps = engine.stats["steps"] - before["steps"]
    snippets = engine.stats["snippets"] - before["snippets"]
    return {
        "streams": len(paths),
        "media_s_each": seconds,
        "wall_s": wall,
        "worst_stream_rtf": max(walls) / seconds,
        "mean_batch": snippets / steps if steps else 0.0,
        "real_time": max(walls) < seconds,
    }


def memory_over_an_hour(engine: Engine, clip: Clip, minutes: float = 60.0) -> dict:
    session = engine.session()
    marks = {1.0: None, minutes: None}
    total = round(minutes * 60 / clip.spec.snippet_seconds)
    started = time.perf_counter()
    with tqdm(total=total, desc="memory: 60 min of stream", unit="snippet") as bar:
        for update in session.stream(LoopedClip(clip, minutes * 60)):
            bar.update(1)
            for minute in marks:
                if marks[minute] is None and update.t1 >= minute * 60 - 1e-6:
                    gc.collect()
                    marks[minute] = rss_mib()
    wall = time.perf_counter() - started
    session.close()
    after_1, after_60 = marks[1.0], marks[minutes]
    return {
        "stream_minutes": minutes,
        "wall_s": wall,
        "rss_mib_after_1_min": after_1,
        "rss_mib_at_end": after_60,
        "relative_change": (after_60 - after_1) / after_1,
        "within_2_percent": abs(after_60 - after_1) / after_1 <= 0.02,
        "state_bytes_per_stream": engine.model.state_nbytes(1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--seconds", type=float, default=60.0, help="media seconds per file")
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--minutes", type=float, default=60.0, help="stream minutes for the memory test")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (the target is 2 cores)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "streaming.json")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    if args.checkpoint is not None:
        engine = Engine.load(args.checkpoint, device="cpu")
        model_name = str(args.checkpoint)
    else:
        torch.manual_seed(0)
        engine = Engine(StreamerModel(ModelConfig.from_name("tiny")))
        model_name = "tiny (random weights)"
    clip = Clip.generate(0, WorldConfig.preset("test", snippets=(16, 16)))
    results: dict = {
        "model": model_name,
        "device": str(engine.device),
        "torch_threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
    }
    with engine, tempfile.TemporaryDirectory() as folder:
        # memory first, in a fresh process: later runs with many sessions raise the allocator's high-water mark
        results["memory"] = memory_over_an_hour(engine, clip, args.minutes)
        print("memory:", results["memory"], flush=True)
        results["model_latency"] = step_and_first_token(engine, [Clip.generate(100 + i, WorldConfig.preset("test"))
                                                                 for i in range(4)])
        print("model latency:", results["model_latency"], flush=True)
        paths = []
        for i in tqdm(range(max(args.streams)), desc="writing test mp4s"):
            path = Path(folder) / f"stream{i}.mp4"
            write_mp4(path, Clip.generate(i, WorldConfig.preset("test", snippets=(16, 16))), args.seconds)
            paths.append(path)
        real_time_factor(engine, paths[0], min(args.seconds, 5.0))  # warm-up
        results["one_stream"] = real_time_factor(engine, paths[0], args.seconds)
        print("one stream:", results["one_stream"], flush=True)
        results["concurrent"] = []
        for n in args.streams:
            row = concurrent(engine, paths[:n], args.seconds)
            results["concurrent"].append(row)
            print("concurrent:", row, flush=True)
        sustained = [row["streams"] for row in results["concurrent"] if row["real_time"]]
        results["max_real_time_streams_measured"] = max(sustained) if sustained else 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
