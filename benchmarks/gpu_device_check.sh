#!/usr/bin/env bash
# Every GPU check in one command, for a machine with an NVIDIA GPU and CuPy: the tests marked
# `gpu` (every library operator on the device against the reference, a short tuning run) and
# the benchmark against CuPy/cuBLAS (tuned here, TRIALS per workload). Results go to $OUT if
# set (a lent device machine), else benchmarks/results. With wheels in .whl/ (from
# benchmarks/gpu_wheels.sh) they are installed first, for a machine with no package index.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-benchmarks/results}
mkdir -p "$out"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 AUTOSCHED_CACHE_DIR=/tmp/autosched-cache
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
(nvidia-smi -L; date -u) | tee "$out/gpu-device.txt"
python3 -m pytest -q -m gpu tests/test_cuda.py 2>&1 | tee "$out/gpu-tests.log"
python3 benchmarks/gpu_bench.py --trials "${TRIALS:-32}" --database /tmp/autosched-gpu.db --out "$out" \
  2>&1 | tee "$out/gpu-bench.log"
