"""Ray in tests: no call may start a Ray of its own (it would listen beyond loopback), so
auto-connect is off before any test module imports ray. Shared: world clips and their
in-process answers (`start_cluster` is in ray_cluster.py)."""

from __future__ import annotations

import os

os.environ["RAY_ENABLE_AUTO_CONNECT"] = "0"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"

import pytest  # noqa: E402

from streamer import Engine  # noqa: E402
from training.world.clip import World, WorldConfig  # noqa: E402

SESSIONS = 20


@pytest.fixture(scope="session")
def clips():
    world = World(WorldConfig.preset("test", snippets=(4, 8), questions_per_clip=2))
    return [world.clip(i) for i in range(SESSIONS)]


@pytest.fixture(scope="session")
def reference(clips):
    """Each clip's answers from the in-process engine."""
    with Engine.load(device="cpu") as engine:
        answers = []
        for clip in clips:
            session = engine.session()
            for _ in session.stream(clip.source()):
                pass
            answers.append([session.ask(q.text).text for q in clip.questions])
        return answers
