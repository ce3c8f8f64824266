"""The chunk-causal attention kernel benchmark (bench/attention.py) as part of the suite: on a
GPU only, since its subject is the Triton kernel. `full` runs the whole matrix; `quick` one
sequence length and head size over the model's latent and combiner patterns; `smoke` the
module's own tiny configuration.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from bench import attention

QUICK = replace(attention.BenchConfig(), seq_lens=(4096,), head_dims=(64,),
                patterns=attention.PATTERN_GROUPS["latent"][:2] + attention.PATTERN_GROUPS["combiner"][:2])
CONFIGS = {"full": attention.BenchConfig(), "quick": QUICK, "smoke": attention.SMOKE}


def test_attention_kernels(benchmark, device, sizes, tmp_path):
    if device.type != "cuda":
        pytest.skip("the attention benchmark measures the Triton kernel, which needs a CUDA device; on a CPU "
                    "only the PyTorch reference runs (tests/kernels cover it; `python -m bench.attention --smoke`)")
    path, wrong = benchmark.pedantic(attention.run, args=(CONFIGS[sizes.name], tmp_path, device), rounds=1)
    report = json.loads(path.read_text())
    report.pop("plot", None)
    benchmark.extra_info["attention"] = report
    assert wrong == 0, f"{wrong} methods gave wrong results (see the rows' errors in {path})"
