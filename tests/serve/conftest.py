"""Shared helpers of the serve tests: the offline reference the live answers are held to."""

from __future__ import annotations

import pytest

EASY_KINDS = ("color_now", "count_now", "sound_now")


def offline_easy_answers(indices: list[int]) -> list[dict]:
    """The bundled model's answers to the easy questions of world:test clips, streamed offline
    and asked exactly at each question's snippet (what `streamer demo` does)."""
    from streamer import Engine, sources
    from training.world.clip import World, WorldConfig

    world, out = World(WorldConfig.preset("test")), []
    with Engine.load(device="cpu") as engine:
        for index in indices:
            clip = world.clip(index)
            questions = sorted((q for q in clip.questions if q.kind in EASY_KINDS), key=lambda q: q.ask_snippets)
            session = engine.session()
            source = sources.Arrays(video=clip.frames, fps=clip.spec.fps, audio=clip.audio, rate=clip.spec.sample_rate)
            for update in session.stream(source):
                while questions and questions[0].ask_snippets == update.index + 1:
                    q = questions.pop(0)
                    out.append({"clip": index, "kind": q.kind, "truth": q.answer,
                                "said": session.ask(q.text, at=update).text})
            session.close()
    return out


@pytest.fixture(scope="session")
def offline_reference():
    return offline_easy_answers
