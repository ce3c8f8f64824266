"""Standing queries and moment search through the real Engine, scheduler and Session, on a
randomly initialised `tiny` model with an alignment head and world clips.

A random model's scores mean nothing, but they are deterministic: every test derives what
must happen from the model itself (its offline snippet vectors, `model.embed_clip`, which
equal what streaming computes), so events must fire exactly where the rule says and search
must find exactly the snippet that scores best.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
import zlib
from pathlib import Path

import msgpack
import numpy as np
import pytest
import torch

from model import ModelConfig, StreamerModel
from streamer import Engine, StateError
from streamer.sources import Arrays
from streamer.watch import fire_indices
from training.world.clip import Clip, World, WorldConfig

LEGACY = Path(__file__).resolve().parent / "data" / "before-snippet-rename"
PHRASES = ("whistle", "a drum", "red square", "blue circle", "green triangle moving left", "nothing on screen")
TOLERANCE = 4e-3  # streaming vs offline vectors (1e-4), the index's float16 (~1e-3), with room


@pytest.fixture(scope="module")
def model() -> StreamerModel:
    torch.manual_seed(0)
    return StreamerModel(ModelConfig.from_name("tiny")).eval()


@pytest.fixture(scope="module")
def engine(model):
    with Engine(model) as engine:
        yield engine


@pytest.fixture(scope="module")
def clips() -> list[Clip]:
    world = World(WorldConfig.preset("test"))
    return [world.clip(i) for i in range(3)]


def offline(model: StreamerModel, clip: Clip) -> np.ndarray:
    """The clip's snippet vectors [T, dim] in one offline pass (what each step's embedding equals)."""
    video = torch.from_numpy(clip.video_snippets().copy())[None]
    audio = torch.from_numpy(clip.audio_snippets().copy())[None]
    return model.embed_clip(video, audio)[0].float().numpy()


def scores_of(model: StreamerModel, clip: Clip, phrase: str) -> np.ndarray:
    return offline(model, clip) @ model.embed_text([phrase])[0].float().numpy()


def crossing(scores: np.ndarray, after: int = 1) -> tuple[float, int]:
    """A threshold in [0, 1] well clear of every score (so float noise cannot move a crossing)
    whose first crossing is at snippet `after` or later: (threshold, that snippet)."""
    values = np.unique(np.round(scores, 6))
    for low, high in zip(values[:-1], values[1:]):
        threshold = float((low + high) / 2)
        fired = fire_indices(scores, threshold)
        if high - low > 2 * TOLERANCE and 0 <= threshold <= 1 and fired and fired[0] >= after:
            return threshold, fired[0]
    raise LookupError("no clear crossing in these scores")


def phrase_that_crosses(model, clip, after: int = 1) -> tuple[str, float, int]:
    for phrase in PHRASES:
        try:
            return (phrase, *crossing(scores_of(model, clip, phrase), after))
        except LookupError:
            continue
    raise LookupError("no phrase crosses clearly on this clip")


def part(clip: Clip, first: int, last: int | None = None) -> Arrays:
    """Snippets [first, last) of the clip as a source on the clip's own clock."""
    f, s, d = clip.spec.frames_per_snippet, clip.spec.samples_per_snippet, clip.spec.snippet_seconds
    last = clip.n_snippets if last is None else last
    return Arrays(video=clip.frames[first * f:last * f], fps=clip.spec.fps, audio=clip.audio[first * s:last * s],
                  rate=clip.spec.sample_rate, t0=first * d)


def test_events_fire_in_updates_and_feeds_where_the_scores_cross(engine, model, clips):
    clip = clips[0]
    phrase, threshold, at = phrase_that_crosses(model, clip)
    session = engine.session()
    watch = session.watch(phrase, threshold=threshold)
    never = session.watch(phrase, threshold=1.0)
    feed = session.events()
    updates = list(session.stream(clip.source()))
    fired = [(u.index, e) for u in updates for e in u.events]
    expected = fire_indices(scores_of(model, clip, phrase), threshold)
    assert [i for i, _ in fired] == [e.index for _, e in fired] == expected
    (index, event), *_ = fired
    assert index == at and event.watch == watch.id and event.phrase == phrase and not event.checked
    assert event.t0 == pytest.approx(at * clip.spec.snippet_seconds) and event.score >= threshold
    assert event.score == pytest.approx(scores_of(model, clip, phrase)[at], abs=TOLERANCE)
    assert watch.fired == len(fired) and never.fired == 0 and not watch.armed
    session.close()
    assert [e for e in feed] == [e for _, e in fired]  # the feed ends with the session


