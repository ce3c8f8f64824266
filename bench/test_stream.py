"""One stream, for `tiny` with the TTM combiner (the bundled model) and with the Transformer
combiner: per-snippet step latency, end-to-end real-time factor from an encoded file, and
the time to the first answer token and to the whole answer.

Each is timed by pytest-benchmark one event per round (`pedantic`), so its statistics are the
distribution of that event; the report adds p95/p99 from the raw rounds.
"""

from __future__ import annotations

import itertools
import math

import torch

from bench.measure import synchronize
from streamer.engine import Engine
from streamer.sources import File


def test_step_latency(benchmark, combiner_model, world_clips, sizes, device):
    """One snippet folded into a stream's state (batch 1), snippet after snippet of world clips."""
    combiner, model = combiner_model
    snippets = itertools.cycle([s for clip in world_clips for s in clip.snippets()])
    state = {"now": model.init_state(1, device=device)}

    def step():
        snippet = next(snippets)
        state["now"] = model.step(state["now"], torch.from_numpy(snippet.video[None]).to(device),
                                  torch.from_numpy(snippet.audio[None]).to(device))
        synchronize(device)

    benchmark.pedantic(step, rounds=sizes.step_rounds, warmup_rounds=min(5, sizes.step_rounds))
    benchmark.extra_info.update(combiner=combiner, snippet_s=model.cfg.media.snippet_seconds)


def test_real_time_factor(benchmark, combiner_model, encoded_file, sizes):
    """A whole file through a session: decode, resize, resample, chunk, step. RTF = wall / media time."""
    combiner, model = combiner_model
    streamed = {}
    with Engine(model) as engine:
        def stream_file():
            session = engine.session()
            updates = list(session.stream(File(encoded_file)))
            session.close()
            streamed.update(media_s=updates[-1].t1, snippets=len(updates))

        benchmark.pedantic(stream_file, rounds=sizes.rtf_rounds, warmup_rounds=1)
    benchmark.extra_info.update(combiner=combiner, **streamed)


def test_answer_latency(benchmark, combiner_model, world_clips, sizes):
    """A question asked about a stream at its ask time, answered from the state as of then.
    Timed: the whole answer; recorded beside it: the first token and the tokens generated."""
    combiner, model = combiner_model
    clips = world_clips[: math.ceil(sizes.questions / max(1, len(world_clips[0].questions)))]  # asked again in turn
    with Engine(model) as engine:
        asks, sessions = [], [engine.session() for _ in clips]
        for session, clip in zip(sessions, clips):
            updates = list(session.stream(clip.source()))
            asks += [(session, updates[max(1, q.ask_snippets) - 1], q.text) for q in clip.questions]
        warmup = min(2, sizes.questions)
        asked = itertools.cycle(asks)
        answers = []

        def ask(session, update, question):
            answers.append(session.ask(question, at=update))

        benchmark.pedantic(ask, setup=lambda: (next(asked), {}), rounds=sizes.questions, warmup_rounds=warmup)
        for session in sessions:
            session.close()
    measured = answers[-sizes.questions:]
    benchmark.extra_info.update(combiner=combiner, first_token_ms=[a.first_token_ms for a in measured],
                                tokens=[a.tokens for a in measured])
