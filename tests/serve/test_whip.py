"""WHIP ingest (RFC 9725) from a real aiortc publisher, answers over server-sent events."""

from __future__ import annotations

import pytest
from netns import run_scenario


@pytest.mark.slow
def test_whip_publisher_with_sse_answers(tmp_path):
    out = run_scenario("whip", tmp_path, timeout=180)
    assert out["garbage_status"] == 400 and out["wrong_type_status"] == 415
    assert out["post"]["status"] == 201 and out["post"]["location"].startswith("/whip/")
    assert out["post"]["content_type"].startswith("application/sdp")
    assert out["asked"], "the clip has an easy question"
    for a in out["asked"]:
        assert a["http_status"] == 200 and a["sse_answer"], a
        assert a["sse_tokens"] == a["said"], "the SSE tokens spell the answer the POST returned"
    assert out["snippets_before_delete"] >= 5
    assert out["patch_status"] == 405
    assert out["delete_status"] == 200 and out["second_delete_status"] == 404
    assert out["exit_code"] == 0
