"""The benchmark's --smoke mode runs end to end on a CPU and writes a well-formed report;
the benchmark checks every result before timing it and compiles FlexAttention once."""

import json
from dataclasses import replace

import torch

from bench import attention
from bench.attention import PATTERN_GROUPS, SMOKE, BenchConfig, disagreement, main, visible_pairs
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
    assert all(r["max_error"]["dq"] == 0 for r in training)  # the fp32 reference against itself
    assert {r["method"] for r in streaming} == {"reference", "sdpa_no_mask"}
    assert all(r["gbps"] > 0 for r in streaming)
    assert (tmp_path / report["plot"]).stat().st_size > 0


def test_the_model_patterns_are_benchmarked_at_16k_tokens():
    cfg = BenchConfig()
    for chunk, window in [(8, 8), (16, 16), (32, 8), (56, 4), (130, 8), (432, 16)]:
        assert (chunk, window) in cfg.patterns
    assert cfg.patterns == sum(PATTERN_GROUPS.values(), ()) and cfg.tokens == 16384
    assert 1024 in cfg.seq_lens and 16384 in cfg.seq_lens


def test_disagreement_allows_twice_pytorchs_error_and_never_nan():
    truth = {"out": torch.zeros(4)}
    baseline = {"out": torch.full((4,), 0.01)}
    assert disagreement({"out": torch.full((4,), 0.02)}, truth, baseline, torch.float16)[1] is None
    errors, problem = disagreement({"out": torch.full((4,), 0.03)}, truth, baseline, torch.float16)
    assert errors["out"] == torch.tensor(0.03).item() and "out max error 0.03 > allowed 0.021" in problem
    assert disagreement({"out": torch.full((4,), float("nan"))}, truth, baseline, torch.float16)[1]


def test_a_wrong_method_fails_its_row_loudly(tmp_path, monkeypatch, capsys):
    real = attention._training_methods

    def off_by_one_percent(*args):
        methods = real(*args)
        build, fn, pairs = methods["reference"]
        methods["reference"] = (lambda q, k, v: (lambda run: lambda: run() * 1.01)(build(q, k, v)), fn, pairs)
        return methods

    monkeypatch.setattr(attention, "_training_methods", off_by_one_percent)
    path, wrong = attention.run(replace(SMOKE, seq_lens=(64,)), tmp_path, torch.device("cpu"))
    training = [r for r in json.loads(path.read_text())["results"] if r["case"] == "training"]
    assert wrong == len(training) == 2
    assert all(r["error"].startswith("wrong result: out") and "fwd_ms" not in r for r in training)
    assert "WARNING reference" in capsys.readouterr().err


def test_flex_attention_is_compiled_once_with_room_for_every_shape(monkeypatch):
    for name, default in [("recompile_limit", 8), ("accumulated_recompile_limit", 256),
                          ("fail_on_recompile_limit_hit", False)]:
        monkeypatch.setattr(torch._dynamo.config, name, default)  # and restored after the test
    assert attention.compiled_flex(True, "default") is attention.compiled_flex(True, "default")
    assert torch._dynamo.config.recompile_limit >= attention.FLEX_RECOMPILE_LIMIT
    assert torch._dynamo.config.fail_on_recompile_limit_hit