def test_unwatch_stops_a_watch_that_would_have_fired(engine, model, clips):
    clip = clips[1]
    phrase, threshold, at = phrase_that_crosses(model, clip, after=2)
    session = engine.session()
    kept, gone = session.watch(phrase, threshold=threshold), session.watch(phrase, threshold=threshold)
    first = [e for u in session.stream(part(clip, 0, at - 1)) for e in u.events]
    session.unwatch(gone)
    rest = [e for u in session.stream(part(clip, at - 1)) for e in u.events]
    assert first == [] and [e.index for e in rest][:1] == [at]
    assert {e.watch for e in rest} == {kept.id}
    assert session.watches == (kept,)
    with pytest.raises(ValueError, match="not a watch of this session"):
        session.unwatch(gone)
    session.close()


def test_sessions_stepped_in_one_batch_each_get_their_own_events(engine, model, clips):
    """One product scores every session's watches: each row must get its own session's columns."""
    expected, sessions = {}, []
    for clip in clips[:2]:
        phrase, threshold, _ = phrase_that_crosses(model, clip)
        session = engine.session()
        for extra in range(3):  # more columns, so a wrong slice would read another session's scores
            session.watch(PHRASES[extra], threshold=1.0)
        watch = session.watch(phrase, threshold=threshold)
        expected[id(session)] = [(watch.id, i) for i in fire_indices(scores_of(model, clip, phrase), threshold)]
        sessions.append((session, clip))
    got: dict[int, list] = {}

    def run(session, clip) -> None:
        got[id(session)] = [(e.watch, e.index) for u in session.stream(clip.source()) for e in u.events]

    threads = [threading.Thread(target=run, args=pair) for pair in sessions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert got == expected
    for session, _ in sessions:
        session.close()


def test_search_finds_the_snippet_that_scores_best(engine, model, clips):
    clip = clips[2]
    session = engine.session()
    list(session.stream(clip.source()))
    index = session.snapshot().index
    np.testing.assert_array_equal(index["index"], np.arange(clip.n_snippets))
    np.testing.assert_allclose(index["times"][:, 0], np.arange(clip.n_snippets) * clip.spec.snippet_seconds)
    np.testing.assert_allclose(index["vectors"].astype(np.float32), offline(model, clip), atol=TOLERANCE)
    for phrase in PHRASES[:3]:
        scores = scores_of(model, clip, phrase)
        best, *others = session.search(phrase, k=3, threshold=1.0)
        assert best.first <= int(np.argmax(scores)) <= best.last
        assert best.score == pytest.approx(scores.max(), abs=TOLERANCE)
        assert best.start == pytest.approx(best.first * clip.spec.snippet_seconds)
        spans = [best, *others]
        assert [m.score for m in spans] == sorted((m.score for m in spans), reverse=True)
        covered = [i for m in spans for i in range(m.first, m.last + 1)]
        assert len(covered) == len(set(covered))  # moments never overlap
    assert session.index_size == clip.n_snippets
    session.close()


def test_a_check_through_the_decoder_confirms_or_vetoes_a_crossing(engine, model, clips):
    clip = clips[0]
    phrase, threshold, at = phrase_that_crosses(model, clip)
    question = "what sound is playing?"
    scratch = engine.session()
    said = next(scratch.ask(question, at=u).text for u in scratch.stream(clip.source()) if u.index == at)
    scratch.close()
    session = engine.session()
    confirmed = session.watch(phrase, threshold=threshold, check=(question, said.upper()))  # case does not matter
    vetoed = session.watch(phrase, threshold=threshold, check=(question, said + " surely not"))
    events = [e for u in session.stream(clip.source()) for e in u.events]
    assert [(e.watch, e.index, e.checked) for e in events][:1] == [(confirmed.id, at, True)]
    assert vetoed.id not in {e.watch for e in events} and not vetoed.armed  # one check per crossing
    session.close()


def test_watches_and_the_index_are_saved_and_restored(engine, model, clips, tmp_path):
    clip, then = clips[0], clips[1]
    phrase, threshold, _ = phrase_that_crosses(model, clip)
    original = engine.session()
    fired = original.watch(phrase, threshold=threshold)
    checked = original.watch("blue circle", threshold=1.0, check=("what color is the circle?", "blue"))
    list(original.stream(clip.source()))
    path = original.save(tmp_path / "s.streamer")
    restored = engine.load_session(path)
    assert [w.to_dict() for w in restored.watches] == [fired.to_dict(), checked.to_dict()]
    assert fired.fired == 1 and not fired.armed and checked.check == ("what color is the circle?", "blue")
    for a, b in zip(restored.watches, original.watches):
        torch.testing.assert_close(a.vector, b.vector)  # recomputed from the phrase
    saved, back = original.snapshot().index, restored.snapshot().index
    assert all(np.array_equal(saved[k], back[k]) for k in ("vectors", "index", "times"))
    assert restored.watch("drum").id == 3  # ids go on where the saved ones stopped
    restored.unwatch(3)
    # both go on with the same stream: the same events, from the same armed flags and state
    after = [[(e.watch, e.index) for u in s.stream(then.source()) for e in u.events] for s in (original, restored)]
    assert after[0] == after[1]
    assert restored.index_size == original.index_size == clip.n_snippets + then.n_snippets
    short = engine.load_session(restored.save(tmp_path / "t.streamer"), index_hours=5 * 0.64 / 3600)
    np.testing.assert_array_equal(short.snapshot().index["index"], restored.snapshot().index["index"][-5:])
    for s in (original, restored, short):
        s.close()


def _without_alignment(data: bytes) -> bytes:
    """The same file as a streamer from before watches would have written it (no such fields)."""
    envelope = msgpack.unpackb(data)
    body = msgpack.unpackb(envelope["body"], strict_map_key=False)
    del body["watches"], body["index"]
    envelope["body"] = msgpack.packb(body, use_bin_type=True)
    envelope["crc32"] = zlib.crc32(envelope["body"])
    return msgpack.packb(envelope, use_bin_type=True)


def test_sessions_saved_before_watches_existed_still_load(engine, clips, tmp_path):
    session = engine.session()
    session.watch("whistle")
    list(session.stream(part(clips[0], 0, 3)))
    old = tmp_path / "old.streamer"
    old.write_bytes(_without_alignment(session.save(tmp_path / "new.streamer").read_bytes()))
    resumed = engine.load_session(old)
    assert resumed.watches == () and resumed.index_size == 0 and resumed.steps == 3
    list(resumed.stream(part(clips[0], 3, 5)))
    assert resumed.index_size == 2 and resumed.search("whistle", k=1)[0].first >= 3
    session.close()
    resumed.close()
    with Engine.load(LEGACY, device="cpu") as legacy:  # a committed file of a checkpoint without the head
        older = legacy.load_session(LEGACY / "session.msgpack")
        assert older.watches == () and not older.can_align and older.steps == 3
        with pytest.raises(ValueError, match="no alignment head"):
            older.watch("drum")


def test_damaged_watch_and_index_records_are_refused(engine, clips, tmp_path):
    session = engine.session()
    session.watch("whistle")
    list(session.stream(part(clips[0], 0, 2)))
    good = msgpack.unpackb(session.save(tmp_path / "s.streamer").read_bytes())
    session.close()

    def damaged(mutate) -> Path:
        envelope = dict(good)
        body = msgpack.unpackb(envelope["body"], strict_map_key=False)
        mutate(body)
        envelope["body"] = msgpack.packb(body, use_bin_type=True)
        envelope["crc32"] = zlib.crc32(envelope["body"])
        path = tmp_path / "damaged.streamer"
        path.write_bytes(msgpack.packb(envelope, use_bin_type=True))
        return path

    for mutate, message in [
        (lambda b: b["watches"][0].update(threshold=1.5), "impossible values"),
        (lambda b: b["watches"][0].update(phrase="x" * 500), "cannot be restored"),  # past the model's phrase budget
        (lambda b: b["watches"].append(dict(b["watches"][0])), "impossible values"),  # the same id twice
        (lambda b: b["watches"][0].update(check=["only a question"]), "check"),
        (lambda b: b["watches"][0].update(check=["what " * 60, "yes"]), "cannot be restored"),  # past the decoder's
        (lambda b: b.update(watches={"id": 1}), "watches are malformed"),
        (lambda b: b["index"].update(dim=32), "different model"),
        (lambda b: b["index"].update(capacity=0), "malformed"),
        (lambda b: b["index"].update(index=b["index"]["times"]), "malformed"),
    ]:
        with pytest.raises(StateError, match=message):
            engine.load_session(damaged(mutate))


def test_errors_say_what_to_do(engine, clips):
    session = engine.session()
    for call, message in [
        (lambda: session.watch(""), "empty"),
        (lambda: session.watch("very " * 40 + "red"), "at most"),
        (lambda: session.watch("drum", threshold=1.5), "between 0 and 1"),
        (lambda: session.watch("drum", threshold=-0.1), "between 0 and 1"),
        (lambda: session.watch("drum", threshold=True), "between 0 and 1"),
        (lambda: session.watch("drum", check=("is there a drum?",)), "pair"),
        (lambda: session.watch("drum", check=("what " * 60, "yes")), "at most"),
        (lambda: session.search("drum", k=0), "k >= 1"),
        (lambda: session.search("", k=1), "empty"),
        (lambda: session.unwatch(99), "not a watch of this session"),
    ]:
        with pytest.raises(ValueError, match=message):
            call()
    assert session.search("drum") == []  # nothing stepped yet, nothing indexed
    with pytest.raises(TypeError, match="list of phrases"):
        session.watch_many("drum")
    session.close()
    with pytest.raises(RuntimeError, match="closed"):
        session.watch("drum")
    assert [e for e in session.events()] == []  # a closed session's feed ends at once
    cfg = ModelConfig.from_name("tiny")
    headless = StreamerModel(dataclasses.replace(cfg, align=dataclasses.replace(cfg.align, dim=0))).eval()
    with Engine(headless) as plain:
        bare = plain.session()
        for call in (lambda: bare.watch("drum"), lambda: bare.search("drum"), bare.events):
            with pytest.raises(ValueError, match="no alignment head"):
                call()
        assert plain.watches is None and bare.watches == () and not bare.can_align
        bare.close()


def test_an_async_reader_gets_events_while_the_stream_runs(engine, model, clips):
    clip = clips[0]
    phrase, threshold, at = phrase_that_crosses(model, clip)
    session = engine.session()
    session.watch(phrase, threshold=threshold)

    async def main() -> tuple[list, list]:
        feed = session.events()
        reader = asyncio.ensure_future(feed.__anext__())  # waits on the loop while the stream runs
        updates = [u async for u in session.astream(clip.source())]
        first = await asyncio.wait_for(reader, 5)
        return [e for u in updates for e in u.events], [first]

    from_updates, from_feed = asyncio.run(main())
    assert from_feed == from_updates[:1] and from_feed[0].index == at
    session.close()


def test_ten_thousand_watches_on_one_session_cost_little_per_step(engine, model, clips):
    """The work a step adds for a session's watches: the one product over all of them and the
    hysteresis of all of them (the snippet's embedding is paid with or without watches)."""
    session = engine.session()
    words = ["red", "green", "blue", "yellow", "square", "circle", "triangle", "drum", "whistle", "moving"]
    phrases = [f"{a} {b} {n}" for n in range(5) for a in words for b in words]  # 500, each embedded once
    watches = session.watch_many(phrases * 20)
    assert len(session.watches) == 10_000 and len(engine.watches) == 10_000
    list(session.stream(part(clips[0], 0, 2)))
    state = session.snapshot().tensors
    watch_set = session._watch_set

    def added_ms(rounds: int = 30) -> float:
        times = []
        for _ in range(rounds):
            started = time.perf_counter()
            scored = engine.watches.score([session], model.embed_snippet(state))
            watch_set.fire(watch_set.scores_for(scored[0]))
            times.append(time.perf_counter() - started)
        return 1e3 * float(np.median(times))

    embed_only = []
    for _ in range(30):
        started = time.perf_counter()
        model.embed_snippet(state)
        embed_only.append(time.perf_counter() - started)
    cost = added_ms() - 1e3 * float(np.median(embed_only))
    print(f"10,000 watches: {cost:.3f} ms added per step (scoring + hysteresis)")
    assert cost < 5.0, f"10,000 watches added {cost:.2f} ms per step"
    assert watches[-1].id == 10_000
    session.close()
    assert len(engine.watches) == 0  # a closed session's watches are no longer scored
