"""A Session needs only its `Host` (model, media, device, fingerprint, watches, wake, detach): driven
here by a fake host that steps in whichever thread wakes it, with a model that counts."""

from __future__ import annotations

import threading
import time
import warnings

import numpy as np
import pytest
import torch

from model.media import MediaSpec
from streamer.scheduler import StepInfo
from streamer.session import NOTHING_SEEN, Session
from streamer.sources import Arrays, Camera, File, MissingTrackWarning

MEDIA = MediaSpec(height=8, width=8, fps=10.0, frames_per_snippet=2)  # 0.2 s snippets


class CountingModel:
    """The state is how many snippets were stepped; the answer says so."""

    def init_state(self, batch_size: int, device=None) -> dict[str, torch.Tensor]:
        return {"t": torch.zeros(batch_size, dtype=torch.int64, device=device)}

    def answer(self, state, question: str, max_new_tokens: int | None = None):
        yield f"{question} after {int(state['t'][0])}"


class FakeHost:
    """Steps a session's ready snippets as soon as it is woken; records what it was asked."""

    media = MEDIA
    device = torch.device("cpu")
    fingerprint = "f" * 64
    watches = None  # the counting model cannot align: no watches, no moment index

    def __init__(self, fail_at: int | None = None) -> None:
        self.model = CountingModel()
        self.sessions: list[Session] = []
        self.stepped: list[int] = []
        self.snippets: list = []  # what was stepped, to look at
        self.detached: list[Session] = []
        self.fail_at = fail_at

    def attach(self, session: Session) -> Session:
        self.sessions.append(session)
        return session

    def wake(self) -> None:
        for session in self.sessions:
            while (taken := session.take_ready()) is not None:
                snippet, state = taken
                if snippet.index == self.fail_at:
                    session.fail_step(RuntimeError("the model failed"))
                    return
                self.stepped.append(snippet.index)
                self.snippets.append(snippet)
                session.finish_step({"t": state["t"] + 1}, StepInfo(1, 0.0, time.perf_counter()))

    def detach(self, session: Session) -> None:
        self.detached.append(session)
        self.sessions.remove(session)


def _source(seconds: float = 1.0) -> Arrays:
    frames = np.zeros((int(seconds * MEDIA.fps), 8, 8, 3), dtype=np.uint8)
    return Arrays(video=frames, fps=MEDIA.fps, audio=np.zeros(int(seconds * 16000), np.float32), rate=16000)


def test_a_session_streams_answers_and_leaves_through_its_host():
    host = FakeHost()
    session = host.attach(Session(host, max_queued=2))
    updates = list(session.stream(_source(1.0)))
    assert [u.index for u in updates] == host.stepped == [0, 1, 2, 3, 4]
    assert session.steps == 5 and session.t == pytest.approx(1.0)
    assert session.ask("what?").text == "what? after 5"
    assert session.ask("what?", at=updates[1]).text == "what? after 2"  # the state as of that update
    assert session.snapshot().fingerprint == host.fingerprint
    session.close()
    assert host.detached == [session]
    with pytest.raises(RuntimeError, match="closed"):
        next(iter(session.stream(_source())))


def test_a_failed_step_ends_the_stream_and_keeps_the_snippet():
    host = FakeHost(fail_at=2)
    session = host.attach(Session(host))
    with pytest.raises(RuntimeError, match="the model failed"):
        for _ in session.stream(_source(1.0)):
            pass
    assert host.stepped == [0, 1] and session.steps == 2
    assert session.pending >= 1  # snippet 2 was not applied: it waits for the next stream


def test_asking_before_any_snippet_says_nothing_was_seen_without_asking_the_model():
    host = FakeHost()
    session = host.attach(Session(host))
    answer = session.ask("what?")
    assert answer.text == NOTHING_SEEN and answer.snippets == 0 and not answer.seen and answer.tokens == 0
    assert list(session.ask_stream("what?")) == [NOTHING_SEEN]
    updates = list(session.stream(_source(1.0)))
    answer = session.ask("what?")
    assert answer.text == "what? after 5" and answer.snippets == 5 and answer.seen
    assert session.ask("what?", at=updates[1]).snippets == 2


