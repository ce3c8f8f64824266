"""WHIP ingest from a client nobody here wrote: FFmpeg's `whip` muxer (inside PyAV's wheel)."""

from __future__ import annotations

import pytest
from netns import run_scenario


@pytest.mark.slow
def test_ffmpeg_whip_muxer_streams_a_clip_answered_over_sse(tmp_path):
    # world:test clip 48, four snippets: a whistle, then a purple shape; streamed offline the bundled
    # model names both, asked at their snippet or one later (the live ask may land a snippet late)
    out = run_scenario("whip_ffmpeg", tmp_path, timeout=180, clip=48, hold_s=1.0)
    refused = out["default_certificate"]
    assert refused["exit"] == 3 and "TLS fatal alert" in refused["stderr"], refused
    assert any("-cert_file/-key_file" in line for line in refused["server_said"]), refused

    assert out["publisher"]["exit"] == 0, out["publisher"]
    assert out["closed_by"] == ["ended by DELETE"], "the muxer DELETEs its resource when it closes"
    assert out["second_delete_status"] == 404
    patch = out["patch"]
    assert patch["status"] == 405 and patch["allow"] == "DELETE" and "trickle" in patch["body"]["message"]

    heard = [a for a in out["asked"] if a["kind"] == "sound_now" and a["truth"] != "silence"]
    assert heard and any(a["kind"] == "color_now" for a in out["asked"]), "asked about a sound and a sight"
    for a in out["asked"]:
        assert a["http_status"] == 200 and a["sse_answer"] and a["sse_tokens"] == a["said"], a
        assert a["said"] == a["truth"], a
    status = out["last_status"]
    assert status["snippets"] >= out["n_snippets"] and status["dropped"] == 0 and status["media_dropped"] == 0, status
    assert out["exit_code"] == 0
