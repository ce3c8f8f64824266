"""The benchmark's --smoke mode runs end to end on a CPU and writes a well-formed report."""

import json

from bench.attention import main, visible_pairs
from kernels import chunk_causal_mask


def test_visible_pairs_counts_the_mask():
    for args in [(40, 40, 7, None, 0), (40, 40, 7, 2, 0), (9, 40, 8, 3, 31), (40, 40, 1, None, 0)]:
        assert visible_pairs(*args) == int(chunk_causal_mask(*args).sum())


def test_smoke_run_writes_json_and_plot(tmp_path):
    assert main(["--smoke", "--out", str(tmp_path)]) == 0
    (report_path,) = tmp_path.glob("attention-*.json")
    report = json.loads(report_path.read_text())
    assert "FlashAttention convention" in report["flops"]
    training = [r for r in report["results"] if r["case"] == "training"]
    streaming = [r for r in report["results"] if r["case"] == "streaming"]
    assert len(training) == 4 and all(r["fwd_tflops"] > 0 and r["bwd_ms"] > 0 for r in training)
    assert {r["method"] for r in streaming} == {"reference", "sdpa_no_mask"}
    assert all(r["gbps"] > 0 for r in streaming)
    assert (tmp_path / report["plot"]).stat().st_size > 0
