"""Saved session state: msgpack on disk, validated field by field on the way back in.

A saved stream must resume on another process or machine exactly where it stopped, and a
file that is truncated, random, hand-edited or written by another model must be refused
with a message that says what is wrong, never crash deep inside msgpack or torch. So the
file is an envelope (format, version, checksum) around a body that holds the model state
tensors as raw bytes, the stream's clock, the chunker's pending data and the snippets
that were queued but not yet stepped; every piece is checked before anything is built.
A model that aligns also saves the session's watches (without their vectors, which are
recomputed from the phrases) and its moment index; files written before they existed
have neither, and load with no watches and an empty index.
"""

from __future__ import annotations

import math
import os
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import torch

from model.media import MediaSpec, Snippet
from model.state import State, StateSpec

FORMAT = "streamer-session"
VERSION = 1
_NDARRAY_EXT = 1
_MAX_NDIM = 8
_MAX_PENDING = 4096
_MAX_WATCHES = 1_000_000
_MAX_PHRASE_CHARS = 4096  # far past any model's phrase budget: the model refuses a long phrase itself
_MAX_INDEX_SNIPPETS = 2**32

# Element types a saved file may name; anything else is rejected before a buffer is read.
_TORCH_DTYPES: dict[str, torch.dtype] = {
    "float64": torch.float64,
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "int64": torch.int64,
    "int32": torch.int32,
    "int16": torch.int16,
    "int8": torch.int8,
    "uint8": torch.uint8,
    "bool": torch.bool,
}
_NUMPY_DTYPES = {"<f8", "<f4", "<f2", "<i8", "<i4", "<i2", "|i1", "|u1", "<u2", "<u4", "<u8", "|b1"}


class StateError(ValueError):
    """A saved session file that cannot be resumed: malformed, corrupted or for another model."""


@dataclass
class StreamClock:
    """Where a stream stands: what has been stepped into the state and what was dropped."""

    steps: int = 0  # snippets folded into the model state
    dropped: int = 0  # whole snippets dropped because a live source outran the engine
    last_index: int = -1  # index of the last stepped snippet (-1 before the first)
    t: float = 0.0  # stream seconds covered by the state (t1 of the last stepped snippet)

    def to_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "dropped": self.dropped, "last_index": self.last_index, "t": self.t}


@dataclass
class SavedSession:
    """Everything needed to resume one stream: model state rows (batch 1) and stream bookkeeping."""

    fingerprint: str
    tensors: State
    clock: StreamClock = field(default_factory=StreamClock)
    chunker: dict[str, Any] = field(default_factory=dict)
    pending: list[Snippet] = field(default_factory=list)
    watches: list[dict[str, Any]] = field(default_factory=list)  # `Watch.to_dict()` of each
    index: dict[str, Any] | None = None  # `SnippetIndex.state_dict()`; None: the model cannot align


# ---------------------------------------------------------------------------------------
# writing


def _pack_ndarray(array: np.ndarray) -> msgpack.ExtType:
    array = np.ascontiguousarray(array)
    dtype = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
    array = array.astype(dtype, copy=False)
    inner = msgpack.packb([array.dtype.str, list(array.shape), array.tobytes()], use_bin_type=True)
    return msgpack.ExtType(_NDARRAY_EXT, inner)


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return _pack_ndarray(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, torch.Tensor):
        return _pack_ndarray(obj.detach().cpu().numpy())
    raise TypeError(f"cannot save a {type(obj).__name__} in session state")


def _tensor_record(tensor: torch.Tensor) -> dict[str, Any]:
    tensor = tensor.detach().to("cpu").contiguous()
    name = str(tensor.dtype).removeprefix("torch.")
    if name not in _TORCH_DTYPES:
        raise ValueError(f"cannot save a state tensor of dtype {name}")
    data = tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b""
    return {"dtype": name, "shape": list(tensor.shape), "data": data}


def _snippet_record(snippet: Snippet) -> dict[str, Any]:
    return {
        "index": int(snippet.index),
        "t0": float(snippet.t0),
        "t1": float(snippet.t1),
        "video": snippet.video,
        "audio": snippet.audio,
        "video_filled": bool(snippet.video_filled),
        "audio_filled": bool(snippet.audio_filled),
    }


def encode_session(saved: SavedSession) -> bytes:
    """Serialise a session to bytes (the format `decode_session` reads)."""
    body = {
        "fingerprint": saved.fingerprint,
        "tensors": {name: _tensor_record(t) for name, t in saved.tensors.items()},
        "clock": saved.clock.to_dict(),
        "chunker": saved.chunker,
        "pending": [_snippet_record(s) for s in saved.pending],
        "watches": saved.watches,
        "index": saved.index,
    }
    return _seal(body)


