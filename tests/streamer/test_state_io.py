"""Saved session state: round trips exactly, and refuses every malformed file with StateError."""

from __future__ import annotations

import zlib

import msgpack
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model.media import MEDIA_PRESETS
from streamer.chunker import Chunker
from streamer.files import write_atomic
from streamer.media import Snippet
from streamer.state_io import (
    SavedSession,
    StateError,
    StreamClock,
    decode_session,
    encode_session,
    load_session_file,
)

MEDIA = MEDIA_PRESETS["tiny"]
FINGERPRINT = "a" * 64
ALIGN_DIM = 8
SPEC = {
    "memory": ((1, 32, 192), torch.float32),
    "kv": ((1, 2, 3, 64, 64), torch.bfloat16),
    "t": ((1,), torch.int64),
    "empty": ((1, 0), torch.float32),
}


def _saved() -> SavedSession:
    g = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    tensors = {
        "memory": torch.randn(1, 32, 192, generator=g),
        "kv": torch.randn(1, 2, 3, 64, 64, generator=g).to(torch.bfloat16),
        "t": torch.tensor([17]),
        "empty": torch.zeros(1, 0),
    }
    snippet = Snippet(
        index=17,
        t0=17 * MEDIA.snippet_seconds,
        t1=18 * MEDIA.snippet_seconds,
        video=rng.integers(0, 256, (MEDIA.frames_per_snippet, MEDIA.height, MEDIA.width, 3), dtype=np.uint8),
        audio=rng.standard_normal(MEDIA.samples_per_snippet).astype(np.float32) * 0.1,
        audio_filled=True,
    )
    chunker = Chunker(MEDIA)  # mid-stream: frames to repeat, a 44.1 kHz resampler part-way, audio not yet emitted
    for j in range(5):
        chunker.push_video(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8), j / 25)
    chunker.push_audio((0.1 * rng.standard_normal((3000, 2))).astype(np.float32), 0.0, 44100, 2)
    clock = StreamClock(steps=17, dropped=2, last_index=16, t=17 * MEDIA.snippet_seconds)
    watches = [{"id": 1, "phrase": "red square", "threshold": 0.5, "check": None, "armed": False, "fired": 2},
               {"id": 4, "phrase": "drum", "threshold": 0.25, "check": ["is there a drum?", "yes"], "armed": True,
                "fired": 0}]
    index = {"dim": ALIGN_DIM, "capacity": 100, "index": np.arange(17, dtype=np.int64),
             "vectors": rng.standard_normal((17, ALIGN_DIM)).astype(np.float16),
             "times": np.stack([np.arange(17), np.arange(1, 18)], 1) * MEDIA.snippet_seconds}
    return SavedSession(fingerprint=FINGERPRINT, tensors=tensors, clock=clock, chunker=chunker.state_dict(),
                        pending=[snippet], watches=watches, index=index)


def _decode(data: bytes, align_dim: int | None = ALIGN_DIM) -> SavedSession:
    return decode_session(data, fingerprint=FINGERPRINT, spec=SPEC, media=MEDIA, align_dim=align_dim)


GOOD = encode_session(_saved())


def _rewrap(body: dict) -> bytes:
    """A file with a valid envelope and checksum around a hand-made body."""
    body_bytes = msgpack.packb(body, use_bin_type=True)
    envelope = {"format": "streamer-session", "version": 1, "byteorder": "little",
                "crc32": zlib.crc32(body_bytes), "body": body_bytes}
    return msgpack.packb(envelope, use_bin_type=True)


def _body() -> dict:
    return msgpack.unpackb(msgpack.unpackb(GOOD)["body"], strict_map_key=False)