class ThreadReportingModel(CountingModel):
    """Each piece says how many intra-op threads torch had while it was generated."""

    def answer(self, state, question: str, max_new_tokens: int | None = None):
        for _ in range(3):
            yield f"{torch.get_num_threads()} "


def test_answers_decode_on_one_thread_and_leave_the_callers_thread_count_alone():
    host = FakeHost()
    host.model = ThreadReportingModel()
    session = host.attach(Session(host))
    list(session.stream(_source(0.4)))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert session.ask("how many threads?").text == "1 1 1"
        assert torch.get_num_threads() == 2
        for piece in session.ask_stream("how many threads?"):  # the caller's code between pieces
            assert piece == "1 " and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


def test_a_stream_without_media_leaves_nothing_seen():
    host = FakeHost()
    session = host.attach(Session(host))
    with pytest.warns(MissingTrackWarning, match="no video track"):
        assert list(session.stream(Arrays(audio=np.zeros(0, np.float32), rate=16000))) == []
    assert session.ask("what?").text == NOTHING_SEEN


def test_a_resumed_session_that_saw_nothing_says_so():
    host = FakeHost()
    fresh = host.attach(Session(host))
    resumed = host.attach(Session(host, saved=fresh.snapshot()))
    answer = resumed.ask("what?")
    assert answer.text == NOTHING_SEEN and answer.snippets == 0


@pytest.mark.parametrize("kind, missing", [("video", "audio"), ("audio", "video")])
def test_a_source_without_a_track_is_warned_about_at_the_start(kind, missing):
    host = FakeHost()
    session = host.attach(Session(host))
    arrays = {"video": np.zeros((5, 8, 8, 3), np.uint8), "fps": MEDIA.fps} if kind == "video" else \
        {"audio": np.zeros(16000, np.float32), "rate": 16000}
    updates = session.stream(Arrays(**arrays))
    with pytest.warns(MissingTrackWarning, match=f"the source has no {missing} track: every snippet's {missing} is"):
        next(updates)  # the warning comes with the first update, before any snippet is stepped
    updates.close()


def test_no_warning_when_the_sources_together_carry_both_tracks():
    host = FakeHost()
    session = host.attach(Session(host))
    camera = Arrays(video=np.zeros((5, 8, 8, 3), np.uint8), fps=MEDIA.fps)
    microphone = Arrays(audio=np.zeros(8000, np.float32), rate=16000)
    plain = list(_source(0.5))  # a plain iterable cannot tell what it carries: no warning either
    with warnings.catch_warnings():
        warnings.simplefilter("error", MissingTrackWarning)
        for sources in ((camera, microphone), (_source(0.5),), (plain,)):
            assert list(session.stream(*sources))


def test_what_is_not_a_source_or_a_file_name_is_refused_with_what_to_do(tmp_path):
    """A path string gave "push() takes a VideoFrame or an AudioBlock, got str" from the reader
    thread, None a bare TypeError, and save("") "PosixPath('.') has an empty name"."""
    host = FakeHost()
    session = host.attach(Session(host))
    with pytest.raises(TypeError, match=r"use File\('clip.mp4'\)"):
        next(session.stream("clip.mp4"))
    with pytest.raises(TypeError, match="got NoneType"):
        next(session.stream(None))
    with pytest.raises(ValueError, match="no file name"):
        session.save("")
    with pytest.raises(ValueError, match="is a folder"):
        session.save(tmp_path)
    assert list(session.stream(_source(0.4)))  # still usable


def _colours(snippets) -> np.ndarray:
    """The mean colour of each frame, [snippets × frames, 3]."""
    return np.concatenate([s.video.reshape(len(s.video), -1, 3).mean(axis=1) for s in snippets])


