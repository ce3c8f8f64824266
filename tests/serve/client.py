"""A real aiortc peer that streams a world clip like a camera and a microphone would.

Video: the clip's 64x64 frames at its 12.5 fps, scaled 2x, as 1/90000 pts; audio: the
clip's 16 kHz mono resampled to 48 kHz stereo s16 in 20 ms frames (what browsers send).
After the clip the last frame is held and silence follows, like a camera on a still scene.
"""

from __future__ import annotations

import asyncio
import fractions
import json
import time
from dataclasses import dataclass, field

import aiohttp
import av
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

VIDEO_CLOCK, AUDIO_RATE, AUDIO_FRAME = 90000, 48000, 960



async def wait(predicate, timeout: float) -> bool:
    """Poll `predicate` every 50 ms until it holds (True) or `timeout` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return False

class _Paced(MediaStreamTrack):
    """Frames released at their own time, from when the first one is asked for."""

    def __init__(self) -> None:
        super().__init__()
        self._start: float | None = None

    async def _wait_until(self, t: float) -> None:
        if self._start is None:
            self._start = time.perf_counter()
        delay = self._start + t - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)


class ClipVideo(_Paced):
    kind = "video"

    def __init__(self, frames: np.ndarray, fps: float, hold_s: float, scale: int = 2) -> None:
        super().__init__()
        self.frames, self.fps, self.scale = frames, fps, scale
        self.total = len(frames) + round(hold_s * fps)
        self.n = 0

    async def recv(self) -> av.VideoFrame:
        if self.n >= self.total:
            self.stop()
            raise MediaStreamError
        await self._wait_until(self.n / self.fps)
        rgb = self.frames[min(self.n, len(self.frames) - 1)]
        rgb = np.ascontiguousarray(rgb.repeat(self.scale, 0).repeat(self.scale, 1))
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts, frame.time_base = round(self.n * VIDEO_CLOCK / self.fps), fractions.Fraction(1, VIDEO_CLOCK)
        self.n += 1
        return frame


class ClipAudio(_Paced):
    kind = "audio"

    def __init__(self, audio16k: np.ndarray, hold_s: float) -> None:
        super().__init__()
        x = np.arange(len(audio16k) * 3) / 3.0
        up = np.interp(x, np.arange(len(audio16k)), audio16k.astype(np.float64))
        self.pcm = (np.clip(up, -1, 1) * 32767).astype(np.int16)
        # the hold is silence made frame by frame: an hour of it built up front took ~3 GB and
        # half a minute, past the fault scenario's wait for the peer it kills
        self.total = len(self.pcm) + round(hold_s * AUDIO_RATE)
        self.n = 0

    async def recv(self) -> av.AudioFrame:
        start = self.n * AUDIO_FRAME
        if start >= self.total:
            self.stop()
            raise MediaStreamError
        await self._wait_until(start / AUDIO_RATE)
        block = np.zeros(AUDIO_FRAME, np.int16)
        chunk = self.pcm[start:start + AUDIO_FRAME]
        block[:len(chunk)] = chunk
        frame = av.AudioFrame.from_ndarray(np.repeat(block, 2)[None], format="s16", layout="stereo")
        frame.sample_rate, frame.pts, frame.time_base = AUDIO_RATE, start, fractions.Fraction(1, AUDIO_RATE)
        self.n += 1
        return frame


def prefer(transceiver, codec: str) -> None:
    codecs = RTCRtpSender.getCapabilities("video").codecs
    wanted = [c for c in codecs if c.mimeType.lower() == f"video/{codec}"]
    transceiver.setCodecPreferences(wanted + [c for c in codecs if c.mimeType.lower() == "video/rtx"])


@dataclass
class ClientPeer:
    """One peer: connect (POST /offer), a data channel with the documented protocol."""

    base_url: str
    token: str | None = None
    codec: str = "vp8"
    heartbeat: bool = True
    messages: list[dict] = field(default_factory=list)
    session_id: str | None = None

    def __post_init__(self) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.channel = None
        self.opened = asyncio.Event()
        self.status: dict | None = None
        self.answers: dict[str, dict] = {}
        self._waiters: dict[str, asyncio.Future] = {}
        self._ping: asyncio.Task | None = None

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def connect(self, video: MediaStreamTrack | None, audio: MediaStreamTrack | None,
                      session_id: str | None = None, http: aiohttp.ClientSession | None = None) -> int:
        """Offer and answer; returns the HTTP status (200 when connected)."""
        if video is not None:
            prefer(self.pc.addTransceiver(video, direction="sendonly"), self.codec)
        if audio is not None:
            self.pc.addTransceiver(audio, direction="sendonly")
        self.channel = self.pc.createDataChannel("streamer")
        self.channel.on("open", self.opened.set)
        self.channel.on("message", self._on_message)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        body = {"type": "offer", "sdp": self.pc.localDescription.sdp, "session_id": session_id}
        own = http is None
        http = http or aiohttp.ClientSession()
        try:
            async with http.post(f"{self.base_url}/offer", json=body, headers=self.headers()) as response:
                self.http_status = response.status
                payload = await response.json()
        finally:
            if own:
                await http.close()
        if response.status != 200:
            self.refusal = payload
            await self.pc.close()
            return response.status
        self.session_id = payload["session_id"]
        await self.pc.setRemoteDescription(RTCSessionDescription(payload["sdp"], payload["type"]))
        await asyncio.wait_for(self.opened.wait(), 15)
        if self.heartbeat:
            self._ping = asyncio.ensure_future(self._pings())
        return 200

    async def _pings(self) -> None:
        while self.channel.readyState == "open":
            self.send({"type": "ping"})
            await asyncio.sleep(1.0)

    def send(self, message: dict | str) -> None:
        if self.channel.readyState == "open":
            self.channel.send(message if isinstance(message, str) else json.dumps(message))

    def _on_message(self, raw: str) -> None:
        message = json.loads(raw)
        self.messages.append(message)
        if message["type"] == "status":
            self.status = message
        elif message["type"] == "token":
            entry = self.answers.setdefault(message["id"], {"tokens": []})
            entry.setdefault("first_token_at", time.perf_counter())
            entry["tokens"].append(message["text"])
        if message["type"] in ("answer", "error") and message.get("id") in self._waiters:
            self.answers.setdefault(message["id"], {"tokens": []})["done_at"] = time.perf_counter()
            self.answers[message["id"]]["final"] = message
            self._waiters.pop(message["id"]).set_result(message)

    async def ask(self, text: str, request_id: str, timeout: float = 10.0) -> dict:
        """Ask and wait for the answer (or an error); timings on self.answers[request_id]."""
        future = asyncio.get_running_loop().create_future()
        self._waiters[request_id] = future
        self.answers[request_id] = {"tokens": [], "sent_at": time.perf_counter()}
        self.send({"type": "ask", "id": request_id, "text": text})
        return await asyncio.wait_for(future, timeout)

    async def wait_for(self, predicate, timeout: float) -> bool:
        return await wait(predicate, timeout)

    async def close(self) -> None:
        if self._ping is not None:
            self._ping.cancel()
        await self.pc.close()


@dataclass
class SessionEvents:
    """A session seen from outside any data channel, as a WHIP publisher's user sees it:
    server-sent events in, questions by POST."""

    base_url: str
    session_id: str
    token: str | None = None
    events: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._sse: asyncio.Task | None = None

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def listen(self, http: aiohttp.ClientSession) -> None:
        """Collect the session's server-sent events in the background."""
        self._sse = asyncio.ensure_future(self._read_events(http))

    async def _read_events(self, http: aiohttp.ClientSession) -> None:
        url = f"{self.base_url}/sessions/{self.session_id}/events"
        async with http.get(url, headers=self.headers(), timeout=aiohttp.ClientTimeout(total=None)) as r:
            event = None
            async for raw in r.content:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event:
                    message = json.loads(line[6:])
                    message["received_at"] = time.perf_counter()
                    self.events.append(message)

    def latest(self, kind: str) -> dict | None:
        return next((e for e in reversed(self.events) if e["type"] == kind), None)

    async def ask(self, http: aiohttp.ClientSession, text: str, request_id: str):
        async with http.post(f"{self.base_url}/sessions/{self.session_id}/ask", json={"id": request_id, "text": text},
                             headers=self.headers()) as r:
            return r.status, await r.json()

    def stop(self) -> None:
        if self._sse is not None:
            self._sse.cancel()


