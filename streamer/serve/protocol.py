"""The data-channel wire protocol: JSON text messages, validated before anything acts on them.

Client → server:
  {"type": "ask", "id": "q1", "text": "what color is the circle?"}
  {"type": "watch", "id": "w1", "text": "red square", "threshold": 0.5}   (threshold optional: the
                                                 checkpoint's calibrated one; a number in [0, 1])
  {"type": "unwatch", "id": "u1", "watch": 3}    (the number a `watching` reply gave)
  {"type": "search", "id": "s1", "text": "whistle", "k": 5}   (k optional, 1 to 50, default 5)
  {"type": "ping", "id": 7}                      (heartbeat; also any message counts as one)
Server → client:
  {"type": "hello", "session_id": "...", "resumed": false, "model": {...}}   (once, when the channel opens)
  {"type": "token", "id": "q1", "text": "re"}    (answer pieces, in order)
  {"type": "answer", "id": "q1", "text": "red", "t": 3.84, "first_token_ms": 9.1, "latency_ms": 31.0}
  {"type": "status", "snippets": 12, "t": 7.68, "lag_s": 0.0, "dropped": 0, "media_dropped": 0,
   "step_ms": 11.2, "latency_ms": 14.0, "answer_ms": 31.0, "peers": 1}
  {"type": "error", "id": "q1" | null, "code": "rate_limited" | "bad_message" | "closed" | ..., "message": "..."}
                                                 ("closed": the peer closed, e.g. SIGTERM, before answering)
  {"type": "pong", "id": 7}
  {"type": "watching", "id": "w1", "watch": 3, "text": "red square", "threshold": 0.5}
  {"type": "unwatched", "id": "u1", "watch": 3}
  {"type": "event", "watch": 3, "phrase": "red square", "index": 41, "t0": 26.24, "t1": 26.88,
   "score": 0.61, "checked": false}              (a watch fired: the phrase started to match)
  {"type": "moments", "id": "s1", "text": "whistle", "moments": [{"start": 3.84, "end": 5.12,
   "score": 0.58, "first": 6, "last": 7}, ...]}  (best first; spans of neighbouring snippets)
  {"type": "restored", "from": "worker-0", "to": "worker-1", "at": 26.88, "lost_s": 0.0, "replayed": 3,
   "took_s": 1.2}                                 (`serve --cluster` only: the session's worker failed and
                                                  the session continues on another; lost_s of stream lost)
  error codes of these: "unsupported" (the checkpoint has no alignment head), "refused" (a phrase
  the model cannot read), "too_many_watches", "unknown_watch", "bad_message", "too_long"
The same `token`/`answer`/`status`/`error`/`watching`/`unwatched`/`event`/`moments`/`restored` objects are
the server-sent events of GET /sessions/{id}/events (event name = type); POST
/sessions/{id}/watch, /unwatch and /search take the same objects (without "type") as bodies.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


class ProtocolError(ValueError):
    """A message the server will not act on; `code` goes back to the client in an `error`."""

    def __init__(self, code: str, message: str, request_id: str | int | None = None) -> None:
        super().__init__(message)
        self.code, self.request_id = code, request_id


@dataclass(frozen=True)
class Ask:
    id: str | int | None
    text: str


@dataclass(frozen=True)
class Ping:
    id: str | int | None


@dataclass(frozen=True)
class WatchRequest:
    id: str | int | None
    text: str
    threshold: float | None  # None: the checkpoint's calibrated threshold


@dataclass(frozen=True)
class UnwatchRequest:
    id: str | int | None
    watch: int


@dataclass(frozen=True)
class SearchRequest:
    id: str | int | None
    text: str
    k: int


DEFAULT_MOMENTS = 5
MAX_MOMENTS = 50
Message = Ask | Ping | WatchRequest | UnwatchRequest | SearchRequest


def _request_id(value: Any) -> str | int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, str) and len(value) <= 64:
        return value
    raise ProtocolError("bad_message", "'id' must be a string of at most 64 characters or an integer")


def parse_question(payload: Any, max_chars: int) -> Ask:
    """An ask object (data channel or HTTP body) → Ask, or ProtocolError saying what is wrong."""
    if not isinstance(payload, dict):
        raise ProtocolError("bad_message", "a message must be a JSON object")
    request_id = _request_id(payload.get("id"))
    text = payload.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ProtocolError("bad_message", "an ask needs a non-empty 'text' string", request_id)
    if len(text) > max_chars:
        raise ProtocolError("too_long", f"questions are limited to {max_chars} characters", request_id)
    return Ask(request_id, text.strip())


def _object(payload: Any) -> str | int | None:
    if not isinstance(payload, dict):
        raise ProtocolError("bad_message", "a message must be a JSON object")
    return _request_id(payload.get("id"))


def _phrase(payload: dict, max_chars: int, request_id: str | int | None, what: str) -> str:
    text = payload.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ProtocolError("bad_message", f"a {what} needs a non-empty 'text' string, e.g. \"red square\"", request_id)
    if len(text) > max_chars:
        raise ProtocolError("too_long", f"phrases are limited to {max_chars} characters", request_id)
    return text.strip()


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_watch(payload: Any, max_chars: int) -> WatchRequest:
    """A watch object (data channel or HTTP body) → WatchRequest, or ProtocolError saying what is wrong."""
    request_id = _object(payload)
    text = _phrase(payload, max_chars, request_id, "watch")
    threshold = payload.get("threshold")
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))
                                  or not 0.0 <= threshold <= 1.0):
        raise ProtocolError("bad_message", "'threshold' is a cosine similarity between 0 and 1 (or left out for "
                            "the checkpoint's calibrated one)", request_id)
    return WatchRequest(request_id, text, None if threshold is None else float(threshold))


def parse_unwatch(payload: Any) -> UnwatchRequest:
    request_id = _object(payload)
    watch = payload.get("watch")
    if not _whole(watch) or watch < 1:
        raise ProtocolError("bad_message", "an unwatch needs the 'watch' number its `watching` reply gave", request_id)
    return UnwatchRequest(request_id, watch)


def parse_search(payload: Any, max_chars: int) -> SearchRequest:
    request_id = _object(payload)
    text = _phrase(payload, max_chars, request_id, "search")
    k = payload.get("k", DEFAULT_MOMENTS)
    if not _whole(k) or not 1 <= k <= MAX_MOMENTS:
        raise ProtocolError("bad_message", f"'k' is a whole number of moments from 1 to {MAX_MOMENTS}", request_id)
    return SearchRequest(request_id, text, k)


def parse_message(raw: str | bytes, *, max_bytes: int, max_chars: int) -> Message:
    """One data-channel message → Ask, Ping, WatchRequest, UnwatchRequest or SearchRequest;
    never raises anything but ProtocolError."""
    if isinstance(raw, bytes):
        raise ProtocolError("bad_message", "send JSON text messages, not binary")
    if len(raw.encode("utf-8", "surrogatepass")) > max_bytes:
        raise ProtocolError("too_large", f"messages are limited to {max_bytes} bytes")
    try:
        payload = json.loads(raw)
    except (ValueError, RecursionError):
        raise ProtocolError("bad_message", "a message must be valid JSON") from None
    if not isinstance(payload, dict):
        raise ProtocolError("bad_message", "a message must be a JSON object with a 'type'")
    kind = payload.get("type")
    if kind == "ping":
        return Ping(_request_id(payload.get("id")))
    if kind == "ask":
        return parse_question(payload, max_chars)
    if kind == "watch":
        return parse_watch(payload, max_chars)
    if kind == "unwatch":
        return parse_unwatch(payload)
    if kind == "search":
        return parse_search(payload, max_chars)
    raise ProtocolError("unknown_type", f"unknown message type {kind!r}; use 'ask', 'watch', 'unwatch', "
                        "'search' or 'ping'",
                        payload.get("id") if isinstance(payload.get("id"), (str, int)) else None)


def error(code: str, message: str, request_id: str | int | None = None) -> dict[str, Any]:
    return {"type": "error", "id": request_id, "code": code, "message": message}


def encode(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))