def _assert_same(a, b) -> None:
    """Nested dicts, lists, numbers and arrays equal, arrays in dtype and shape too."""
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys()
        for key in a:
            _assert_same(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    else:
        assert a == b and type(a) is type(b), (a, b)


def test_round_trip_is_exact(tmp_path):
    saved = _saved()
    path = write_atomic(tmp_path / "s" / "state.msgpack", GOOD)
    back = load_session_file(path, fingerprint=FINGERPRINT, spec=SPEC, media=MEDIA)
    for name, tensor in saved.tensors.items():
        assert back.tensors[name].dtype == tensor.dtype
        assert torch.equal(back.tensors[name], tensor)
    assert back.clock == saved.clock
    _assert_same(back.chunker, saved.chunker)
    restored = Chunker(MEDIA)
    restored.load_state_dict(back.chunker)
    _assert_same(restored.state_dict(), saved.chunker)
    (snippet,), original = back.pending, saved.pending[0]
    assert (snippet.index, snippet.t0, snippet.t1, snippet.audio_filled) == (17, original.t0, original.t1, True)
    np.testing.assert_array_equal(snippet.video, original.video)
    np.testing.assert_array_equal(snippet.audio, original.audio)
    assert back.watches == saved.watches
    _assert_same(back.index, saved.index)


def test_watches_and_the_index_belong_to_a_model_that_aligns():
    with pytest.raises(StateError, match="no alignment head"):
        _decode(GOOD, align_dim=0)
    with pytest.raises(StateError, match="different model"):
        _decode(GOOD, align_dim=ALIGN_DIM * 2)
    body = _body()
    del body["watches"], body["index"]  # a file from before watches existed
    old = _decode(_rewrap(body), align_dim=0)
    assert old.watches == [] and old.index is None and old.clock.steps == 17


def test_other_model_is_refused_with_a_clear_message():
    with pytest.raises(StateError, match="different model"):
        decode_session(GOOD, fingerprint="b" * 64, spec=SPEC, media=MEDIA)
    other_spec = dict(SPEC, memory=((1, 16, 192), torch.float32))
    with pytest.raises(StateError, match="memory"):
        decode_session(GOOD, fingerprint=FINGERPRINT, spec=other_spec, media=MEDIA)
    with pytest.raises(StateError, match="missing"):
        decode_session(GOOD, fingerprint=FINGERPRINT, spec=dict(SPEC, extra=((1,), torch.int64)), media=MEDIA)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda e: e.update(version=2), "version"),
        (lambda e: e.update(format="something-else"), "not a streamer session"),
        (lambda e: e.update(byteorder="big"), "byte order"),
        (lambda e: e.update(crc32=e["crc32"] ^ 1), "checksum"),
        (lambda e: e.pop("body"), "body"),
        (lambda e: e.update(body="text"), "body"),
    ],
)
def test_bad_envelope(mutate, message):
    envelope = msgpack.unpackb(GOOD)
    mutate(envelope)
    with pytest.raises(StateError, match=message):
        _decode(msgpack.packb(envelope, use_bin_type=True))


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b["tensors"]["memory"].update(dtype="float16"),
        lambda b: b["tensors"]["memory"].update(dtype="complex64"),
        lambda b: b["tensors"]["memory"].update(shape=[1, 32, -192]),
        lambda b: b["tensors"]["memory"].update(shape="1x32x192"),
        lambda b: b["tensors"]["memory"].update(data=b["tensors"]["memory"]["data"][:-4]),
        lambda b: b["tensors"]["memory"].update(data=b"\x00\x00\xc0\x7f" * (32 * 192)),  # NaN
        lambda b: b["tensors"].update(memory=[1, 2, 3]),
        lambda b: b.update(tensors=None),
        lambda b: b["tensors"].pop("t"),
        lambda b: b.update(clock={"steps": -1, "dropped": 0, "last_index": 0, "t": 0.0}),
        lambda b: b.update(clock={"steps": 1, "dropped": 0, "last_index": 0, "t": float("nan")}),
        lambda b: b.update(clock={"steps": True, "dropped": 0, "last_index": 0, "t": 0.0}),
        lambda b: b.update(clock="now"),
        lambda b: b.update(chunker=[1, 2]),
        lambda b: b.update(pending={"a": 1}),
        lambda b: b["pending"][0].update(video=msgpack.ExtType(1, msgpack.packb(["|u1", [2, 2], b"abcd"]))),
        lambda b: b["pending"][0].update(audio=msgpack.ExtType(1, msgpack.packb(["<f4", [3], b"abcd"]))),
        lambda b: b["pending"][0].update(audio=msgpack.ExtType(1, msgpack.packb(["<c8", [1], b"abcdefgh"]))),
        lambda b: b["pending"][0].update(audio=msgpack.ExtType(9, b"")),
        lambda b: b["pending"][0].update(t1=b["pending"][0]["t0"] - 1),
        lambda b: b["pending"][0].update(index="first"),
        lambda b: b["pending"][0].pop("video_filled"),
        lambda b: b.update(fingerprint=12),
        lambda b: b.update(watches="red square"),
        lambda b: b["watches"].append("drum"),
        lambda b: b["watches"][0].update(id=0),
        lambda b: b["watches"][1].update(id=1),
        lambda b: b["watches"][0].update(phrase=""),
        lambda b: b["watches"][0].update(phrase=7),
        lambda b: b["watches"][0].update(threshold=float("nan")),
        lambda b: b["watches"][0].update(threshold=-0.5),
        lambda b: b["watches"][0].update(armed=1),
        lambda b: b["watches"][0].update(fired=-1),
        lambda b: b["watches"][1].update(check=["is there a drum?", ""]),
        lambda b: b["watches"][1].update(check="yes"),
        lambda b: b["watches"][0].pop("phrase"),
        lambda b: b.update(index=[1, 2]),
        lambda b: b["index"].update(capacity=3),
        lambda b: b["index"].update(dim="8"),
        lambda b: b["index"].pop("times"),
        lambda b: b["index"].update(vectors=msgpack.ExtType(1, msgpack.packb(["<f4", [17, 8], b"\0" * 17 * 8 * 4]))),
        lambda b: b["index"].update(vectors=msgpack.ExtType(1, msgpack.packb(["<f2", [17, 8], b"\0\x7e" * 17 * 8]))),
        lambda b: b["index"].update(index=msgpack.ExtType(1, msgpack.packb(["<i8", [17], b"\xff" * 17 * 8]))),
        lambda b: b["index"].update(times=msgpack.ExtType(1, msgpack.packb(["<f8", [17, 2], b"\0" * 270 + b"\xf0\x7f"]))),  # inf
    ],
)
def test_bad_body_fields_are_refused(mutate):
    body = _body()
    mutate(body)
    with pytest.raises(StateError):
        _decode(_rewrap(body))


def test_every_truncation_is_refused():
    for cut in range(0, len(GOOD), max(1, len(GOOD) // 997)):
        with pytest.raises(StateError):
            _decode(GOOD[:cut])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_random_bytes_are_refused(data):
    with pytest.raises(StateError):
        _decode(data)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(GOOD) - 1), st.integers(1, 255)), min_size=1, max_size=8,
                unique_by=lambda flip: flip[0]))
def test_corrupted_bytes_are_refused(flips):
    data = bytearray(GOOD)
    for position, xor in flips:
        data[position] ^= xor
    with pytest.raises(StateError):
        _decode(bytes(data))


# Any msgpack value in the body's place: a well-formed file with garbage inside.
_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=8) | st.binary(max_size=16),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["fingerprint", "tensors", "clock", "chunker", "pending", "x"]), _values))
def test_structured_garbage_is_refused(fields):
    body = dict(fields)
    body.setdefault("fingerprint", FINGERPRINT)
    with pytest.raises(StateError):
        _decode(_rewrap(body))


def test_missing_file_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="no session state file"):
        load_session_file(tmp_path / "nope.msgpack", fingerprint=FINGERPRINT, spec=SPEC, media=MEDIA)