@dataclass
class WhipClient:
    """A WHIP (RFC 9725) publisher built on aiortc: no data channel; answers come over SSE."""

    base_url: str
    token: str | None = None
    codec: str = "vp8"

    def __post_init__(self) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.location: str | None = None
        self.session: SessionEvents | None = None

    def headers(self, content_type: str | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return headers | ({"Content-Type": content_type} if content_type else {})

    async def publish(self, http: aiohttp.ClientSession, video, audio, session_id: str | None = None):
        """POST the offer; returns the response (status 201, Location, SDP answer)."""
        if video is not None:
            prefer(self.pc.addTransceiver(video, direction="sendonly"), self.codec)
        if audio is not None:
            self.pc.addTransceiver(audio, direction="sendonly")
        await self.pc.setLocalDescription(await self.pc.createOffer())
        url = f"{self.base_url}/whip" + (f"?session={session_id}" if session_id else "")
        async with http.post(url, data=self.pc.localDescription.sdp, headers=self.headers("application/sdp")) as r:
            body = await r.text()
            if r.status == 201:
                self.location = r.headers["Location"]
                self.session = SessionEvents(self.base_url, r.headers["X-Session-Id"], self.token)
                await self.pc.setRemoteDescription(RTCSessionDescription(body, "answer"))
            return r

    async def close(self, http: aiohttp.ClientSession) -> int:
        """DELETE the resource (ends the stream); returns the status."""
        async with http.delete(self.base_url + self.location, headers=self.headers()) as r:
            status = r.status
        await self.pc.close()
        return status


class Silent(MediaStreamTrack):
    """A track that never produces a frame: a peer whose camera never starts."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    async def recv(self):
        await asyncio.sleep(3600)


async def _stream_forever(url: str, token: str | None) -> None:
    """Used as a separate process that the fault tests kill mid-stream."""
    frames = np.zeros((25, 64, 64, 3), np.uint8)
    frames[:, 16:48, 16:48] = (200, 40, 40)
    peer = ClientPeer(url, token=token)
    assert await peer.connect(ClipVideo(frames, 12.5, 3600), ClipAudio(np.zeros(32000, np.float32), 3600)) == 200
    print(json.dumps({"session_id": peer.session_id}), flush=True)
    await asyncio.sleep(3600)


if __name__ == "__main__":
    import sys

    asyncio.run(_stream_forever(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None))
