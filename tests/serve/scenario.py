"""Scenarios run by the serve tests inside their private network namespace (see netns.py).

    unshare -n -- python tests/serve/scenario.py NAME OPTIONS.json OUT.json

Each starts a real `streamer serve` process, drives real peers against it and writes
what it observed as JSON for the test to judge.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import netns  # noqa: E402
from client import ClientPeer, ClipAudio, ClipVideo, SessionEvents, Silent, WhipClient, wait  # noqa: E402
from ffmpeg_whip import p256_certificate  # noqa: E402

EASY_KINDS = ("color_now", "count_now", "sound_now")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`streamer serve` as a child process, logs to a file, stopped with SIGTERM."""

    def __init__(self, out_dir: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = out_dir / f"server-{self.port}.log"
        self._log = open(self.log_path, "w")
        command = [sys.executable, "-m", "streamer.cli", "serve", "--port", str(self.port), "--device", "cpu", *args]
        self.proc = subprocess.Popen(command, cwd=netns.ROOT, env=netns.env(), stdout=self._log, stderr=subprocess.STDOUT)

    async def ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log_path.read_text()[-3000:]}")
                try:
                    async with http.get(self.url + "/") as response:
                        if response.status in (200, 401):
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
        raise TimeoutError("server did not come up")

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait: a clean shutdown exits 0 within the timeout."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                return -9
        self._log.close()
        return self.proc.returncode


def world_clips(count: int, max_snippets: int) -> list:
    """The first `count` world:test clips no longer than `max_snippets` with an easy question."""
    from training.world.clip import World, WorldConfig

    world, out, index = World(WorldConfig.preset("test")), [], 0
    while len(out) < count and index < 200:
        clip = world.clip(index)
        if clip.n_snippets <= max_snippets and any(q.kind in EASY_KINDS for q in clip.questions):
            out.append((index, clip))
        index += 1
    return out


async def stream_and_ask(url: str, clip, codec: str, hold_s: float, token: str | None = None) -> dict:
    """Stream one clip; ask each easy question once the state covers its ask time."""
    peer = ClientPeer(url, token=token, codec=codec)
    status = await peer.connect(ClipVideo(clip.frames, clip.spec.fps, hold_s), ClipAudio(clip.audio, hold_s))
    assert status == 200, peer.refusal
    asked = []
    questions = sorted((q for q in clip.questions if q.kind in EASY_KINDS), key=lambda q: q.ask_snippets)
    for n, q in enumerate(questions):
        ok = await peer.wait_for(lambda: peer.status is not None and peer.status["index"] + 1 >= q.ask_snippets,
                                 timeout=clip.duration + 10)
        state_index = peer.status["index"] if peer.status else None
        answer = await peer.ask(q.text, f"q{n}")
        timing = peer.answers[f"q{n}"]
        asked.append({"kind": q.kind, "question": q.text, "truth": q.answer, "ask_snippets": q.ask_snippets,
                      "state_index": state_index, "reached": ok, "said": answer.get("text"),
                      "error": answer.get("code"), "first_token_ms": 1e3 * (timing.get("first_token_at", timing["done_at"]) - timing["sent_at"]),
                      "answer_ms": 1e3 * (timing["done_at"] - timing["sent_at"])})
    await peer.wait_for(lambda: peer.status is not None and peer.status["t"] >= clip.duration, timeout=hold_s + 5)
    final_status = peer.status
    await peer.close()
    return {"asked": asked, "status": final_status, "session_id": peer.session_id}


async def clips(options: dict, out_dir: Path) -> dict:
    """N peers at once, each streaming its own world clip and asking the easy questions."""
    server = ServerProcess(out_dir, "--max-peers", str(options.get("max_peers", 8)), *options.get("server_args", []))
    try:
        await server.ready()
        chosen = world_clips(options["clips"], options.get("max_snippets", 8))
        cpu0, wall0 = server.cpu_s(), time.perf_counter()
        codecs = options.get("codecs", ["vp8"])
        results = await asyncio.gather(*(stream_and_ask(server.url, clip, codecs[n % len(codecs)], 2.0)
                                         for n, (_, clip) in enumerate(chosen)))
        cpu, wall = server.cpu_s() - cpu0, time.perf_counter() - wall0
    finally:
        code = server.stop(timeout=options.get("stop_timeout", 15.0))
    return {"clips": [index for index, _ in chosen], "results": results, "server_cpu_s": cpu, "wall_s": wall,
            "exit_code": code, "server_log": log_excerpt(server.log_path)}


