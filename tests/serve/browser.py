"""Headless Chromium (Debian's `chromium`) driven over the DevTools protocol with aiohttp's
websocket client: just enough of CDP to open a page, evaluate JavaScript and screenshot.

The fake camera and microphone play files the test renders (`--use-file-for-fake-*`);
the media-stream permission prompt is auto-accepted. Nothing is downloaded.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import aiohttp
import numpy as np

CHROMIUM_FLAGS = [
    "--headless=new", "--no-sandbox", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
    "--disable-background-networking", "--disable-component-update", "--no-pings", "--disable-sync",
    "--no-first-run", "--disable-gpu", "--mute-audio", "--remote-debugging-port=0",
    "--autoplay-policy=no-user-gesture-required", "--window-size=1100,720",
]


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def write_y4m(path: Path, frames: np.ndarray, fps_num: int, fps_den: int, scale: int) -> Path:
    """RGB frames → 4:2:0 Y4M (what Chromium's fake capture plays, looping)."""
    import av

    h, w = frames.shape[1] * scale, frames.shape[2] * scale
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps_num}:{fps_den} Ip A1:1 C420jpeg\n".encode())
        for rgb in frames:
            big = np.ascontiguousarray(rgb.repeat(scale, 0).repeat(scale, 1))
            yuv = av.VideoFrame.from_ndarray(big, format="rgb24").reformat(format="yuvj420p").to_ndarray()
            f.write(b"FRAME\n" + yuv.tobytes())
    return path


def write_wav(path: Path, audio16k: np.ndarray, rate: int = 48000) -> Path:
    """Mono 16 kHz float → 48 kHz s16 mono WAV."""
    import wave

    up = np.interp(np.arange(len(audio16k) * 3) / 3.0, np.arange(len(audio16k)), audio16k.astype(np.float64))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(up, -1, 1) * 32767).astype("<i2").tobytes())
    return path


class Browser:
    """One Chromium process with a fresh profile; `page(url)` returns a CDP page session."""

    def __init__(self, profile: Path, video: Path, audio: Path, log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "w")
        command = [chromium_path(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                   f"--use-file-for-fake-video-capture={video}", f"--use-file-for-fake-audio-capture={audio}",
                   "about:blank"]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=self._log)
        self.http: aiohttp.ClientSession | None = None

    async def devtools_port(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", self.log_path.read_text())
            if match:
                return int(match.group(1))
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited: {self.log_path.read_text()[-2000:]}")
            await asyncio.sleep(0.1)
        raise TimeoutError("chromium did not start its DevTools endpoint")

    async def page(self, url: str) -> Page:
        port = await self.devtools_port()
        self.http = aiohttp.ClientSession()
        async with self.http.put(f"http://127.0.0.1:{port}/json/new?{url}") as r:
            target = await r.json()
        socket = await self.http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=64 << 20)
        return Page(socket)

    async def close(self) -> None:
        if self.http is not None:
            await self.http.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self._log.close()


class Page:
    """A CDP session on one page target."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self.socket = socket
        self._ids = itertools.count(1)

    async def call(self, method: str, timeout: float = 20.0, **params) -> dict:
        request_id = next(self._ids)
        await self.socket.send_str(json.dumps({"id": request_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = await self.socket.receive(timeout=max(0.01, deadline - time.monotonic()))
            if message.type != aiohttp.WSMsgType.TEXT:
                raise RuntimeError(f"devtools socket closed: {message}")
            data = json.loads(message.data)
            if data.get("id") == request_id:
                if "error" in data:
                    raise RuntimeError(f"{method}: {data['error']}")
                return data["result"]
        raise TimeoutError(method)

    async def eval(self, expression: str):
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait(self, expression: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await self.eval(expression):
                return True
            await asyncio.sleep(0.1)
        return False

    async def screenshot(self, path: Path) -> Path:
        result = await self.call("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(result["data"]))
        return path
