"""Where one stream's time goes: decode, frame conversion, resize, downmix, resampling,
cutting and the model step, in ms per second of media (bench/README.md, "Where the time goes").

The stages run in one thread in the order a session runs them (source → chunker → step),
each timed by wrapping the function that does it; time is charged to the innermost stage
running, so the stages add up to the whole. `--against DIR` runs the same measurement on
another checkout (say the parent commit) in alternating rounds and prints the ratios: on a
shared, busy machine only numbers taken side by side in one run can be compared.

    python -m bench.profile_stream                        # this checkout, a 20 s camera-like file
    python -m bench.profile_stream --against ../base      # before/after ratios
    python -m bench.profile_stream --cprofile 25          # also the top functions by own time
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

STAGES = ("decode", "other threads (ffmpeg)", "video conversion", "audio block", "chunker: video", "chunker: resize",
          "chunker: downmix", "chunker: resample", "chunker: audio", "chunker: emit", "chunker: other", "step")


class StageClock:
    """Charges this thread's CPU time to the innermost running stage (so nested stages never
    count twice). CPU time, not wall time: on a shared machine a stage's wall time is mostly
    the time other processes held the core, wherever the scheduler happened to preempt us."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._stack: list[list] = []  # [stage, time it (re)started]

    def enter(self, stage: str) -> None:
        now = time.thread_time()
        if self._stack:
            top = self._stack[-1]
            self.seconds[top[0]] += now - top[1]
        self._stack.append([stage, now])

    def leave(self) -> None:
        now = time.thread_time()
        stage, started = self._stack.pop()
        self.seconds[stage] += now - started
        if self._stack:
            self._stack[-1][1] = now

    def timed(self, stage: str, function: Callable) -> Callable:
        def run(*args, **kwargs):
            self.enter(stage)
            try:
                return function(*args, **kwargs)
            finally:
                self.leave()
        return run


def _wrap(clock: StageClock, owner: object, name: str, stage: str) -> None:
    """Time `owner.name` as `stage`, where this checkout has it (others may lay the code out differently)."""
    if hasattr(owner, name):
        setattr(owner, name, clock.timed(stage, getattr(owner, name)))


class _TimedConverter:
    """Stands in for the source's frame converter: times `reformat` and the frame's `to_ndarray`."""

    def __init__(self, clock: StageClock, converter: object) -> None:
        self.clock, self.converter = clock, converter

    def reformat(self, frame, *args, **kwargs):
        out = self.clock.timed("video conversion", self.converter.reformat)(frame, *args, **kwargs)
        return _TimedFrame(self.clock, out)


class _TimedFrame:
    def __init__(self, clock: StageClock, frame: object) -> None:
        self.clock, self.frame = clock, frame

    def to_ndarray(self, *args, **kwargs):
        return self.clock.timed("video conversion", self.frame.to_ndarray)(*args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self.frame, name)


def instrument(clock: StageClock) -> None:
    """Wrap the functions that do each stage (imported from whichever checkout is on sys.path)."""
    from streamer import chunker as chunker_module
    from streamer.audio import StreamingResampler
    from streamer.sources import decoded

    original_init = decoded._Decoded.__init__

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self._to_rgb = _TimedConverter(clock, self._to_rgb)

    decoded._Decoded.__init__ = init
    _wrap(clock, decoded, "_audio_block", "audio block")
    Chunker = chunker_module.Chunker
    _wrap(clock, Chunker, "push_video", "chunker: video")
    _wrap(clock, Chunker, "push_audio", "chunker: audio")
    _wrap(clock, Chunker, "_scaled", "chunker: resize")
    _wrap(clock, Chunker, "_emit", "chunker: emit")
    _wrap(clock, chunker_module, "to_mono_float", "chunker: downmix")
    _wrap(clock, StreamingResampler, "feed", "chunker: resample")
    _wrap(clock, StreamingResampler, "finish", "chunker: resample")


