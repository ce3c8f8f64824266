"""The HTTP side: routes, auth, the peer cap, and the registry of peers and sessions.

All state lives on the `Server` object stored in the aiohttp app (`app[SERVER]`).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from typing import Any

from aiohttp import web

from streamer.serve import protocol
from streamer.serve.config import ServeConfig
from streamer.serve.live import LiveSession, RateLimited
from streamer.serve.peer import Peer, SdpError, check_offer_sdp
from streamer.serve.tracks import FrameConverter

log = logging.getLogger(__name__)

_SWEEP_EVERY_S = 1.0
_SSE_KEEPALIVE_S = 15.0


def _error(status: int, code: str, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status, headers=headers)


class Server:
    """Peers and sessions of one `streamer serve` process around one Engine."""

    def __init__(self, config: ServeConfig, engine) -> None:
        self.config = config
        self.engine = engine
        self.peers: dict[str, Peer] = {}
        self.sessions: dict[str, LiveSession] = {}
        self.answers = ThreadPoolExecutor(config.answer_workers, thread_name_prefix="serve-answer")
        self.media = engine.media
        self.page = resources.files("streamer.serve").joinpath("page/index.html").read_text(encoding="utf-8")
        self._sweeper: asyncio.Task | None = None

    # ----------------------------------------------------------------- sessions
    def _session_for(self, session_id: Any) -> LiveSession:
        """The session named by a reconnecting peer, or a new one."""
        if session_id is not None:
            if not isinstance(session_id, str) or session_id not in self.sessions:
                raise KeyError("unknown or expired session id; connect without one to start a new session")
            return self.sessions[session_id]
        live = LiveSession(self.engine.session(max_queued=self.config.engine_max_queued), asyncio.get_running_loop(),
                           self.answers, lambda: len(self.peers), questions_per_s=self.config.questions_per_s,
                           question_burst=self.config.question_burst, max_watches=self.config.max_watches)
        self.sessions[live.id] = live
        return live

    async def connect(self, sdp: str, kind: str, session_id: Any) -> Peer:
        """Cap, session (new or resumed), negotiation; the slot is freed on any failure."""
        if len(self.peers) >= self.config.max_peers:
            raise web.HTTPServiceUnavailable(
                text=json.dumps({"error": "full", "message": f"the server is at its limit of {self.config.max_peers} "
                                 "peers; try again later"}), content_type="application/json",
                headers={"Retry-After": "5"})
        live = self._session_for(session_id)
        for other in list(self.peers.values()):
            if other.live is live:  # a reload or network change: the old connection gives way
                await other.close("replaced by a reconnect")
        peer = Peer(self.config, live, kind, FrameConverter(self.media.width, self.media.height),
                    on_closed=self._peer_closed)
        self.peers[peer.id] = peer
        try:
            await peer.answer(sdp)
        except BaseException:
            await peer.close("negotiation failed")
            if session_id is None:
                await self._drop_session(live)
            raise
        log.info("peer %s (%s) connected to session %s; %d peer(s)", peer.id, kind, live.id, len(self.peers))
        return peer

    async def _peer_closed(self, peer: Peer) -> None:
        self.peers.pop(peer.id, None)

    async def _drop_session(self, live: LiveSession) -> None:
        self.sessions.pop(live.id, None)
        await live.close()

    async def sweep(self) -> None:
        """Close sessions nobody resumed within `resume_ttl_s`; keeps memory bounded."""
        while True:
            await asyncio.sleep(_SWEEP_EVERY_S)
            now = time.monotonic()
            attached = {p.live.id for p in self.peers.values()}
            for live in list(self.sessions.values()):
                if live.id not in attached and live.detached_at is not None and \
                        now - live.detached_at > self.config.resume_ttl_s:
                    log.info("session %s expired", live.id)
                    await self._drop_session(live)

    async def start(self, app: web.Application) -> None:
        self._sweeper = asyncio.ensure_future(self.sweep())

    async def shutdown(self, app: web.Application) -> None:
        """Close every peer and session, then the engine: what SIGTERM ends in."""
        log.info("shutting down: %d peer(s), %d session(s)", len(self.peers), len(self.sessions))
        if self._sweeper is not None:
            self._sweeper.cancel()
        await asyncio.gather(*(p.close("server shutting down") for p in list(self.peers.values())))
        await asyncio.gather(*(self._drop_session(s) for s in list(self.sessions.values())))
        self.answers.shutdown(wait=True, cancel_futures=True)
        self.engine.close()

    # ------------------------------------------------------------------- handlers
    async def page_handler(self, request: web.Request) -> web.Response:
        return web.Response(text=self.page, content_type="text/html", headers={"Cache-Control": "no-store"})

    async def offer(self, request: web.Request) -> web.Response:
        """aiortc's convention: {"sdp", "type": "offer", "session_id"?} → {"sdp", "type": "answer", ...}."""
        body = await _read_limited(request, self.config.max_sdp_bytes + 1024)
        try:
            payload = json.loads(body)
        except ValueError:
            return _error(400, "bad_request", "the body must be JSON: {\"sdp\": ..., \"type\": \"offer\"}")
        if not isinstance(payload, dict) or payload.get("type") != "offer":
            return _error(400, "bad_request", "the body must be a JSON object with \"type\": \"offer\" and \"sdp\"")
        try:
            sdp = check_offer_sdp(payload.get("sdp"), self.config.max_sdp_bytes)
            peer = await self.connect(sdp, "webrtc", payload.get("session_id"))
        except SdpError as exc:
            return _error(400, "bad_sdp", str(exc))
        except KeyError as exc:
            return _error(404, "unknown_session", exc.args[0])
        return web.json_response({"sdp": peer.answer_sdp, "type": "answer", "session_id": peer.live.id,
                                  "peer_id": peer.id})

    async def whip(self, request: web.Request) -> web.Response:
        """RFC 9725: application/sdp offer → 201 Created, Location, SDP answer."""
        if request.content_type != "application/sdp":
            return _error(415, "unsupported_media_type", "WHIP offers are sent as Content-Type: application/sdp")
        body = await _read_limited(request, self.config.max_sdp_bytes)
        try:
            sdp = check_offer_sdp(body.decode("utf-8"), self.config.max_sdp_bytes)
            peer = await self.connect(sdp, "whip", request.query.get("session"))
        except UnicodeDecodeError:
            return _error(400, "bad_sdp", "the SDP offer is not UTF-8 text")
        except SdpError as exc:
            return _error(400, "bad_sdp", str(exc))
        except KeyError as exc:
            return _error(404, "unknown_session", exc.args[0])
        sid = peer.live.id
        return web.Response(status=201, text=peer.answer_sdp, content_type="application/sdp", headers={
            "Location": f"/whip/{peer.id}", "X-Session-Id": sid,
            "Link": f'</sessions/{sid}/events>; rel="events", </sessions/{sid}/ask>; rel="ask"'})

    async def whip_delete(self, request: web.Request) -> web.Response:
        peer = self.peers.get(request.match_info["peer_id"])
        if peer is None:
            return _error(404, "unknown_peer", "no such WHIP session (already ended?)")
        await peer.close("ended by DELETE")
        return web.Response(status=200)

    async def whip_patch(self, request: web.Request) -> web.Response:
        return _error(405, "no_trickle", "trickle ICE and ICE restarts are not supported: send the candidates in "
                      "the offer, or none (ICE then finds the client from its checks against the answer's "
                      "candidates); to restart, DELETE and POST a new offer", Allow="DELETE")

    def _live(self, request: web.Request) -> LiveSession:
        live = self.sessions.get(request.match_info["session_id"])
        if live is None:
            raise web.HTTPNotFound(text=json.dumps({"error": "unknown_session", "message": "no such session"}),
                                   content_type="application/json")
        return live

    async def ask(self, request: web.Request) -> web.Response:
        """POST {"text", "id"?} → the whole answer; its tokens also go out as events."""
        live = self._live(request)
        body = await _read_limited(request, self.config.max_message_bytes)
        try:
            question = protocol.parse_question(json.loads(body), self.config.max_question_chars)
        except ValueError as exc:  # JSON errors and ProtocolError
            return _error(400, getattr(exc, "code", "bad_message"), str(exc) if hasattr(exc, "code") else
                          "the body must be JSON: {\"text\": \"what color is the circle?\"}")
        try:
            return web.json_response(await live.ask(question))
        except RateLimited as exc:
            return _error(429, "rate_limited", str(exc), **{"Retry-After": "1"})
        except ValueError as exc:
            return _error(400, "refused", str(exc))

    async def watch(self, request: web.Request) -> web.Response:
        """POST {"text", "threshold"?, "id"?} → `watching`; the watch's events go out as SSE `event`s."""
        chars = self.config.max_question_chars
        return await self._request(request, lambda payload: protocol.parse_watch(payload, chars),
                                   lambda live, parsed: live.watch(parsed))

    async def unwatch(self, request: web.Request) -> web.Response:
        """POST {"watch", "id"?} → `unwatched`."""
        async def run(live, parsed):
            return live.unwatch(parsed)
        return await self._request(request, protocol.parse_unwatch, run)

    async def search(self, request: web.Request) -> web.Response:
        """POST {"text", "k"?, "id"?} → `moments`."""
        chars = self.config.max_question_chars
        return await self._request(request, lambda payload: protocol.parse_search(payload, chars),
                                   lambda live, parsed: live.search(parsed))

    async def _request(self, request: web.Request, parse, run) -> web.Response:
        live = self._live(request)
        body = await _read_limited(request, self.config.max_message_bytes)
        try:
            parsed = parse(json.loads(body))
        except protocol.ProtocolError as exc:
            return _error(400, exc.code, str(exc))
        except ValueError:
            return _error(400, "bad_message", "the body must be a JSON object")
        try:
            return web.json_response(await run(live, parsed))
        except protocol.ProtocolError as exc:
            status = {"unknown_watch": 404, "too_many_watches": 409, "unsupported": 501}.get(exc.code, 400)
            return _error(status, exc.code, str(exc))
        except RateLimited as exc:
            return _error(429, "rate_limited", str(exc), **{"Retry-After": "1"})
        except ValueError as exc:
            return _error(400, "refused", str(exc))

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: status, token, answer, error, watching, unwatched, event, moments of one session."""
        live = self._live(request)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"})
        await response.prepare(request)
        queue = live.subscribe()
        try:
            await response.write(b": connected\n\n")
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), _SSE_KEEPALIVE_S)
                except asyncio.TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                if event["type"] == "closed":
                    break
                await response.write(f"event: {event['type']}\ndata: {protocol.encode(event)}\n\n".encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            live.unsubscribe(queue)
        return response


async def _read_limited(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    body = await request.content.read(limit + 1)
    if len(body) > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(body))
    return body


def _auth_middleware(token: str):
    expected = token.encode()

    @web.middleware
    async def auth(request: web.Request, handler):
        header = request.headers.get("Authorization", "")
        given = header[7:] if header.startswith("Bearer ") else request.query.get("token", "")
        if not hmac.compare_digest(given.encode(), expected):
            return _error(401, "unauthorized", "send 'Authorization: Bearer TOKEN' (the page takes ?token=TOKEN)",
                          **{"WWW-Authenticate": 'Bearer realm="streamer"'})
        return await handler(request)

    return auth


SERVER = web.AppKey("server", Server)


def build_app(config: ServeConfig, engine) -> web.Application:
    """The aiohttp application around `engine`; run it with `web.run_app` or an AppRunner."""
    config.check()
    middlewares = [_auth_middleware(config.token)] if config.token else []
    app = web.Application(middlewares=middlewares, client_max_size=max(config.max_sdp_bytes, config.max_message_bytes) + 1024)
    server = Server(config, engine)
    app[SERVER] = server
    app.on_startup.append(server.start)
    app.on_shutdown.append(server.shutdown)
    app.add_routes([
        web.get("/", server.page_handler),
        web.post("/offer", server.offer),
        web.post("/whip", server.whip),
        web.delete("/whip/{peer_id}", server.whip_delete),
        web.patch("/whip/{peer_id}", server.whip_patch),
        web.post("/sessions/{session_id}/ask", server.ask),
        web.post("/sessions/{session_id}/watch", server.watch),
        web.post("/sessions/{session_id}/unwatch", server.unwatch),
        web.post("/sessions/{session_id}/search", server.search),
        web.get("/sessions/{session_id}/events", server.events),
    ])
    return app
