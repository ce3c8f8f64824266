"""Server settings in one dataclass, so the CLI, the tests and embedding code share defaults."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ServeConfig:
    """Everything `streamer serve` can be told; limits are per peer unless named otherwise."""

    host: str = "127.0.0.1"
    port: int = 8080
    checkpoint: Path | None = None  # None: the bundled tiny model
    device: str | None = None
    token: str | None = None  # bearer token required on every endpoint when set
    max_peers: int = 8
    ice_servers: tuple[str, ...] = ()  # e.g. ("stun:stun.example.org:3478",); empty: host candidates only
    connect_timeout_s: float = 10.0  # offer answered -> ICE connected, else the slot is freed
    heartbeat_timeout_s: float = 3.0  # no media and no data-channel message for this long: peer is dead
    resume_ttl_s: float = 120.0  # a disconnected session waits this long for a reconnect carrying its id
    max_sdp_bytes: int = 64 * 1024
    max_message_bytes: int = 4096  # one data-channel message or HTTP ask body
    max_question_chars: int = 200
    questions_per_s: float = 2.0  # per-session rate limit (token bucket)
    question_burst: int = 4
    max_watches: int = 64  # standing queries per session (watch messages past it are refused)
    answer_workers: int = 2  # threads decoding answers, shared by all sessions
    media_buffer_s: float = 1.0  # decoded media held per peer between the track readers and the chunker
    status_every_s: float = 1.0  # status pushed per stepped snippet, and this often when none comes
    max_send_buffer: int = 256 * 1024  # data-channel bytes queued before status pushes are skipped
    engine_max_queued: int = 2  # snippets a live session buffers before dropping the oldest

    def check(self) -> None:
        """Refuse settings that would be unsafe or meaningless, with what to change."""
        if self.max_peers < 1:
            raise ValueError("--max-peers must be at least 1")
        if not (0 < self.port < 65536):
            raise ValueError(f"--port must be 1-65535, got {self.port}")
        if self.token is None and not is_loopback(self.host):
            raise ValueError(
                f"binding to {self.host} exposes the server beyond this machine: pass --token SECRET "
                "(clients send 'Authorization: Bearer SECRET', the page takes ?token=SECRET)"
            )
        if self.token is not None and len(self.token) < 8:
            raise ValueError("--token must be at least 8 characters")


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses only (a name that might resolve elsewhere is not)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
