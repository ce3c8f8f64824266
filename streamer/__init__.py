"""streamer: stream video and audio in, ask questions about it at any moment.

    from streamer import Engine, sources
    engine = Engine.load()
    session = engine.session()
    for update in session.stream(sources.File("clip.mp4")):
        ...
    print(session.ask("what color is the circle?").text)

Names are imported on first use, so `streamer --help` does not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Engine": "streamer.engine",
    "CheckpointNotFound": "streamer.engine",
    "Session": "streamer.session",
    "Update": "streamer.session",
    "Answer": "streamer.session",
    "StateError": "streamer.state_io",
    "Watch": "streamer.watch",
    "Event": "streamer.watch",
    "Moment": "streamer.watch",
    "EventFeed": "streamer.events",
    "Snippet": "streamer.media",
    "VideoFrame": "streamer.media",
    "AudioBlock": "streamer.media",
    "connect": "streamer.cluster",
    "ClusterEngine": "streamer.cluster",
}
_SUBMODULES = {"sources", "chunker", "media"}

__all__ = sorted([*_EXPORTS, *_SUBMODULES])


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"streamer.{name}")
    raise AttributeError(f"module 'streamer' has no attribute {name!r}")
