#!/usr/bin/env bash
# Every CUDA check in one bounded run, for a GPU machine that has torch and triton (PyAV is not
# needed). Three steps, each under its own time limit, so that a slow one cannot cost the others
# their report:
#   1. every CUDA-marked test (kernels and model) with pinned tiles: no autotuning, so every
#      shape, dtype and head dim gets checked quickly;
#   2. the same tests as users run them, autotuned (19 tilings a kernel, dtype and head dim to
#      compile and time: this is the slow part);
#   3. the attention benchmark on the model's patterns at N = 16384, one pattern group a process.
# Logs and reports land in OUT_DIR (machine.txt, tests-{pinned,autotuned}.{log,xml},
# bench-<group>/attention-<device>.json + .png).
#
#   bench/gpu_checks.sh OUT_DIR [PINNED_S] [AUTOTUNED_S] [BENCH_S_PER_GROUP] [GROUP ...]
# (a step given 0 seconds is skipped; groups default to latent combiner long)
set -u
out=${1:?usage: bench/gpu_checks.sh OUT_DIR [PINNED_S] [AUTOTUNED_S] [BENCH_S_PER_GROUP] [GROUP ...]}
pinned_s=${2:-150}
autotuned_s=${3:-300}
bench_s=${4:-110}
shift $(( $# < 4 ? $# : 4 ))
groups=${*:-latent combiner long}
python=${PYTHON:-python3}
cd "$(dirname "$0")/.."
mkdir -p "$out"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1

{
    nvidia-smi
    "$python" -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__,
                  'cuda', torch.version.cuda, torch.cuda.get_device_name())"
} >"$out/machine.txt" 2>&1

# Tiles every kernel accepts at every tested head dim and dtype (all three are in the Hopper lists).
PINNED_TILES="fwd:BLOCK_M=64,BLOCK_N=64,num_warps=4,num_stages=3;dkdv:BLOCK_M=32,BLOCK_N=64,num_warps=4,num_stages=3"
PINNED_TILES+=";dq:BLOCK_M=64,BLOCK_N=32,num_warps=4,num_stages=3"
# Workers compile side by side (Triton's cache is shared on disk).
workers=$("$python" -c "import xdist" 2>/dev/null && echo "-n 8")
cuda_tests() {  # NAME SECONDS: one pytest run of every CUDA-marked test
    [ "$2" -gt 0 ] || return 0
    timeout "$2" "$python" -m pytest -q -p no:cacheprovider $workers -m cuda --junitxml="$out/tests-$1.xml" \
        tests/kernels/test_chunk_attention_cuda.py tests/model/test_model_cuda.py >"$out/tests-$1.log" 2>&1
    echo "tests ($1) exit status $?" >>"$out/tests-$1.log"
}
STREAMER_ATTENTION_CONFIG=$PINNED_TILES cuda_tests pinned "$pinned_s"
cuda_tests autotuned "$autotuned_s"

[ "$bench_s" -gt 0 ] || exit 0
for group in $groups; do
    timeout "$bench_s" "$python" -m bench.attention --out "$out/bench-$group" --patterns "$group" \
        --head-dims 64 --seq-lens 16384 >"$out/bench-$group.log" 2>&1
    echo "bench $group exit status $?" >>"$out/bench-$group.log"
done
