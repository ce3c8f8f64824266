"""Faults the server must survive with its other peers unaffected (one scenario, one server)."""

from __future__ import annotations

import pytest
from netns import run_scenario


@pytest.mark.slow
def test_faults_leave_the_server_and_other_peers_alone(tmp_path):
    out = run_scenario("faults", tmp_path, timeout=240)
    # bearer token on every endpoint; the page takes it in the URL
    assert (out["no_token"], out["wrong_token"], out["offer_no_token"], out["page_with_token"]) == (401, 401, 401, 200)
    # bad offers are refused with a reason, never crash the server
    assert (out["garbage_json"], out["garbage_sdp"], out["not_sdp"], out["oversized"]) == (400, 400, 400, 413)
    assert out["unknown_session"] == 400  # invalid SDP is refused before the session is looked up
    # every malformed data-channel message gets an error and the session keeps answering
    assert out["error_codes"] == sorted(["bad_message", "unknown_type", "too_large", "bad_message", "too_long",
                                         "refused", "bad_message", "bad_message"])
    assert out["answer_after_garbage"] == "answer"
    assert out["burst_types"].count("rate_limited") >= 5 and out["burst_types"][0] == "answer"
    # the cap, a killed peer freed within 5 s, the slot reusable, a peer without media or heartbeat freed
    assert out["over_cap"] == 503 and out["over_cap_message"]["error"] == "full"
    assert out["freed"] and out["freed_after_s"] < 5.0
    assert out["after_free"] == 200
    assert out["no_heartbeat_freed"] and out["no_heartbeat_freed_after_s"] < 5.0
    # the good peer streamed through all of it, nothing dropped; a reload resumed its session
    assert out["good_snippets"] >= 10 and out["good_dropped"] == 0
    assert out["resumed"] and out["resumed_snippets"][1] > out["resumed_snippets"][0]
    assert out["old_channel"] == "closed", "the replaced connection is closed by the server"
    assert out["server_alive"] and out["exit_code"] == 0
    # SIGTERM with answers in flight: exit 0 within the stop timeout, every pending ask ended
    assert out["sigterm_exit_s"] < 10.0, out["sigterm_exit_s"]
    assert all(end in ("answer", "closed") for end in out["in_flight_ends"]), out["in_flight_ends"]