def _seal(body: dict[str, Any]) -> bytes:
    body_bytes = msgpack.packb(body, default=_default, use_bin_type=True)
    envelope = {
        "format": FORMAT,
        "version": VERSION,
        "byteorder": "little",
        "crc32": zlib.crc32(body_bytes),
        "body": body_bytes,
    }
    return msgpack.packb(envelope, use_bin_type=True)


# ---------------------------------------------------------------------------------------
# reading and validation


def _unpack_ndarray(code: int, data: bytes) -> Any:
    if code != _NDARRAY_EXT:
        raise StateError(f"unknown msgpack extension type {code}")
    try:
        dtype_str, shape, raw = msgpack.unpackb(data, raw=False)
    except Exception as exc:
        raise StateError(f"malformed array record: {exc}") from None
    if dtype_str not in _NUMPY_DTYPES:
        raise StateError(f"array of unsupported dtype {dtype_str!r}")
    shape = _check_shape(shape, "array")
    dtype = np.dtype(dtype_str)
    if not isinstance(raw, bytes) or len(raw) != math.prod(shape) * dtype.itemsize:
        raise StateError(f"array of shape {shape} and dtype {dtype_str} has the wrong number of bytes")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


def _check_shape(shape: Any, what: str) -> tuple[int, ...]:
    if (
        not isinstance(shape, list)
        or len(shape) > _MAX_NDIM
        or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**40 for d in shape)
    ):
        raise StateError(f"{what} has an invalid shape {shape!r}")
    return tuple(shape)


