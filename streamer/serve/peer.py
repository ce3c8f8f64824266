"""One WebRTC connection: negotiate, drain its tracks into a live session, watch that it lives.

A peer is freed (its slot returned, its tracks stopped, its session detached for a
resume) when ICE fails or closes, when it does not connect within `connect_timeout_s`,
or when neither media nor a data-channel message has arrived for `heartbeat_timeout_s`:
aiortc alone notices a vanished peer only after ~28 s of consent-freshness failures.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription

from streamer.serve import protocol
from streamer.serve.config import ServeConfig
from streamer.serve.live import LiveSession, RateLimited
from streamer.serve.tracks import FrameConverter, Stamper, read_track

log = logging.getLogger(__name__)

_WATCH_EVERY_S = 0.25
_FLUSH_TIMEOUT_S = 0.5  # at close, how long unanswered questions' errors may take to leave
_VIDEO_ITEMS_PER_S, _AUDIO_ITEMS_PER_S = 60, 50  # upper bounds: 60 fps cameras, 20 ms audio frames


class SdpError(ValueError):
    """An offer the server cannot use; the message says what is wrong."""


def check_offer_sdp(sdp: Any, max_bytes: int) -> str:
    """Cheap structural checks before aiortc parses anything."""
    if not isinstance(sdp, str) or not sdp:
        raise SdpError("the offer must carry an SDP string")
    if len(sdp.encode("utf-8", "surrogatepass")) > max_bytes:
        raise SdpError(f"the SDP offer is larger than {max_bytes} bytes")
    if not sdp.startswith("v=0"):
        raise SdpError("this is not an SDP offer (it must start with 'v=0')")
    if not any(line.startswith(("m=audio", "m=video")) for line in sdp.splitlines()):
        raise SdpError("the offer has no audio or video section; send at least one media track")
    return sdp


class Peer:
    """A remote peer feeding one LiveSession; `kind` is 'webrtc' (data channel) or 'whip'."""

    def __init__(self, config: ServeConfig, live: LiveSession, kind: str, converter: FrameConverter,
                 on_closed: Callable[[Peer], Awaitable[None]]) -> None:
        self.id = secrets.token_urlsafe(12)
        self.config, self.live, self.kind = config, live, kind
        self.converter = converter
        self._on_closed = on_closed
        ice = [RTCIceServer(urls=url) for url in config.ice_servers]
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=ice))
        self.created = time.monotonic()
        self.connected_at: float | None = None
        self.last_seen = self.created
        self.closed = False
        self.close_reason: str | None = None
        self.stampers: dict[str, Stamper] = {}
        self._tasks: set[asyncio.Task] = set()
        self._asking: set[str | int] = set()  # question ids not yet answered: told why if the peer closes
        self._channel = None
        self._unlisten: Callable[[], None] | None = None
        self.answer_sdp = ""

    # ------------------------------------------------------------------ negotiation
    async def answer(self, offer_sdp: str) -> str:
        """Apply the offer and return the SDP answer (complete: aiortc has no trickle ICE)."""
        pc = self.pc
        buffer, clock = self.live.start_stream(
            max_items=round(self.config.media_buffer_s * (_VIDEO_ITEMS_PER_S + _AUDIO_ITEMS_PER_S)))

        @pc.on("track")
        def on_track(track) -> None:
            if track.kind not in ("audio", "video") or track.kind in self.stampers:
                return  # one camera and one microphone per peer; extra tracks are ignored
            stamper = self.stampers[track.kind] = Stamper(clock)
            self._spawn(read_track(track, track.kind, stamper, buffer, self.converter, self._seen))

        @pc.on("datachannel")
        def on_datachannel(channel) -> None:
            if self._channel is not None:
                return
            self._channel = channel
            channel.on("message", self._on_message)
            channel.on("open", self._hello)
            if channel.readyState == "open":
                self._hello()

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            log.info("peer %s: connection %s", self.id, pc.connectionState)
            if pc.connectionState == "connected" and self.connected_at is None:
                self.connected_at = self.last_seen = time.monotonic()
            elif pc.connectionState in ("failed", "closed"):
                await self.close(self._why_failed() if pc.connectionState == "failed" else "connection closed")

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:  # aiortc raises ValueError and others for SDP it cannot use
            raise SdpError(f"the offer could not be negotiated: {exc}") from None
        self._spawn(self._watch())
        self.answer_sdp = pc.localDescription.sdp
        return self.answer_sdp

    def _why_failed(self) -> str:
        """ICE through but never connected means DTLS failed; FFmpeg's whip muxer (the GnuTLS build in
        PyAV's wheels) signs with a P-224 key that OpenSSL 4 no longer accepts in TLS, and its own
        error ("A TLS fatal alert has been received") does not say so."""
        if self.connected_at is None and self.pc.iceConnectionState in ("connected", "completed"):
            reason = "connection failed: DTLS handshake failed after ICE connected"
            if self.kind == "whip":
                reason += "; an FFmpeg whip publisher needs a P-256 certificate: -cert_file/-key_file (README)"
            return reason
        return "connection failed"

    def _spawn(self, coroutine) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _seen(self) -> None:
        self.last_seen = time.monotonic()

    async def _watch(self) -> None:
        """Free the peer when it does not connect in time or stops showing signs of life."""
        cfg = self.config
        while not self.closed:
            await asyncio.sleep(_WATCH_EVERY_S)
            now = time.monotonic()
            if self.connected_at is None and now - self.created > cfg.connect_timeout_s:
                await self.close(f"not connected within {cfg.connect_timeout_s:g} s")
            elif self.connected_at is not None and now - self.last_seen > cfg.heartbeat_timeout_s:
                await self.close(f"no media and no message for {cfg.heartbeat_timeout_s:g} s")
            elif self.connected_at is not None and now - self.live.last_status >= cfg.status_every_s:
                self.live.push_status()  # snippets push their own; this covers a peer sending no media

    # ----------------------------------------------------------------- data channel
    def _hello(self) -> None:
        if self._unlisten is None:
            self._unlisten = self.live.listen(self._send)
        self._send({"type": "hello", "session_id": self.live.id, "peer_id": self.id,
                    "resumed": self.live.stats.snippets > 0, "limits": {
                        "max_message_bytes": self.config.max_message_bytes,
                        "max_question_chars": self.config.max_question_chars,
                        "questions_per_s": self.config.questions_per_s,
                        "max_watches": self.config.max_watches,
                        "can_watch": self.live.session.can_align}})

    def _send(self, message: dict[str, Any]) -> None:
        channel = self._channel
        if channel is None or channel.readyState != "open":
            return
        if message["type"] == "status" and channel.bufferedAmount > self.config.max_send_buffer:
            return  # a slow reader skips status updates; media and answers are not held up
        channel.send(protocol.encode(message))

    async def _flush_channel(self, timeout: float) -> None:
        """Give queued messages a moment to leave: closing the connection drops what SCTP still holds."""
        channel, deadline = self._channel, asyncio.get_running_loop().time() + timeout
        while channel is not None and channel.readyState == "open" and channel.bufferedAmount > 0 \
                and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # bufferedAmount reaches 0 when SCTP takes the data, before it is on the wire

    def _on_message(self, raw: str | bytes) -> None:
        self._seen()
        cfg = self.config
        try:
            message = protocol.parse_message(raw, max_bytes=cfg.max_message_bytes, max_chars=cfg.max_question_chars)
        except protocol.ProtocolError as exc:
            self._send(protocol.error(exc.code, str(exc), exc.request_id))
            return
        if isinstance(message, protocol.Ping):
            self._send({"type": "pong", "id": message.id})
        elif isinstance(message, protocol.Ask):
            self._spawn(self._ask(message))
        else:
            self._spawn(self._request(message))

    async def _request(self, message) -> None:
        """A watch, unwatch or search: its reply is published to every listener; an error goes to this peer."""
        try:
            if isinstance(message, protocol.WatchRequest):
                await self.live.watch(message)
            elif isinstance(message, protocol.UnwatchRequest):
                self.live.unwatch(message)
            else:
                await self.live.search(message)
        except protocol.ProtocolError as exc:
            self._send(protocol.error(exc.code, str(exc), message.id))
        except RateLimited as exc:
            self._send(protocol.error("rate_limited", str(exc), message.id))
        except ValueError as exc:  # the model refused the phrase (empty once trimmed, too long)
            self._send(protocol.error("refused", str(exc), message.id))

    async def _ask(self, question: protocol.Ask) -> None:
        self._asking.add(question.id)
        try:
            await self.live.ask(question)
        except RateLimited as exc:
            self._send(protocol.error("rate_limited", str(exc), question.id))
        except ValueError as exc:  # the model refused the question (too long for its budget)
            self._send(protocol.error("refused", str(exc), question.id))
        finally:
            self._asking.discard(question.id)

    # ------------------------------------------------------------------------ close
    async def close(self, reason: str) -> None:
        """Stop everything this peer holds; idempotent. The session stays for a resume."""
        if self.closed:
            return
        self.closed, self.close_reason = True, reason
        log.info("peer %s (%s, session %s) closed: %s", self.id, self.kind, self.live.id, reason)
        if self._unlisten is not None:
            self._unlisten()
        if self._asking:  # never leave a question silently unanswered
            for request_id in sorted(self._asking, key=str):
                self._send(protocol.error("closed", f"not answered: {reason}", request_id))
            await self._flush_channel(_FLUSH_TIMEOUT_S)
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        await self.pc.close()
        await self.live.stop_stream()
        await self._on_closed(self)
