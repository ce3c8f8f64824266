#!/usr/bin/env bash
# Every CUDA check in one bounded run, for a GPU machine that has torch and triton (PyAV is not
# needed): the kernel and model tests that skip without CUDA, then the attention benchmark on
# the model's patterns at N = 16384, one pattern group a process so that a slow group cannot
# cost the others their report. Each step has its own time limit; the logs and reports land in
# OUT_DIR (machine.txt, tests.log, tests.xml, bench-<group>/attention-<device>.json + .png).
#
#   bench/gpu_checks.sh OUT_DIR [TEST_SECONDS] [BENCH_SECONDS_PER_GROUP]
set -u
out=${1:?usage: bench/gpu_checks.sh OUT_DIR [TEST_SECONDS] [BENCH_SECONDS_PER_GROUP]}
test_s=${2:-200}
bench_s=${3:-110}
python=${PYTHON:-python3}
cd "$(dirname "$0")/.."
mkdir -p "$out"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1

{
    nvidia-smi
    "$python" -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__,
                  'cuda', torch.version.cuda, torch.cuda.get_device_name())"
} >"$out/machine.txt" 2>&1

# Workers compile the autotuned kernels side by side (Triton's cache is shared on disk).
workers=$("$python" -c "import xdist" 2>/dev/null && echo "-n 8")
timeout "$test_s" "$python" -m pytest -q -p no:cacheprovider $workers -m cuda --junitxml="$out/tests.xml" \
    tests/kernels/test_chunk_attention_cuda.py tests/model/test_model_cuda.py >"$out/tests.log" 2>&1
echo "tests exit status $?" >>"$out/tests.log"

for group in latent combiner long; do
    timeout "$bench_s" "$python" -m bench.attention --out "$out/bench-$group" --patterns "$group" \
        --head-dims 64 --seq-lens 16384 >"$out/bench-$group.log" 2>&1
    echo "bench $group exit status $?" >>"$out/bench-$group.log"
done