def _require(body: dict, key: str, kind: type | tuple[type, ...]) -> Any:
    if key not in body:
        raise StateError(f"the saved state has no {key!r} field")
    value = body[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
        raise StateError(f"the saved state's {key!r} field is a {type(value).__name__}, not {_kind_name(kind)}")
    return value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    return " or ".join(k.__name__ for k in _as_tuple(kind))


def _decode_tensors(records: dict, spec: StateSpec) -> State:
    names, expected = set(records), set(spec)
    if names != expected:
        missing, extra = sorted(expected - names, key=str), sorted(names - expected, key=str)
        raise StateError(
            f"the saved state tensors do not match this model (missing {missing}, unexpected {extra}); "
            "it was written by a different model or configuration"
        )
    tensors = {}
    for name, (shape, dtype) in spec.items():
        record = records[name]
        if not isinstance(record, dict):
            raise StateError(f"state tensor {name!r} is malformed")
        dtype_name = _require(record, "dtype", str)
        if dtype_name not in _TORCH_DTYPES:
            raise StateError(f"state tensor {name!r} has unsupported dtype {dtype_name!r}")
        got_shape = _check_shape(_require(record, "shape", list), f"state tensor {name!r}")
        want_dtype = str(dtype).removeprefix("torch.")
        if got_shape != tuple(shape) or dtype_name != want_dtype:
            raise StateError(
                f"state tensor {name!r} is {dtype_name}{list(got_shape)} but this model needs "
                f"{want_dtype}{list(shape)}; the file was written by a different model configuration"
            )
        data = _require(record, "data", bytes)
        torch_dtype = _TORCH_DTYPES[dtype_name]
        itemsize = torch.empty((), dtype=torch_dtype).element_size()
        if len(data) != math.prod(got_shape) * itemsize:
            raise StateError(f"state tensor {name!r} has {len(data)} bytes, expected {math.prod(got_shape) * itemsize}")
        if data:
            tensor = torch.frombuffer(bytearray(data), dtype=torch_dtype).reshape(got_shape)
        else:
            tensor = torch.empty(got_shape, dtype=torch_dtype)
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise StateError(f"state tensor {name!r} holds NaN or infinite values")
        tensors[name] = tensor
    return tensors


def _decode_clock(raw: Any) -> StreamClock:
    if not isinstance(raw, dict):
        raise StateError("the saved stream clock is malformed")
    ints = {key: _require(raw, key, int) for key in ("steps", "dropped", "last_index")}
    t = _require(raw, "t", (int, float))
    if ints["steps"] < 0 or ints["dropped"] < 0 or ints["last_index"] < -1 or not math.isfinite(t) or t < 0:
        raise StateError(f"the saved stream clock has impossible values {raw!r}")
    return StreamClock(steps=ints["steps"], dropped=ints["dropped"], last_index=ints["last_index"], t=float(t))


def _decode_snippet(raw: Any, media: MediaSpec) -> Snippet:
    if not isinstance(raw, dict):
        raise StateError("a pending snippet in the saved state is malformed")
    index = _require(raw, "index", int)
    t0, t1 = _require(raw, "t0", (int, float)), _require(raw, "t1", (int, float))
    video, audio = _require(raw, "video", np.ndarray), _require(raw, "audio", np.ndarray)
    want_video = (media.frames_per_snippet, media.height, media.width, 3)
    if video.shape != want_video or video.dtype != np.uint8:
        raise StateError(f"a pending snippet's video is {video.dtype}{list(video.shape)}, expected uint8{list(want_video)}")
    if audio.shape != (media.samples_per_snippet,) or audio.dtype != np.float32:
        raise StateError(
            f"a pending snippet's audio is {audio.dtype}{list(audio.shape)}, expected float32[{media.samples_per_snippet}]"
        )
    if index < 0 or not (math.isfinite(t0) and math.isfinite(t1) and t0 < t1) or not np.isfinite(audio).all():
        raise StateError("a pending snippet in the saved state has impossible times or samples")
    return Snippet(
        index=index,
        t0=float(t0),
        t1=float(t1),
        video=video,
        audio=audio,
        video_filled=_require(raw, "video_filled", bool),
        audio_filled=_require(raw, "audio_filled", bool),
    )


def _decode_watches(raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or len(raw) > _MAX_WATCHES:
        raise StateError("the saved watches are malformed (not a list of watches)")
    watches, ids = [], set()
    for record in raw:
        if not isinstance(record, dict):
            raise StateError("a saved watch is malformed")
        watch_id, fired = _require(record, "id", int), _require(record, "fired", int)
        phrase = _require(record, "phrase", str)
        threshold = _require(record, "threshold", (int, float))
        check = record.get("check")
        if watch_id < 1 or watch_id in ids or fired < 0 or not 0 < len(phrase) <= _MAX_PHRASE_CHARS \
                or not (math.isfinite(threshold) and 0.0 <= threshold <= 1.0):
            raise StateError(f"a saved watch has impossible values (id {watch_id!r}, threshold {threshold!r})")
        if check is not None and not (isinstance(check, list) and len(check) == 2 and all(
                isinstance(part, str) and 0 < len(part) <= _MAX_PHRASE_CHARS for part in check)):
            raise StateError("a saved watch's check is not a (question, answer) pair")
        ids.add(watch_id)
        watches.append({"id": watch_id, "phrase": phrase, "threshold": float(threshold), "check": check,
                        "armed": _require(record, "armed", bool), "fired": fired})
    return watches


def _decode_index(raw: Any, align_dim: int | None) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise StateError("the saved moment index is malformed")
    dim, capacity = _require(raw, "dim", int), _require(raw, "capacity", int)
    vectors, indices, times = (_require(raw, key, np.ndarray) for key in ("vectors", "index", "times"))
    if align_dim and dim != align_dim:  # 0: refused below, saying the model has no head
        raise StateError(f"the saved moment index holds {dim}-dimensional vectors but this model's are "
                         f"{align_dim}-dimensional; it was written by a different model")
    n = len(indices)
    if not (0 < dim <= 2**16 and 0 < capacity <= _MAX_INDEX_SNIPPETS and n <= capacity) \
            or vectors.dtype != np.float16 or indices.dtype != np.int64 or times.dtype != np.float64 \
            or vectors.shape != (n, dim) or indices.shape != (n,) or times.shape != (n, 2):
        raise StateError("the saved moment index is malformed (its arrays do not agree)")
    if not (np.isfinite(vectors).all() and np.isfinite(times).all() and (indices >= 0).all()
            and (times[:, 0] <= times[:, 1]).all()):
        raise StateError("the saved moment index holds impossible values (NaN, negative indices, reversed times)")
    return {"dim": dim, "capacity": capacity, "vectors": vectors, "index": indices, "times": times}


def decode_session(
    data: bytes,
    *,
    fingerprint: str,
    spec: StateSpec,
    media: MediaSpec,
    align_dim: int | None = None,
) -> SavedSession:
    """Parse and validate saved bytes against the model that will resume them.

    `spec` is `model.state_spec(1)`; `align_dim` the model's `align.dim` (0: it cannot align,
    so saved watches or an index are refused; None: not checked). Raises StateError (a ValueError) for anything that is
    not a complete, intact state written for this exact checkpoint. The chunker's pending
    data is returned as plain python + numpy; the chunker validates it when it loads it.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise StateError(f"session state must be bytes, not {type(data).__name__}")
    envelope = _unpack(bytes(data), "file")
    if envelope.get("format") != FORMAT:
        raise StateError(f"not a streamer session state (format {envelope.get('format')!r}, expected {FORMAT!r})")
    version = envelope.get("version")
    if version != VERSION:
        raise StateError(
            f"session state version {version!r} is not supported by this streamer (it reads version {VERSION}); "
            "save the session again with a matching streamer release"
        )
    if envelope.get("byteorder") != "little" or sys.byteorder != "little":
        raise StateError("session state byte order does not match this machine (only little-endian is supported)")
    body_bytes = _require(envelope, "body", bytes)
    if _require(envelope, "crc32", int) != zlib.crc32(body_bytes):
        raise StateError("the session state is corrupted (checksum mismatch); the file was damaged or truncated")
    body = _unpack(body_bytes, "body")
    saved_fingerprint = _require(body, "fingerprint", str)
    if saved_fingerprint != fingerprint:
        raise StateError(
            f"this state was saved by a different model (checkpoint fingerprint {saved_fingerprint[:16]}…, "
            f"loaded model {fingerprint[:16]}…); load it with the engine of the checkpoint that wrote it"
        )
    tensors = _decode_tensors(_require(body, "tensors", dict), spec)
    clock = _decode_clock(body.get("clock"))
    chunker = _require(body, "chunker", dict)
    pending_raw = _require(body, "pending", list)
    if len(pending_raw) > _MAX_PENDING:
        raise StateError(f"the saved state holds {len(pending_raw)} pending snippets, more than any queue allows")
    pending = [_decode_snippet(raw, media) for raw in pending_raw]
    watches = _decode_watches(body.get("watches", []))  # absent in files written before watches existed
    index = None if body.get("index") is None else _decode_index(body["index"], align_dim)
    if align_dim == 0 and (watches or index is not None):
        raise StateError("the saved session has watches or a moment index, but this model has no alignment head; "
                         "load it with the engine of the checkpoint that wrote it")
    return SavedSession(fingerprint=saved_fingerprint, tensors=tensors, clock=clock, chunker=chunker, pending=pending,
                        watches=watches, index=index)


def _unpack(data: bytes, what: str) -> dict:
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=False, ext_hook=_unpack_ndarray)
    except StateError:
        raise
    except Exception as exc:  # msgpack raises many types (ExtraData, FormatError, StackError, ...)
        raise StateError(f"the session state {what} is not valid msgpack ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise StateError(f"the session state {what} is a {type(obj).__name__}, not a map")
    return obj


def _body(data: bytes) -> dict:
    """The checked body of saved bytes (format, version and checksum), not yet validated against a model."""
    envelope = _unpack(bytes(data), "file")
    if envelope.get("format") != FORMAT or envelope.get("version") != VERSION:
        raise StateError(f"not a streamer session state of version {VERSION}")
    body_bytes = _require(envelope, "body", bytes)
    if _require(envelope, "crc32", int) != zlib.crc32(body_bytes):
        raise StateError("the session state is corrupted (checksum mismatch); the file was damaged or truncated")
    return _unpack(body_bytes, "body")


def split_front(data: bytes, media: MediaSpec) -> tuple[bytes, dict[str, Any], list[Snippet]]:
    """Saved bytes split for a cluster: the state its worker resumes (without the queue), and the
    chunker tail and queued snippets for the front, which cuts the media and sends the queue on.
    The worker's copy of the tail is never used: no media reaches its chunker."""
    body = _body(data)
    chunker = _require(body, "chunker", dict)
    pending = [_decode_snippet(raw, media) for raw in _require(body, "pending", list)[:_MAX_PENDING]]
    body["pending"] = []
    return _seal(body), chunker, pending


def with_front(data: bytes, chunker: dict[str, Any], pending: list[Snippet]) -> bytes:
    """A worker's saved bytes completed with the front's chunker tail and queued snippets, so they
    resume anywhere, in one process too (the inverse of `split_front`)."""
    body = _body(data)
    body["chunker"] = chunker
    body["pending"] = [_snippet_record(s) for s in pending]
    return _seal(body)


def load_session_file(
    path: str | os.PathLike,
    *,
    fingerprint: str,
    spec: StateSpec,
    media: MediaSpec,
    align_dim: int | None = None,
) -> SavedSession:
    """Read and validate a saved session file (see `decode_session`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no session state file at {path}")
    try:
        return decode_session(path.read_bytes(), fingerprint=fingerprint, spec=spec, media=media, align_dim=align_dim)
    except StateError as exc:
        raise StateError(f"{path}: {exc}") from None
