"""The data-channel wire protocol: JSON text messages, validated before anything acts on them.

Client → server:
  {"type": "ask", "id": "q1", "text": "what color is the circle?"}
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
The same `token`/`answer`/`status`/`error` objects are the server-sent events of
GET /sessions/{id}/events (event name = type).
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


def parse_message(raw: str | bytes, *, max_bytes: int, max_chars: int) -> Ask | Ping:
    """One data-channel message → Ask or Ping; never raises anything but ProtocolError."""
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
    raise ProtocolError("unknown_type", f"unknown message type {kind!r}; use 'ask' or 'ping'",
                        payload.get("id") if isinstance(payload.get("id"), (str, int)) else None)


def error(code: str, message: str, request_id: str | int | None = None) -> dict[str, Any]:
    return {"type": "error", "id": request_id, "code": code, "message": message}


def encode(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))