def log_excerpt(path: Path) -> str:
    """The server log's start (how it was set up) and end (how it went)."""
    text = path.read_text()
    return text if len(text) <= 10000 else text[:4000] + "\n[...]\n" + text[-6000:]


async def ask_easy_over_sse(http: aiohttp.ClientSession, session: SessionEvents, clip, prefix: str) -> list[dict]:
    """Ask each easy question by POST once the state covers its ask time; the answer's tokens
    and end arrive as server-sent events too."""
    asked = []
    for n, q in enumerate(q for q in clip.questions if q.kind in EASY_KINDS):
        request = f"{prefix}{n}"
        await wait(lambda: (session.latest("status") or {}).get("index", -1) + 1 >= q.ask_snippets, 20)
        sent = time.perf_counter()
        status, answer = await session.ask(http, q.text, request)
        early = sum(e["type"] == "token" and e["id"] == request for e in session.events)
        await wait(lambda: any(e["type"] == "answer" and e["id"] == request for e in session.events), 5)
        asked.append({"kind": q.kind, "truth": q.answer, "ask_snippets": q.ask_snippets, "http_status": status,
                      "said": answer.get("text"),
                      "sse_tokens": "".join(e["text"] for e in session.events
                                             if e["type"] == "token" and e["id"] == request).strip(),
                      "sse_answer": any(e["type"] == "answer" and e["id"] == request for e in session.events),
                      "answer_ms": 1e3 * (time.perf_counter() - sent), "early_tokens": early})
    return asked


async def whip(options: dict, out_dir: Path) -> dict:
    """An aiortc WHIP publisher with answers over SSE; the odd requests of RFC 9725 get their codes."""
    server = ServerProcess(out_dir)
    out: dict = {}
    try:
        await server.ready()
        (_, clip), = world_clips(1, 8)
        async with aiohttp.ClientSession() as http:
            async with http.post(server.url + "/whip", data="v=0\r\nnonsense", headers={"Content-Type": "application/sdp"}) as r:
                out["garbage_status"] = r.status
            async with http.post(server.url + "/whip", data="v=0", headers={"Content-Type": "text/plain"}) as r:
                out["wrong_type_status"] = r.status
            publisher = WhipClient(server.url)
            response = await publisher.publish(http, ClipVideo(clip.frames, clip.spec.fps, 2.0), ClipAudio(clip.audio, 2.0))
            out["post"] = {"status": response.status, "location": response.headers.get("Location"),
                           "content_type": response.headers.get("Content-Type")}
            session = publisher.session
            session.listen(http)
            out["asked"] = await ask_easy_over_sse(http, session, clip, "w")
            await wait(lambda: (session.latest("status") or {}).get("t", 0) >= clip.duration, 10)
            async with http.patch(server.url + publisher.location, headers={"Content-Type": "application/trickle-ice-sdpfrag"}) as r:
                out["patch_status"] = r.status
            out["snippets_before_delete"] = session.latest("status")["snippets"]
            out["delete_status"] = await publisher.close(http)
            async with http.delete(server.url + publisher.location) as r:
                out["second_delete_status"] = r.status
            session.stop()
    finally:
        out["exit_code"] = server.stop()
    out["server_log"] = server.log_path.read_text()[-4000:]
    return out


