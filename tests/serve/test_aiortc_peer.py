"""A real aiortc peer streams world clips over WebRTC and asks over the data channel."""

from __future__ import annotations

import statistics

import pytest
from netns import run_scenario


@pytest.mark.slow
def test_aiortc_peers_answer_easy_kinds_like_offline(tmp_path, offline_reference):
    """Six peers at once (VP8 and H.264 alternating), each one clip: colour/count/sound now
    are answered live about as often right as when the same clips are streamed offline."""
    result = run_scenario("clips", tmp_path, timeout=300, clips=6, max_snippets=8, codecs=["vp8", "h264"])
    assert result["exit_code"] == 0, "SIGTERM must shut the server down cleanly"
    asked = [a for r in result["results"] for a in r["asked"]]
    assert asked and all(a["error"] is None and a["reached"] for a in asked), asked
    live_right = sum(a["said"] == a["truth"] for a in asked)
    offline = offline_reference(result["clips"])
    offline_right = sum(o["said"] == o["truth"] for o in offline)
    assert len(offline) == len(asked)
    assert live_right >= offline_right - max(2, round(0.2 * len(asked))), (live_right, offline_right, asked)
    for r in result["results"]:
        assert r["status"]["dropped"] == 0 and r["status"]["media_dropped"] == 0, r["status"]
        # one sample per peer at its clip's end, while six client encoders share the server's 2 cores:
        # a peer may be caught in a spike (1.2 s seen in CI), the typical peer may not
        assert r["status"]["behind_s"] < 2.0, r["status"]
    assert statistics.median(r["status"]["behind_s"] for r in result["results"]) < 1.0
    assert statistics.median(a["answer_ms"] for a in asked) < 2000
