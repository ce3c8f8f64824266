"""Many short connections: the server's memory comes back to where it was."""

from __future__ import annotations

import pytest
from netns import run_scenario


@pytest.mark.slow
def test_fifty_connect_stream_disconnect_cycles_keep_rss_flat(tmp_path):
    """The baseline is taken after 20 warm-up cycles: until then RSS climbs as codecs, threads and
    allocator arenas reach their working set (measured: +3% over the first 20 cycles, then ~flat)."""
    out = run_scenario("soak", tmp_path, timeout=300, warmup=20, cycles=50, parallel=5, settle_s=4.0,
                       resume_ttl_s=1.0)  # sessions expire, as they would after the default 120 s
    assert out["alive"] and out["exit_code"] == 0
    assert len(out["stepped"]) == 50 and all(n >= 1 for n in out["stepped"]), out["stepped"]
    assert out["sessions_expired"]
    growth = out["after_kib"] / out["baseline_kib"] - 1
    assert growth < 0.05, f"RSS grew {100 * growth:.1f}% ({out['baseline_kib']} -> {out['after_kib']} KiB)"
