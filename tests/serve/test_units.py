"""The server's pure parts: wire protocol, settings, stamping and the bounded media buffer."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from streamer.media import AudioBlock
from streamer.serve import protocol
from streamer.serve.config import ServeConfig
from streamer.serve.tracks import DISCONTINUITY_S, MediaBuffer, Stamper, StreamClock


def test_messages_are_validated_with_codes():
    parse = lambda raw: protocol.parse_message(raw, max_bytes=100, max_chars=20)  # noqa: E731
    assert parse('{"type": "ask", "id": "a", "text": " hi "}') == protocol.Ask("a", "hi")
    assert parse('{"type": "ping", "id": 3}') == protocol.Ping(3)
    for raw, code in (("{", "bad_message"), ("[1]", "bad_message"), (b"{}", "bad_message"),
                      ('{"type": "x"}', "unknown_type"), ("x" * 101, "too_large"),
                      (json.dumps({"type": "ask", "text": "y" * 21}), "too_long"),
                      (json.dumps({"type": "ask", "text": "  "}), "bad_message"),
                      (json.dumps({"type": "ask", "id": [1], "text": "q"}), "bad_message")):
        with pytest.raises(protocol.ProtocolError) as caught:
            parse(raw)
        assert caught.value.code == code, raw


def test_watch_unwatch_and_search_messages_are_validated_with_codes():
    parse = lambda payload: protocol.parse_message(json.dumps(payload), max_bytes=200, max_chars=20)  # noqa: E731
    assert parse({"type": "watch", "id": "w", "text": " drum "}) == protocol.WatchRequest("w", "drum", None)
    assert parse({"type": "watch", "text": "drum", "threshold": 1}) == protocol.WatchRequest(None, "drum", 1.0)
    assert parse({"type": "unwatch", "id": 2, "watch": 3}) == protocol.UnwatchRequest(2, 3)
    assert parse({"type": "search", "text": "whistle"}) == protocol.SearchRequest(None, "whistle", 5)
    assert parse({"type": "search", "text": "whistle", "k": 50}).k == 50
    for payload, code in (({"type": "watch"}, "bad_message"), ({"type": "watch", "text": 3}, "bad_message"),
                          ({"type": "watch", "text": "x" * 21}, "too_long"),
                          ({"type": "watch", "text": "drum", "threshold": 1.01}, "bad_message"),
                          ({"type": "watch", "text": "drum", "threshold": True}, "bad_message"),
                          ({"type": "watch", "text": "drum", "threshold": "0.5"}, "bad_message"),
                          ({"type": "unwatch"}, "bad_message"), ({"type": "unwatch", "watch": 0}, "bad_message"),
                          ({"type": "unwatch", "watch": 1.0}, "bad_message"),
                          ({"type": "search", "text": "drum", "k": 51}, "bad_message"),
                          ({"type": "search", "text": "drum", "k": False}, "bad_message"),
                          ({"type": "search", "text": ""}, "bad_message")):
        with pytest.raises(protocol.ProtocolError) as caught:
            parse(payload)
        assert caught.value.code == code, payload
    with pytest.raises(protocol.ProtocolError) as caught:  # json.loads reads NaN; a threshold may not be one
        protocol.parse_message('{"type": "watch", "id": "n", "text": "drum", "threshold": NaN}', max_bytes=200,
                               max_chars=20)
    assert caught.value.code == "bad_message" and caught.value.request_id == "n"


def test_non_loopback_needs_a_token():
    ServeConfig(host="127.0.0.1").check()
    ServeConfig(host="::1").check()
    with pytest.raises(ValueError, match="--token"):
        ServeConfig(host="0.0.0.0").check()
    ServeConfig(host="0.0.0.0", token="long-enough-secret").check()


def test_tracks_on_their_own_pts_clocks_align_by_arrival():
    clock = StreamClock()
    audio, video = Stamper(clock), Stamper(clock)
    a0, v0 = audio.stamp(0.0), video.stamp(4711.0)  # both arrive now, pts on unrelated clocks
    assert abs(a0 - v0) < 0.01
    time.sleep(0.1)
    a1, v1 = audio.stamp(0.1), video.stamp(4711.1)
    assert abs((a1 - a0) - 0.1) < 1e-9 and abs((v1 - v0) - 0.1) < 1e-9  # pts, not jittery arrival, between frames


def test_a_pts_jump_of_2_to_the_32_is_a_discontinuity_not_a_gap():
    clock = StreamClock(base=5.0)
    stamper = Stamper(clock)
    first = stamper.stamp(1.0)
    jumped = stamper.stamp(1.0 + 2**32 / 90000)  # ~13 hours ahead on a 90 kHz clock
    assert stamper.discontinuities == 1 and abs(jumped - first) < DISCONTINUITY_S
    back = stamper.stamp(0.5)  # a wrap backwards re-anchors too and never goes back in time
    assert stamper.discontinuities == 2 and back >= jumped


def test_the_media_buffer_is_bounded_and_counts_drops():
    buffer = MediaBuffer(max_items=10)
    for i in range(1000):
        buffer.put(AudioBlock(t=i * 0.02, pcm=np.zeros((960, 2), np.int16), rate=48000, channels=2))
    assert buffer.stats.dropped == 990
    buffer.close()
    assert list(buffer) == []
