"""Memory against stream length for three ways of remembering a stream, side by side.

    python -m bench.memory ARM --minutes 1 5 15 --out arm.json [--device cpu] [--threads 2]

`test_memory` runs each arm in a process of its own, one after the other, so one arm's
allocations never show in another's RSS (an allocator rarely hands freed memory back).

- `engine`: the bundled model streams a world clip looped up to the longest length, faster
  than real time, through an Engine session. At each length: the state's bytes, RSS after a
  garbage collection, and the step time over the last 64 snippets.
- `full_history` and `rerun` (bench/baselines.py): set up at each length, then timed (median of
  3 steps, or of 3 answers' first token for `rerun`).

Real time: the work one snippet brings (a step; for `rerun`, re-running the history to answer
a question) fits in one snippet's duration. A baseline that stops being real time is no
longer timed, only its memory is read, until it would need more than 80% of the memory still
free where its history lives (the GPU's, or the machine's): there it runs out of memory and
the arm stops.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import statistics
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

import numpy as np
import torch

from bench.baselines import FullHistory, Rerun
from bench.feeds import LoopedClip
from bench.measure import free_bytes_on, percentiles, rss_bytes, state_bytes, synchronize, timed_ms
from model import StreamerModel
from streamer.engine import BUNDLED_CHECKPOINT, Engine
from training.world.clip import Clip, WorldConfig

ARMS = ("engine", "full_history", "rerun")
QUESTION = "what color is the circle?"
MEMORY_SHARE = 0.8  # of MemAvailable a baseline may take before it counts as out of memory
ROOT = Path(__file__).resolve().parents[1]


def world_clip() -> Clip:
    return Clip.generate(0, WorldConfig.preset("test", snippets=(16, 16)))


def snippets_in(minutes: float, snippet_s: float) -> int:
    return max(1, round(minutes * 60 / snippet_s))


def run_engine(model: StreamerModel, minutes: list[float]) -> dict:
    snippet_s = model.cfg.media.snippet_seconds
    marks, rows, recent = deque(sorted(minutes)), [], deque(maxlen=64)
    started = time.perf_counter()
    with Engine(model) as engine:
        session = engine.session()
        for update in session.stream(LoopedClip(world_clip(), marks[-1] * 60)):
            recent.append(update.step_ms)
            if marks and update.t1 >= marks[0] * 60 - 1e-6:
                gc.collect()
                step = percentiles(recent)
                rows.append({"minutes": marks.popleft(), "snippets": update.index + 1,
                             "state_bytes": state_bytes(session.snapshot().tensors), "rss_bytes": rss_bytes(),
                             "step_ms": step, "real_time": step["p95"] < snippet_s * 1e3})
                if engine.device.type == "cuda":
                    rows[-1]["gpu_allocated_bytes"] = torch.cuda.memory_allocated(engine.device)
        session.close()
    return {"rows": rows, "wall_s": time.perf_counter() - started}


def _probe(minutes: list[float], snippet_s: float, build, time_one, device: torch.device) -> dict:
    """Set a baseline up at each length; time it (`time_one(probe) -> {"work_ms", ...}`, median
    of 3) until it is not real time; stop before it would run out of memory (predicted from
    the bytes per snippet at the previous length, against the free memory of `device`, where
    the history lives)."""
    rows, stopped, timing, per_snippet = [], None, True, 0.0
    started = time.perf_counter()
    for m in sorted(minutes):
        n = snippets_in(m, snippet_s)
        need, available = per_snippet * n, free_bytes_on(device)
        if need > MEMORY_SHARE * available:
            stopped = {"minutes": m, "reason": "out of memory",
                       "detail": f"needs ~{need / 2**30:.1f} GiB, {available / 2**30:.1f} GiB available"}
            break
        probe = build(n)
        row = {"minutes": m, "snippets": n, "state_bytes": probe.nbytes}
        if timing:
            times = [time_one(probe) for _ in range(3)]
            row.update({key: statistics.median(t[key] for t in times) for key in times[0]})
            row["real_time"] = row["work_ms"] < snippet_s * 1e3
            if not row["real_time"]:
                timing = False
                stopped = {"minutes": m, "reason": "not real time",
                           "detail": f"{row['work_ms']:.0f} ms of work per {snippet_s * 1e3:.0f} ms snippet"}
        gc.collect()
        row["rss_bytes"] = rss_bytes()
        if device.type == "cuda":
            row["gpu_allocated_bytes"] = torch.cuda.memory_allocated(device)
        rows.append(row)
        per_snippet = probe.nbytes / n
        del probe
        gc.collect()
    return {"rows": rows, "stopped": stopped, "wall_s": time.perf_counter() - started}


@dataclasses.dataclass
class _History:
    """The media a re-running baseline keeps."""

    video: np.ndarray
    audio: np.ndarray

    @property
    def nbytes(self) -> int:
        return self.video.nbytes + self.audio.nbytes


def run_full_history(model: StreamerModel, minutes: list[float]) -> dict:
    # The decoder's age slopes are a bias over the trained window's ages, and the first-sight
    # tokens' slopes one over the tokens' ages; the baseline's context (every latent, no window, no
    # first-sight tokens) has neither, and the cost does not depend on them.
    cfg = dataclasses.replace(model.cfg, combiner=dataclasses.replace(model.cfg.combiner, kind="transformer"),
                              decoder=dataclasses.replace(model.cfg.decoder, age_slopes=False,
                                                          first_sight_age_slopes=False))
    torch.manual_seed(0)  # the cost does not depend on the weights
    baseline = FullHistory(StreamerModel(cfg).to(next(model.parameters()).device))
    device = baseline.device
    snippet = world_clip().snippets()[0]
    video = torch.from_numpy(snippet.video[None]).to(device)
    audio = torch.from_numpy(snippet.audio[None]).to(device)

    def step_then_answer(state) -> dict:
        return {"work_ms": timed_ms(lambda: baseline.step(state, video, audio), device),
                "first_token_ms": timed_ms(lambda: baseline.first_token(state, QUESTION), device)}

    return _probe(minutes, model.cfg.media.snippet_seconds, baseline.at_length, step_then_answer, device)


def run_rerun(model: StreamerModel, minutes: list[float]) -> dict:
    baseline = Rerun(model)
    clip = world_clip()

    def answer(history: _History) -> dict:
        return {"work_ms": timed_ms(lambda: baseline.first_token(history.video, history.audio, QUESTION),
                                    baseline.device)}

    return _probe(minutes, model.cfg.media.snippet_seconds, lambda n: _History(*Rerun.at_length(clip, n)), answer,
                  torch.device("cpu"))  # the media history is kept in host memory


RUNNERS = {"engine": run_engine, "full_history": run_full_history, "rerun": run_rerun}


def run_arm(arm: str, minutes: list[float], device: str, threads: int, out: Path, timeout_s: float) -> dict:
    """One arm in a fresh process; its result (see `main`)."""
    command = [sys.executable, "-m", "bench.memory", arm, "--minutes", *map(str, minutes), "--device", device,
               "--threads", str(threads), "--out", str(out)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        raise RuntimeError(f"the memory arm {arm!r} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("arm", choices=ARMS)
    parser.add_argument("--minutes", type=float, nargs="+", required=True, help="stream lengths to read memory at")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--out", type=Path, required=True, help="where the arm's JSON goes")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    device = torch.device(args.device)
    model = StreamerModel.load(BUNDLED_CHECKPOINT, device=device)
    synchronize(device)
    gc.collect()
    result = {"arm": args.arm, "snippet_s": model.cfg.media.snippet_seconds, "rss_bytes_at_start": rss_bytes(),
              **RUNNERS[args.arm](model, args.minutes)}
    args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
