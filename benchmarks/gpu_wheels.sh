#!/usr/bin/env bash
# Downloads, into .whl/, the wheels autosched needs on a lent GPU machine beyond what its image
# holds (CuPy, numpy, numba, pytest and hypothesis are there; it runs Python 3.12 and can reach
# no package index). Run here, then carry .whl to the device: see benchmarks/gpu_device_check.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl optuna sqlalchemy alembic colorlog Mako greenlet xgboost-cpu
du -sh .whl
