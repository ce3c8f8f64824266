"""Damaged media files through `File` and the chunker: bytes flipped, zeroed, cut short or
spliced at hypothesis-drawn places in a small valid MP4 (H.264 + AAC), WebM (VP8 + Opus)
and WAV. Each must end in sane snippets or a SourceError, never a hang or a crash."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import pytest
from fuzz_helpers import assert_clear_error, assert_sane_snippets, budget, within
from hypothesis import given
from hypothesis import strategies as st

from model.media import MediaSpec
from streamer.chunker import Chunker
from streamer.sources import File, SourceError



def _source_test_encoder():
    """The source tests' PyAV encoder (tests/streamer/conftest.py), loaded under its own name."""
    spec = importlib.util.spec_from_file_location("streamer_media_fixtures",
                                                  Path(__file__).parents[1] / "streamer" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.encode


encode = _source_test_encoder()

SPEC = MediaSpec(height=16, width=16, fps=12.5, frames_per_snippet=2)
KINDS = {"mp4": dict(video="libx264", audio="aac", rate=16000),
         "webm": dict(video="libvpx", audio="libopus", rate=48000),
         "wav": dict(video=None, audio="pcm_s16le", rate=16000)}


@pytest.fixture(scope="module")
def originals(tmp_path_factory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("fuzz-media")
    return {kind: encode(folder / f"clip.{kind}", seconds=0.6, size=(32, 24), **codecs).read_bytes()
            for kind, codecs in KINDS.items()}


_mutation = st.tuples(st.sampled_from(["flip", "zero", "truncate", "splice"]), st.floats(0, 1), st.integers(1, 64))


def _mutate(data: bytes, mutations: list[tuple[str, float, int]]) -> bytes:
    out = bytearray(data)
    for kind, where, size in mutations:
        at = min(int(where * len(out)), max(len(out) - 1, 0))
        if kind == "flip":
            for i in range(at, min(at + size, len(out))):
                out[i] ^= 0xFF
        elif kind == "zero":
            out[at : at + size] = bytes(len(out[at : at + size]))
        elif kind == "truncate":
            del out[at:]
        else:  # splice: a piece of the file again somewhere else
            out[at:at] = out[max(0, at - 4 * size) : at]
    return bytes(out)


def _snippets(path: Path) -> list:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # missing tracks and corrupt packets are reported as warnings
        with File(path) as source:
            return list(Chunker(SPEC).snippets(source))


@budget(60)
@given(kind=st.sampled_from(sorted(KINDS)), mutations=st.lists(_mutation, min_size=1, max_size=4))
def test_damaged_media_give_sane_snippets_or_a_source_error(originals, tmp_path_factory, kind, mutations):
    path = tmp_path_factory.mktemp("damaged") / f"damaged.{kind}"
    path.write_bytes(_mutate(originals[kind], mutations))
    try:
        snippets = within(lambda: _snippets(path))
    except SourceError as exc:
        assert_clear_error(exc, (SourceError,))
        return
    assert_sane_snippets(snippets, SPEC)