def stream_once(path: Path, model, clock: StageClock) -> tuple[float, float, int]:
    """The file through File → Chunker → model.step in this thread, its stages timed on `clock`;
    (media s, wall s, snippets)."""
    import torch

    from streamer.chunker import Chunker
    from streamer.sources import File

    chunker = Chunker(model.cfg.media)
    state = model.init_state(1)
    snippets = 0

    def step(ready) -> None:
        nonlocal state, snippets
        for snippet in ready:
            clock.enter("step")
            state = model.step(state, torch.from_numpy(snippet.video[None]), torch.from_numpy(snippet.audio[None]))
            clock.leave()
            snippets += 1

    started, cpu_started, thread_started = time.perf_counter(), time.process_time(), time.thread_time()
    with torch.no_grad(), File(path) as source:
        items: Iterator = iter(source)
        while True:
            clock.enter("decode")
            item = next(items, None)
            clock.leave()
            if item is None:
                break
            clock.enter("chunker: other")
            chunker.push(item)
            ready = chunker.pop_ready()
            clock.leave()
            step(ready)
        clock.enter("chunker: other")
        ready = chunker.flush()
        clock.leave()
        step(ready)
    wall = time.perf_counter() - started
    # CPU the other threads spent meanwhile: ffmpeg's decoder and scaler threads (clocks differ by a hair)
    others = (time.process_time() - cpu_started) - (time.thread_time() - thread_started)
    clock.seconds["other threads (ffmpeg)"] += max(0.0, others)
    return snippets * model.cfg.media.snippet_seconds, wall, snippets


def session_rtf(path: Path, model) -> tuple[float, float]:
    """The bench's end-to-end path: the file through an Engine session (its threads);
    (wall time, CPU time of the whole process) over media time."""
    from streamer.engine import Engine
    from streamer.sources import File

    with Engine(model) as engine:
        session = engine.session()
        started, cpu_started = time.perf_counter(), time.process_time()
        updates = list(session.stream(File(path)))
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        session.close()
    return wall / updates[-1].t1, cpu / updates[-1].t1


def measure(path: Path, rounds: int, cprofile: int) -> dict:
    """Median per-stage ms per media second over `rounds` single-thread runs, plus the session's RTF."""
    import statistics

    import torch

    from model import StreamerModel
    from streamer.engine import BUNDLED_CHECKPOINT

    model = StreamerModel.load(BUNDLED_CHECKPOINT, device="cpu").eval()
    clock = StageClock()
    instrument(clock)
    stream_once(path, model, StageClock())  # warm up (allocations, first calls); its stages are not kept
    runs = []
    for _ in range(rounds):
        clock.seconds.clear()
        media, wall, _ = stream_once(path, model, clock)
        runs.append({"media_s": media, "wall_s": wall, **clock.seconds})
    stages = sorted({k for run in runs for k in run} - {"media_s", "wall_s"})
    media_s = runs[0]["media_s"]
    sessions = [session_rtf(path, model) for _ in range(rounds)]
    result = {
        "media_s": media_s,
        "threads": torch.get_num_threads(),
        "wall_ms_per_s": statistics.median(run["wall_s"] for run in runs) / media_s * 1e3,
        "stages_ms_per_s": {k: statistics.median(run.get(k, 0.0) for run in runs) / media_s * 1e3 for k in stages},
        "session_rtf": statistics.median(wall for wall, _ in sessions),
        "session_cpu_ms_per_s": statistics.median(cpu for _, cpu in sessions) * 1e3,
    }
    if cprofile:
        import cProfile
        import pstats

        profiler = cProfile.Profile(time.thread_time)  # CPU time, as the stages
        profiler.runcall(stream_once, path, model, StageClock())
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(cprofile)
    return result


