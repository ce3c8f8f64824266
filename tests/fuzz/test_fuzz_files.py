"""Damaged checkpoints and saved sessions: a micro model's checkpoint files and a real
mid-stream session file, their bytes flipped, cut or replaced. Loading must refuse them with
a ValueError / StateError that says what is wrong, or give something that still works;
never a hang, a crash or another exception. (Random bytes through `decode_session` itself
are in tests/streamer/test_state_io.py; these go through the files and the Engine.)"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from fuzz_helpers import assert_clear_error, budget, within
from hypothesis import given
from hypothesis import strategies as st

from model import StreamerModel
from model.checkpoint import MODEL_FILES
from streamer.engine import Engine
from streamer.sources import Arrays
from streamer.state_io import StateError

sys.path.insert(0, str(Path(__file__).parents[1] / "model"))
from model_helpers import make_model, micro_config  # noqa: E402

QUESTION = "what moved?"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("micro-checkpoint")
    make_model(micro_config()).save(folder)
    return folder


def _noise(model: StreamerModel, seconds: float, seed: int) -> Arrays:
    m = model.cfg.media
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (round(seconds * m.fps), m.height, m.width, 3), dtype=np.uint8)
    audio = (0.1 * rng.standard_normal(round(seconds * m.sample_rate))).astype(np.float32)
    return Arrays(video=frames, fps=m.fps, audio=audio, rate=m.sample_rate)


@pytest.fixture(scope="module")
def engine(checkpoint):
    with Engine.load(checkpoint, device="cpu") as engine:
        yield engine


@pytest.fixture(scope="module")
def saved_session(engine, tmp_path_factory) -> bytes:
    session = engine.session()
    session.watch("what moved", threshold=0.0, check=(QUESTION, "nothing"))  # saved watches are damaged too
    list(session.stream(_noise(engine.model, 0.5, 0), flush=False))  # a partial snippet stays pending
    assert session.index_size > 0  # ... and the moment index
    path = tmp_path_factory.mktemp("session") / "s.streamer"
    session.save(path)
    session.close()
    return path.read_bytes()


_damage = st.lists(st.tuples(st.floats(0, 1), st.sampled_from(["flip", "cut", "random"]),
                             st.binary(min_size=1, max_size=16)), min_size=1, max_size=3)


def _damaged(data: bytes, damage) -> bytes:
    out = bytearray(data)
    for where, how, noise in damage:
        if not out:
            break
        at = min(int(where * len(out)), max(len(out) - 1, 0))
        if how == "flip":
            out[at] ^= noise[0] or 1
        elif how == "cut":
            del out[at:]
        else:
            out[at : at + len(noise)] = noise
    return bytes(out)


@budget(30)
@given(name=st.sampled_from(MODEL_FILES), damage=_damage)
def test_a_damaged_checkpoint_is_refused_or_loads_a_working_model(checkpoint, tmp_path_factory, name, damage):
    folder = tmp_path_factory.mktemp("damaged-checkpoint")
    shutil.copytree(checkpoint, folder, dirs_exist_ok=True)
    (folder / name).write_bytes(_damaged((checkpoint / name).read_bytes(), damage))
    try:
        model = within(lambda: StreamerModel.load(folder))
    except ValueError as exc:
        assert_clear_error(exc, (ValueError,))
        return
    state = model.init_state(1)
    assert isinstance("".join(within(lambda: list(model.answer(state, QUESTION, max_new_tokens=4)))), str)


@budget(40)
@given(damage=_damage)
def test_a_damaged_session_file_is_refused_or_resumes(engine, saved_session, tmp_path_factory, damage):
    path = tmp_path_factory.mktemp("damaged-session") / "s.streamer"
    path.write_bytes(_damaged(saved_session, damage))
    try:
        session = within(lambda: engine.load_session(path))
    except StateError as exc:
        assert_clear_error(exc, (StateError,))
        return
    try:
        within(lambda: list(session.stream(_noise(engine.model, 0.3, 1))))
        answer = within(lambda: session.ask(QUESTION, max_new_tokens=4))
        assert isinstance(answer.text, str)
    finally:
        session.close()