async def ffmpeg_publisher(server: ServerProcess, clip_path: Path, hold_s: float, *certificate: Path):
    """`ffmpeg_whip.py` as a child process (in this namespace), stderr kept for the report."""
    script = Path(__file__).resolve().parent / "ffmpeg_whip.py"
    return await asyncio.create_subprocess_exec(
        sys.executable, str(script), server.url + "/whip", str(clip_path), str(hold_s), *map(str, certificate),
        cwd=netns.ROOT, env=netns.env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def whip_ffmpeg(options: dict, out_dir: Path) -> dict:
    """FFmpeg's WHIP muxer publishes a world clip (an offer without candidates, H.264 and Opus);
    questions by POST, answers over SSE; the muxer's own DELETE ends it. First, once, with the
    muxer's default certificate, which the server cannot accept (see ffmpeg_whip.py)."""
    from training.world.clip import World, WorldConfig

    index = options["clip"]
    clip = World(WorldConfig.preset("test")).clip(index)
    clip_path = out_dir / "clip.npz"
    np.savez(clip_path, frames=clip.frames, fps=clip.spec.fps, audio=clip.audio, rate=clip.spec.sample_rate)
    server = ServerProcess(out_dir)
    out: dict = {"clip": index, "n_snippets": clip.n_snippets}
    connected = re.compile(r"peer (\S+) \(whip\) connected to session (\S+);")
    publisher = None
    try:
        await server.ready()
        refused = await ffmpeg_publisher(server, clip_path, 0.0)
        _, stderr = await asyncio.wait_for(refused.communicate(), 20)
        out["default_certificate"] = {"exit": refused.returncode, "stderr": stderr.decode()[-1000:]}
        await wait(lambda: "DTLS handshake failed" in server.log_path.read_text(), 5)
        out["default_certificate"]["server_said"] = [line for line in server.log_path.read_text().splitlines()
                                                     if "DTLS handshake failed" in line]

        log_from = len(server.log_path.read_text())
        publisher = await ffmpeg_publisher(server, clip_path, options["hold_s"], *p256_certificate(out_dir))
        await wait(lambda: connected.search(server.log_path.read_text()[log_from:]) is not None, 20)
        match = connected.search(server.log_path.read_text()[log_from:])
        if match is None:
            raise RuntimeError("FFmpeg's WHIP publisher did not get its offer answered within 20 s")
        peer_id, session_id = match.groups()
        out["location"] = location = f"/whip/{peer_id}"
        async with aiohttp.ClientSession() as http:
            async with http.patch(server.url + location, data="a=ice-ufrag:x\r\n",
                                  headers={"Content-Type": "application/trickle-ice-sdpfrag"}) as r:
                out["patch"] = {"status": r.status, "allow": r.headers.get("Allow"), "body": await r.json()}
            session = SessionEvents(server.url, session_id)
            session.listen(http)
            out["asked"] = await ask_easy_over_sse(http, session, clip, "f")
            _, stderr = await asyncio.wait_for(publisher.communicate(), clip.duration + options["hold_s"] + 20)
            out["publisher"] = {"exit": publisher.returncode, "stderr": stderr.decode()[-1000:]}
            out["last_status"] = session.latest("status")
            await wait(lambda: f"{peer_id} (whip, session {session_id}) closed" in server.log_path.read_text(), 5)
            out["closed_by"] = re.findall(rf"{re.escape(peer_id)} \(whip, session \S+\) closed: (.+)",
                                          server.log_path.read_text())
            async with http.delete(server.url + location) as r:
                out["second_delete_status"] = r.status
            session.stop()
    finally:
        if publisher is not None and publisher.returncode is None:
            publisher.kill()
        out["exit_code"] = server.stop()
    out["server_log"] = server.log_path.read_text()[-4000:]
    return out


def browser_clip(max_snippets: int = 12):
    """A world:test clip with a colour question: its subject shape is asked about throughout."""
    from training.world.clip import World, WorldConfig

    world = World(WorldConfig.preset("test"))
    for index in range(200):
        clip = world.clip(index)
        colour = next((q for q in clip.questions if q.kind == "color_now"), None)
        if clip.n_snippets <= max_snippets and colour is not None:
            return index, clip, colour.text
    raise LookupError("no suitable clip")


async def browser(options: dict, out_dir: Path) -> dict:
    """Headless Chromium loads the page from 127.0.0.1 (a secure context) while ICE runs over
    the veth pair; the page's own JavaScript asks; the answers are read from the page."""
    from browser import Browser, write_wav, write_y4m

    index, clip, colour_question = browser_clip()
    video = write_y4m(out_dir / "clip.y4m", clip.frames, 25, 2, scale=4)
    audio = write_wav(out_dir / "clip.wav", clip.audio)
    questions = [("color_now", colour_question), ("count_now", "how many shapes are on the screen?"),
                 ("sound_now", "what sound is playing?")]
    server = ServerProcess(out_dir)
    out: dict = {"clip": index, "duration": clip.duration, "snippet_s": clip.spec.snippet_seconds, "runs": []}
    try:
        await server.ready()
        for codec in options["codecs"]:
            chrome = Browser(out_dir / f"profile-{codec}", video, audio, out_dir / f"chromium-{codec}.log")
            try:
                page = await chrome.page(f"{server.url}/?codec={codec}")
                run: dict = {"codec": codec, "asked": []}
                run["snippets_seen"] = await page.wait("window.streamer && window.streamer.status && "
                                                       "window.streamer.status.snippets >= 2", 40)
                run["state"] = await page.eval("window.streamer.state")
                run["sent_codec"] = await page.eval("window.streamerCodec()")
                phrase = "a " + colour_question.rstrip("?").split()[-1]  # its subject shape: on screen throughout
                run["watch_request"] = await page.eval(f"window.streamerWatch({json.dumps(phrase)})")
                for n in range(options["rounds"] * len(questions)):
                    kind, text = questions[n % len(questions)]
                    request = await page.eval(f"window.streamerAsk({json.dumps(text)})")
                    await page.wait(f"window.streamer.answers[{json.dumps(request)}].doneAt !== null", 10)
                    record = await page.eval(
                        f"(() => {{ const a = window.streamer.answers[{json.dumps(request)}], s = window.streamer;"
                        f" return {{final: a.final, error: a.error || null, t: a.t, sentAt: a.sentAt,"
                        f" firstTokenAt: a.firstTokenAt, doneAt: a.doneAt, status: s.status,"
                        f" mediaAt: s.mediaAt, connectedAt: s.connectedAt}}; }})()")
                    record.update(kind=kind, question=text)
                    run["asked"].append(record)
                    await asyncio.sleep(options.get("gap_s", 0.5))
                search = await page.eval(f"window.streamerSearch({json.dumps(phrase)})")
                await page.wait(f"window.streamer.searches[{json.dumps(search)}].moments !== null || "
                                f"window.streamer.searches[{json.dumps(search)}].error !== null", 10)
                run["standing"] = await page.eval(
                    f"(() => {{ const s = window.streamer; return {{watches: Object.values(s.watches).map(w => w.text),"
                    f" events: s.events, search: s.searches[{json.dumps(search)}],"
                    f" watches_shown: document.querySelectorAll('#watches li').length,"
                    f" events_shown: document.querySelectorAll('#events li').length,"
                    f" moments_shown: document.querySelectorAll('#moments li').length}}; }})()")
                run["standing"]["phrase"] = phrase
                run["first_snippet_ms"] = await page.eval("window.streamer.firstSnippetAt")
                run["answer_text_on_page"] = await page.eval(
                    "document.querySelector('#answers li .a') && document.querySelector('#answers li .a').textContent")
                run["status"] = await page.eval("window.streamer.status")
                await page.screenshot(out_dir / f"page-{codec}.png")
                out["runs"].append(run)
            finally:
                await chrome.close()
    finally:
        out["exit_code"] = server.stop()
    out["server_log"] = server.log_path.read_text()[-3000:]
    return out


TOKEN = "test-token-123"


async def faults(options: dict, out_dir: Path) -> dict:
    """Everything that should not take the server down, with one good peer watching throughout."""
    server = ServerProcess(out_dir, "--max-peers", "3", "--token", TOKEN)
    out: dict = {}
    (_, clip), = world_clips(1, 16)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        await server.ready()
        async with aiohttp.ClientSession() as http:
            for name, headers, url in (("no_token", {}, "/"), ("wrong_token", {"Authorization": "Bearer nope-nope"}, "/"),
                                       ("page_with_token", {}, f"/?token={TOKEN}"), ("offer_no_token", {}, "/offer")):
                method = http.post if url == "/offer" else http.get
                async with method(server.url + url, headers=headers) as r:
                    out[name] = r.status
            for name, body in (("garbage_json", b"{not json"), ("garbage_sdp", json.dumps({"type": "offer", "sdp": "v=0\r\nm=video 9 RTP/AVP 0\r\nnonsense"}).encode()),
                               ("not_sdp", json.dumps({"type": "offer", "sdp": "hello"}).encode()),
                               ("oversized", json.dumps({"type": "offer", "sdp": "v=0" + "x" * 200_000}).encode())):
                async with http.post(server.url + "/offer", data=body, headers=auth | {"Content-Type": "application/json"}) as r:
                    out[name] = r.status

            good = ClientPeer(server.url, token=TOKEN)
            assert await good.connect(ClipVideo(np.concatenate([clip.frames] * 20), clip.spec.fps, 0), ClipAudio(np.concatenate([clip.audio] * 20), 0)) == 200
            await good.wait_for(lambda: good.status is not None and good.status["snippets"] >= 2, 15)
            # malformed and hostile data-channel messages: each gets an error, the session lives on
            before = len(good.messages)
            for raw in ("{not json", json.dumps({"type": "launch"}), "x" * 10_000, json.dumps([1, 2]),
                        json.dumps({"type": "ask", "id": "long", "text": "what " * 60}),
                        json.dumps({"type": "ask", "id": "budget", "text": "what color is the " + "big " * 30 + "circle?"}),
                        json.dumps({"type": "ask", "id": {"x": 1}, "text": "hi"})):
                good.send(raw)
            good.channel.send(b"\x00binary")
            await asyncio.sleep(1.0)
            out["error_codes"] = sorted(m["code"] for m in good.messages[before:] if m["type"] == "error")
            answer = await good.ask("how many shapes are on the screen?", "after-garbage")
            out["answer_after_garbage"] = answer["type"]
            results = await asyncio.gather(*(good.ask("what sound is playing?", f"burst{i}") for i in range(10)))
            out["burst_types"] = [r.get("code") or r["type"] for r in results]

            silent = ClientPeer(server.url, token=TOKEN)  # no media, but pings: it stays, harmlessly
            assert await silent.connect(Silent("video"), Silent("audio")) == 200
            killed = subprocess.Popen([sys.executable, str(Path(__file__).with_name("client.py")), server.url, TOKEN],
                                      stdout=subprocess.PIPE, env=netns.env(), cwd=netns.ROOT)
            line = await asyncio.wait_for(asyncio.to_thread(killed.stdout.readline), 30)
            out["killed_session"] = json.loads(line)["session_id"]
            await good.wait_for(lambda: good.status["peers"] == 3, 5)
            over = ClientPeer(server.url, token=TOKEN)
            out["over_cap"] = await over.connect(ClipVideo(clip.frames, clip.spec.fps, 0), None)
            out["over_cap_message"] = getattr(over, "refusal", None)
            killed.kill()
            killed.wait(5)
            t_kill = time.monotonic()
            out["freed"] = await good.wait_for(lambda: good.status["peers"] == 2, 10)
            out["freed_after_s"] = time.monotonic() - t_kill
            retry = ClientPeer(server.url, token=TOKEN, heartbeat=False)  # no pings, no media: freed too
            out["after_free"] = await retry.connect(Silent("video"), None)
            t_connect = time.monotonic()
            await good.wait_for(lambda: good.status["peers"] == 3, 3)
            out["no_heartbeat_freed"] = await good.wait_for(lambda: good.status["peers"] == 2, 10)
            out["no_heartbeat_freed_after_s"] = time.monotonic() - t_connect
            await retry.close()
            await silent.close()

            snippets = good.status["snippets"]
            out["good_snippets"] = snippets
            out["good_dropped"] = good.status["dropped"]
            # a reload: a new connection with the same session id resumes the state
            reload = ClientPeer(server.url, token=TOKEN)
            assert await reload.connect(ClipVideo(clip.frames, clip.spec.fps, 2), ClipAudio(clip.audio, 2),
                                        session_id=good.session_id) == 200
            await reload.wait_for(lambda: any(m["type"] == "hello" for m in reload.messages), 5)
            hello = next(m for m in reload.messages if m["type"] == "hello")
            out["resumed"] = hello["resumed"] and hello["session_id"] == good.session_id
            await reload.wait_for(lambda: reload.status is not None and reload.status["snippets"] > snippets + 1, 10)
            out["resumed_snippets"] = (snippets, reload.status["snippets"])
            out["old_channel"] = good.channel.readyState
            await good.close()
            await reload.close()
            async with http.post(server.url + "/offer", json={"type": "offer", "sdp": "v=0", "session_id": "nope"},
                                 headers=auth) as r:
                out["unknown_session"] = r.status
            out["server_alive"] = server.proc.poll() is None

            # SIGTERM while a peer streams and its questions are in flight: a prompt, clean exit
            last = ClientPeer(server.url, token=TOKEN)
            assert await last.connect(ClipVideo(np.concatenate([clip.frames] * 20), clip.spec.fps, 0),
                                      ClipAudio(np.concatenate([clip.audio] * 20), 0)) == 200
            await last.wait_for(lambda: last.status is not None and last.status["snippets"] >= 2, 15)
            in_flight = [asyncio.ensure_future(last.ask("what sound is playing?", f"term{i}", timeout=20))
                         for i in range(3)]
            await asyncio.sleep(0.2)  # the asks reach the server (an answer takes longer while it streams)
            t_term = time.monotonic()
            out["exit_code"] = await asyncio.to_thread(server.stop)
            out["sigterm_exit_s"] = time.monotonic() - t_term
            ends = await asyncio.gather(*in_flight, return_exceptions=True)
            out["in_flight_ends"] = [e.get("code") or e["type"] if isinstance(e, dict) else type(e).__name__
                                     for e in ends]
            await last.close()
    finally:
        if "exit_code" not in out:
            out["exit_code"] = server.stop()
    out["server_log"] = server.log_path.read_text()[-3000:]
    return out


async def soak(options: dict, out_dir: Path) -> dict:
    """Connect, stream until a snippet is stepped, disconnect: `cycles` times, `parallel` at once."""
    # closed peers are freed within the heartbeat timeout, so the cap leaves room for two batches
    server = ServerProcess(out_dir, "--resume-ttl", str(options["resume_ttl_s"]), "--max-peers", "16")
    (_, clip), = world_clips(1, 16)

    async def cycle() -> int:
        peer = ClientPeer(server.url)
        if await peer.connect(ClipVideo(clip.frames, clip.spec.fps, 0), ClipAudio(clip.audio, 0)) != 200:
            return -peer.http_status
        await peer.wait_for(lambda: peer.status is not None and peer.status["snippets"] >= 1, 10)
        snippets = peer.status["snippets"] if peer.status else 0
        await peer.close()
        return snippets

    async def run(count: int) -> list[int]:
        done = []
        for start in range(0, count, options["parallel"]):
            done += await asyncio.gather(*(cycle() for _ in range(min(options["parallel"], count - start))))
        await asyncio.sleep(options["settle_s"])  # let the server notice the closes and free the peers
        return done

    try:
        await server.ready()
        await run(options["warmup"])
        baseline = server.rss_kib()
        stepped, samples = [], []
        for _ in range(0, options["cycles"], 10):
            stepped += await run(10)
            samples.append(server.rss_kib())
        after = samples[-1]
        sessions_expired = "expired" in server.log_path.read_text()
        alive = server.proc.poll() is None
    finally:
        code = server.stop()
    return {"baseline_kib": baseline, "after_kib": after, "stepped": stepped, "alive": alive, "exit_code": code,
            "sessions_expired": sessions_expired, "rss_samples_kib": samples,
            "server_log": server.log_path.read_text()[-2000:]}


def eager_checkpoint(folder: Path) -> Path:
    """A random `tiny` checkpoint with an alignment head whose calibrated watch threshold is 0, so
    its watches fire wherever a phrase scores above 0 (a trained head would fire on meaning)."""
    import dataclasses

    import torch

    from model import ModelConfig, StreamerModel

    cfg = ModelConfig.from_name("tiny")
    torch.manual_seed(0)
    StreamerModel(dataclasses.replace(cfg, align=dataclasses.replace(cfg.align, watch_threshold=0.0))).save(folder)
    return folder


WATCHED = ("whistle", "a drum", "red square", "blue circle")


async def watch(options: dict, out_dir: Path) -> dict:
    """Standing queries and search over the data channel, their replies and events also over SSE,
    the same requests by POST, and every malformed one refused with its code."""
    server = ServerProcess(out_dir, "--checkpoint", str(eager_checkpoint(out_dir / "checkpoint")))
    (_, clip), = world_clips(1, 8)
    out: dict = {"duration": clip.duration}
    try:
        await server.ready()
        async with aiohttp.ClientSession() as http:
            peer = ClientPeer(server.url)
            assert await peer.connect(ClipVideo(clip.frames, clip.spec.fps, 1.0), ClipAudio(clip.audio, 1.0)) == 200
            await peer.wait_for(lambda: any(m["type"] == "hello" for m in peer.messages), 5)
            out["hello_limits"] = next(m for m in peer.messages if m["type"] == "hello")["limits"]
            sse = SessionEvents(server.url, peer.session_id)
            sse.listen(http)
            await asyncio.sleep(0.3)  # the SSE stream is open before anything is asked
            for raw in ({"type": "watch", "id": "b1", "text": " "}, {"type": "watch", "id": "b2", "text": "drum",
                                                                     "threshold": 2},
                        {"type": "watch", "id": "b3", "text": "very " * 50}, {"type": "unwatch", "id": "b4", "watch": "1"},
                        {"type": "unwatch", "id": "b5", "watch": 99}, {"type": "search", "id": "b6", "text": "drum", "k": 0},
                        {"type": "watch", "id": "b7", "text": "a very long phrase " * 5}):
                peer.send(raw)
            for n, phrase in enumerate(WATCHED):
                peer.send({"type": "watch", "id": f"w{n}", "text": phrase})
            peer.send({"type": "watch", "id": "never", "text": "whistle", "threshold": 1.0})
            await peer.wait_for(lambda: peer.status is not None and peer.status["t"] >= clip.duration, clip.duration + 15)
            peer.send({"type": "unwatch", "id": "u0", "watch": 1})
            peer.send({"type": "search", "id": "s1", "text": "whistle", "k": 3})
            await peer.wait_for(lambda: any(m["type"] == "moments" for m in peer.messages), 10)
            async with http.post(f"{server.url}/sessions/{peer.session_id}/search", json={"text": "drum", "k": 2}) as r:
                out["http_search"] = {"status": r.status, "body": await r.json()}
            async with http.post(f"{server.url}/sessions/{peer.session_id}/watch", json={"text": "drum", "threshold": -1}) as r:
                out["http_bad_watch"] = {"status": r.status, "body": await r.json()}
            async with http.post(f"{server.url}/sessions/{peer.session_id}/unwatch", json={"watch": 1}) as r:
                out["http_unwatch_again"] = {"status": r.status, "body": await r.json()}
            await asyncio.sleep(0.5)
            out["channel"] = [m for m in peer.messages if m["type"] not in ("status", "pong", "hello")]
            out["sse"] = [{k: v for k, v in e.items() if k != "received_at"} for e in sse.events
                          if e["type"] in ("watching", "unwatched", "event", "moments")]
            sse.stop()
            await peer.close()
    finally:
        out["exit_code"] = server.stop()
    out["server_log"] = server.log_path.read_text()[-3000:]
    return out


SCENARIOS = {"watch": watch, "clips": clips, "whip": whip, "whip_ffmpeg": whip_ffmpeg, "browser": browser, "faults": faults, "soak": soak}


def main() -> int:
    name, options_path, out_path = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("aioice").setLevel(logging.WARNING)
    netns.setup_inside()
    options = json.loads(options_path.read_text())
    result = asyncio.run(asyncio.wait_for(SCENARIOS[name](options, out_path.parent), options.get("timeout", 240)))
    out_path.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