def table(results: dict[str, dict]) -> str:
    """Per-stage ms per media second and share, one column pair per checkout, then ratios."""
    names = list(results)
    stages = [s for s in STAGES if any(s in r["stages_ms_per_s"] for r in results.values())]
    stages += sorted({s for r in results.values() for s in r["stages_ms_per_s"]} - set(stages))
    head = "| stage | " + " | ".join(f"{n}: CPU ms per media s | share" for n in names)
    lines = [head + (" | after / before |" if len(names) == 2 else " |"),
             "|---|" + "---|---|" * len(names) + ("---|" if len(names) == 2 else "")]
    rows = [(s, [r["stages_ms_per_s"].get(s, 0.0) for r in results.values()]) for s in stages]
    totals = [sum(r["stages_ms_per_s"].values()) for r in results.values()]
    rows.append(("media path (all but step)", [t - r["stages_ms_per_s"].get("step", 0.0)
                                                for t, r in zip(totals, results.values())]))
    rows.append(("**total**", totals))
    for stage, values in rows:
        cells = [f"{v:.2f} | {v / t:.0%}" for v, t in zip(values, totals)]
        ratio = ""
        if len(names) == 2:
            ratio = f" {values[1] / values[0]:.2f} |" if values[0] > 0 else " – |"
        lines.append(f"| {stage} | " + " | ".join(cells) + " |" + ratio)
    lines.append("")
    for n, r in results.items():
        lines.append(f"- {n}: session (Engine, its threads): {r['session_cpu_ms_per_s']:.1f} ms CPU per media s, "
                     f"RTF {r['session_rtf']:.4f} (wall); the loop above: RTF {r['wall_ms_per_s'] / 1e3:.4f} (wall)")
    if len(names) == 2:
        a, b = results.values()
        lines.append(f"- after / before: stages' CPU {totals[1] / totals[0]:.2f}, session CPU "
                     f"{b['session_cpu_ms_per_s'] / a['session_cpu_ms_per_s']:.2f}, session RTF "
                     f"{b['session_rtf'] / a['session_rtf']:.2f}, loop wall {b['wall_ms_per_s'] / a['wall_ms_per_s']:.2f}")
    return "\n".join(lines)


def _camera_file(seconds: float, folder: Path) -> Path:
    from bench.feeds import write_camera_file
    from training.world.clip import Clip, WorldConfig

    config = WorldConfig.preset("test", snippets=(16, 16))
    return write_camera_file(folder / "camera.mp4", Clip.generate(config.seed_start, config), seconds)


def _run_checkout(code: Path, path: Path, rounds: int, threads: int) -> dict:
    """One measurement in a fresh interpreter importing `code`'s streamer (this file drives it)."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run([sys.executable, __file__, "--code", str(code), "--file", str(path), "--rounds", str(rounds),
                        "--threads", str(threads), "--json", out.name], check=True, cwd=code, stdout=subprocess.DEVNULL)
        return json.loads(Path(out.name).read_text())


def _merge(runs: list[dict]) -> dict:
    """Medians over the alternating rounds of one checkout."""
    import statistics

    stages = {s for r in runs for s in r["stages_ms_per_s"]}
    return {
        "media_s": runs[0]["media_s"],
        "threads": runs[0]["threads"],
        "wall_ms_per_s": statistics.median(r["wall_ms_per_s"] for r in runs),
        "session_rtf": statistics.median(r["session_rtf"] for r in runs),
        "session_cpu_ms_per_s": statistics.median(r["session_cpu_ms_per_s"] for r in runs),
        "stages_ms_per_s": {s: statistics.median(r["stages_ms_per_s"].get(s, 0.0) for r in runs) for s in stages},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--file", type=Path, help="media file to stream (default: a camera-like file written now)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the file written (default 20 s)")
    parser.add_argument("--rounds", type=int, default=3, help="timed runs (the median is kept); with --against, "
                        "alternating runs per checkout")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--against", type=Path, help="another checkout to measure side by side (the 'before')")
    parser.add_argument("--cprofile", type=int, default=0, metavar="N",
                        help="also print the top N functions by own CPU time (to stderr)")
    parser.add_argument("--json", type=Path, help="write the measurement here")
    parser.add_argument("--code", type=Path, help=argparse.SUPPRESS)  # the checkout to import (set by --against)
    args = parser.parse_args(argv)
    here = Path(__file__).resolve().parents[1]
    code = (args.code or here).resolve()
    # run as a file, its folder would come first on the path and bench/concurrent.py shadow the standard library's
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here / "bench"]
    sys.path.insert(0, str(code))
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        path = args.file or _camera_file(args.seconds, Path(folder))
        if args.against is None:
            result = measure(path, args.rounds, args.cprofile)
            results = {code.name: result}
        else:
            runs: dict[str, list[dict]] = {"before": [], "after": []}
            for _ in range(args.rounds):
                runs["before"].append(_run_checkout(args.against.resolve(), path, 1, args.threads))
                runs["after"].append(_run_checkout(code, path, 1, args.threads))
            results = {name: _merge(r) for name, r in runs.items()}
            result = results
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    print(table(results))


if __name__ == "__main__":
    main()
