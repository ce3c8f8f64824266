"""Watches and search over a real aiortc peer's data channel, SSE and HTTP (one scenario, one server)."""

from __future__ import annotations

import pytest
from netns import run_scenario


@pytest.mark.slow
def test_watch_unwatch_and_search_over_the_data_channel(tmp_path):
    out = run_scenario("watch", tmp_path, timeout=240)
    assert out["exit_code"] == 0
    assert out["hello_limits"]["max_watches"] == 64 and out["hello_limits"]["can_watch"] is True
    channel = out["channel"]
    errors = {m["id"]: m["code"] for m in channel if m["type"] == "error"}
    assert errors == {"b1": "bad_message", "b2": "bad_message", "b3": "too_long", "b4": "bad_message",
                      "b5": "unknown_watch", "b6": "bad_message", "b7": "refused"}, errors
    watching = {m["id"]: m for m in channel if m["type"] == "watching"}
    assert sorted(watching) == ["never", "w0", "w1", "w2", "w3"]
    assert {m["threshold"] for k, m in watching.items() if k != "never"} == {0.0}  # the checkpoint's calibrated one
    numbers = {m["watch"]: m["text"] for m in watching.values()}
    assert sorted(numbers) == [1, 2, 3, 4, 5]  # numbered by the session (in whichever order they were added)
    events = [m for m in channel if m["type"] == "event"]
    assert events, "a random head scores some phrase above 0 on some snippet"
    for event in events:
        assert numbers[event["watch"]] == event["phrase"] and event["score"] >= 0.0 and event["t1"] > event["t0"]
        assert event["watch"] != watching["never"]["watch"]
    assert [m for m in channel if m["type"] == "unwatched"] == [{"type": "unwatched", "id": "u0", "watch": 1}]
    replies = {m["id"]: m for m in channel if m["type"] == "moments"}  # the POSTed search's too (id None)
    assert sorted(replies, key=str) == [None, "s1"]
    moments = replies["s1"]
    assert moments["text"] == "whistle" and 1 <= len(moments["moments"]) <= 3
    best = moments["moments"][0]
    assert best["start"] < best["end"] <= out["duration"] + 2.0 and best["first"] <= best["last"]
    # the same objects go to the session's SSE listeners
    assert out["sse"] == [m for m in channel if m["type"] in ("watching", "unwatched", "event", "moments")]
    assert out["http_search"]["status"] == 200 and out["http_search"]["body"]["type"] == "moments"
    assert out["http_bad_watch"]["status"] == 400 and out["http_bad_watch"]["body"]["error"] == "bad_message"
    assert out["http_unwatch_again"]["status"] == 404 and out["http_unwatch_again"]["body"]["error"] == "unknown_watch"