def test_a_new_file_continues_the_session_where_it_stopped(tmp_path, media):
    first = media.encode(tmp_path / "a.mp4", seconds=1.0)
    second = media.encode(tmp_path / "b.webm", seconds=1.0, video="libvpx", audio="libopus", size=(80, 48))
    host = FakeHost()
    session = host.attach(Session(host))
    before = list(session.stream(File(first)))
    updates = list(session.stream(File(second)))
    n = len(before)  # the AAC encoder's padding may add a sixth snippet
    assert [u.index for u in updates] == list(range(n, n + len(updates))) and len(updates) >= 5
    assert updates[0].t0 == pytest.approx(before[-1].t1), "the second file continues where the first stopped"
    assert not any(u.video_filled or u.audio_filled for u in updates[:5]), "the second file's media was not used"
    # both files show frame_colour(0), (1), ... from their start: the second file's snippets look like the first's
    a, b = _colours(host.snippets[:5]), _colours(host.snippets[n : n + 5])
    assert np.abs(np.diff(b, axis=0)).max() > 20, "the second file's frames were dropped (one frame repeated)"
    np.testing.assert_allclose(b, a, atol=12)


def test_a_new_source_after_a_partial_snippet_completes_it(tmp_path, media):
    first = media.encode(tmp_path / "a.mp4", seconds=0.5)  # two and a half snippets
    second = media.encode(tmp_path / "b.mp4", seconds=0.5, rate=44100)  # another sample rate
    host = FakeHost()
    session = host.attach(Session(host))
    assert [u.index for u in session.stream(File(first), flush=False)] == [0, 1]
    updates = list(session.stream(File(second)))
    assert [u.index for u in updates] == list(range(2, 2 + len(updates))) and session.t >= 1.0
    assert not any(u.video_filled or u.audio_filled for u in updates[:3]), "the partial snippet was not completed"


def test_a_new_camera_continues_a_live_session():
    host = FakeHost()
    session = host.attach(Session(host, max_queued=64))
    graph = "testsrc=size=64x48:rate=10"
    first = list(session.stream(Camera(graph, format="lavfi", max_seconds=1.0)))
    second = list(session.stream(Camera(graph, format="lavfi", max_seconds=1.0)))  # its clock starts at 0 again
    assert len(first) == len(second) == 5 and session.dropped == 0
    assert [u.index for u in second] == [5, 6, 7, 8, 9]
    assert not any(u.video_filled for u in second[:-1])


def test_a_corrupt_file_streams_to_its_end_and_the_session_counts_what_was_skipped(tmp_path, media):
    whole = media.encode(tmp_path / "clip.mp4", seconds=4.0)
    host = FakeHost()
    session = host.attach(Session(host))
    source = File(media.corrupt(whole))
    updates = list(session.stream(source))
    assert updates[-1].t1 >= 4.0, "the stream ended at the corrupt bytes"
    assert session.corrupt_packets == source.corrupt_packets > 0
    list(session.stream(File(whole)))
    assert session.corrupt_packets == source.corrupt_packets  # counted over every stream of the session


def _endless(seconds: float = 600.0) -> Arrays:
    frames = np.zeros((int(seconds * MEDIA.fps), 8, 8, 3), dtype=np.uint8)
    return Arrays(video=frames, fps=MEDIA.fps)


def test_closing_a_session_mid_stream_ends_its_stream_and_joins_its_readers():
    host = FakeHost()
    session = host.attach(Session(host, max_queued=2))
    readers_before = {t for t in threading.enumerate() if t.name == "streamer-source"}
    updates, first = [], threading.Event()

    def consume():
        for update in session.stream(_endless()):
            updates.append(update)
            first.set()
            time.sleep(0.01)

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    assert first.wait(30)
    session.close()
    consumer.join(10)
    assert not consumer.is_alive(), "the stream went on after session.close()"
    assert session.closed and host.detached == [session]
    assert not [t for t in threading.enumerate() if t.name == "streamer-source" and t not in readers_before]
    assert session.ask("what?").text.startswith("what? after")  # the state stays usable
    session.close()  # closing twice is harmless
    assert host.detached == [session]
