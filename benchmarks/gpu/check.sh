#!/usr/bin/env bash
# Issue 13's GPU figures in one device call (320 s on an H200, 2026-11-27; all steps within
# DEADLINE seconds, 570 by default, so that a 600 s call ends with its log):
# `benchmarks/compare.py`
# for the GPT-2-small shape in float32 and the Qwen2.5-0.5B shape in bfloat16 and float32, then
# `benchmarks/batch.py` on CUDA. Each step has its own time limit, so one that hangs leaves the
# others their time; everything printed is also kept in $OUT/gpu-check.log.
#
# Here, first: bash benchmarks/gpu/wheels.sh. Then the device call, carrying [".whl"]:
#     python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
#         --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit; bash benchmarks/gpu/check.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
log=${OUT:-/tmp}/gpu-check.log
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
DEADLINE=${DEADLINE:-570}  # seconds for all the steps: a device call may run 600
# step CAP CMD…: CMD with at most CAP seconds, and never past the deadline (then it is skipped)
step() {
    local cap=$1 left=$((DEADLINE - SECONDS)); shift
    echo "== $* (at ${SECONDS} s)"
    if [ "$left" -lt 20 ]; then echo "(skipped: the deadline is near)"; return; fi
    timeout $((left < cap ? left : cap)) "$@" || echo "(step failed or timed out: exit $?)"
}
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    python3 -c 'import torch, transformers, triton; print("torch", torch.__version__, "transformers", transformers.__version__, "triton", triton.__version__)'
    step 120 python3 benchmarks/compare.py --device cuda --shape gpt2-124m --dtype float32
    step 150 python3 benchmarks/compare.py --device cuda --shape qwen2-0.5b --dtype bfloat16
    step 120 python3 benchmarks/compare.py --device cuda --shape qwen2-0.5b --dtype float32 --repeats 3
    step 300 python3 benchmarks/batch.py --device cuda --prompts 120 --repeats 3
} 2>&1 | tee "$log"
