"""GPU benchmark: tuned autosched CUDA kernels against CuPy (cuBLAS matmul, operators one by one).

    python benchmarks/gpu_bench.py                       # tune what is not tuned yet, then time
    python benchmarks/gpu_bench.py --trials 0            # time the tuned records (or defaults)
    python benchmarks/gpu_bench.py --dry-run             # no GPU: compile and check every kernel

Every timing is CUDA events around one launch sequence, with the L2 cache flushed before each
run, the median of many runs; both sides run in this process on the same device arrays, and
both are checked against the operator's numpy reference first. Results go to
benchmarks/results/gpu_bench-<device>-<date>.{json,md}.
"""
from __future__ import annotations

import argparse
import datetime
import fnmatch
import json
import math
import platform
import re
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

RTOL = ATOL = 2e-3


# -- CuPy op by op: what a user would run instead, written for any array module ------------
def matmul_baseline(xp, erf):
    return lambda a, b: a @ b


def dense_gelu_baseline(xp, erf):
    def run(x, w, b):
        y = x @ w.T + b
        return 0.5 * y * (1.0 + erf(y * xp.float32(1 / math.sqrt(2))))
    return run


def softmax_baseline(xp, erf):
    def run(x):
        e = xp.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    return run


def layer_norm_baseline(xp, erf, eps=1e-5):
    def run(x, gamma, beta):
        mean = x.mean(axis=1, keepdims=True)
        var = ((x - mean) ** 2).mean(axis=1, keepdims=True)
        return (x - mean) / xp.sqrt(var + xp.float32(eps)) * gamma + beta
    return run


def workloads(small: bool = False):
    """(name, operator, CuPy formulation name, baseline factory); `small` shapes for checks."""
    from schedules import ops
    s = (lambda big, little: little) if small else (lambda big, little: big)
    return [
        (f"matmul_{s(4096, 64)}", ops.matmul(s(4096, 64), s(4096, 64), s(4096, 64)),
         "a @ b (cuBLAS)", matmul_baseline),
        ("dense_bias_gelu", ops.dense(s(2048, 32), s(3072, 48), s(768, 40), bias=True, activation="gelu"),
         "x @ w.T + b (cuBLAS), gelu(erf)", dense_gelu_baseline),
        ("softmax", ops.softmax(s(4096, 16), s(1000, 100)), "exp(x - max) / sum", softmax_baseline),
        ("softmax_wide", ops.softmax(s(8192, 8), s(4096, 300)), "exp(x - max) / sum", softmax_baseline),
        ("layer_norm", ops.layer_norm(s(8192, 16), s(768, 96)), "mean, var, normalise", layer_norm_baseline),
    ]


def numpy_erf():
    import numpy as np
    return np.vectorize(math.erf, otypes=[np.float32])


# -- timing ----------------------------------------------------------------------------------
def time_median(cupy, fn, flush, runs: int) -> float:
    from tuner.gpu_timing import time_cuda
    fn()  # warm-up: compiles, allocates
    cupy.cuda.get_current_stream().synchronize()
    return statistics.median(time_cuda(cupy, fn, flush, 0.2, runs, 10 * runs))


def _device_name(cupy) -> str:
    props = cupy.cuda.runtime.getDeviceProperties(0)
    name = props["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


def run(args) -> int:
    from codegen.cuda_kernel import cupy_module
    from tuner import Database, build_best, tune
    from tuner.gpu_timing import flush_buffer
    cupy = cupy_module()
    import cupyx.scipy.special as special
    from schedules import as_target
    target = as_target("cuda")
    device = _device_name(cupy)
    db = Database(args.database)
    flush = flush_buffer(cupy, target.gpu.l2_bytes)
    rows = []
    for name, op, formulation, baseline in workloads():
        if args.only and not fnmatch.fnmatch(name, args.only):
            continue
        if args.trials:
            tune(op, target, database=db, trials=args.trials, seed=0, progress=True)
        kernel = build_best(op, target, database=db)
        inputs = op.random_inputs(0)
        expected = op.reference(*inputs)
        dev = kernel.device_arrays(inputs)
        base = baseline(cupy, special.erf)
        ours_out, base_out = kernel(*dev), base(*dev)
        ok = bool(cupy.allclose(ours_out, cupy.asarray(expected), rtol=RTOL, atol=ATOL)) and \
            bool(cupy.allclose(base_out, cupy.asarray(expected), rtol=RTOL, atol=ATOL))
        launch = kernel.launcher(*dev, out=kernel(*dev))
        ours = [time_median(cupy, launch, flush, args.runs) for _ in range(args.repeats)]
        theirs = [time_median(cupy, lambda: base(*dev), flush, args.runs) for _ in range(args.repeats)]
        t_ours, t_base = statistics.median(ours), statistics.median(theirs)
        rows.append(dict(workload=name, op=op.name, config=json.loads(kernel.config.to_json()),
                         autosched_ms=t_ours * 1e3, cupy_ms=t_base * 1e3, cupy=formulation,
                         speedup=t_base / t_ours, gflops=op.flops() / t_ours / 1e9, correct=ok,
                         runs=args.repeats))
        print(f"{name:18s} autosched {t_ours * 1e3:8.3f} ms  CuPy {t_base * 1e3:8.3f} ms  "
              f"x{t_base / t_ours:5.2f}{'' if ok else '  WRONG'}", flush=True)
    _write(rows, device, args)
    return 0


def _write(rows, device, args):
    import cupy
    date = datetime.date.today().isoformat()
    slug = re.sub(r"[^a-z0-9]+", "-", device.lower()).strip("-")
    base = Path(args.out) / f"gpu_bench-{slug}-{date}"
    base.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(device=device, date=date, cupy=cupy.__version__, cuda_runtime=cupy.cuda.runtime.runtimeGetVersion(),
                host=platform.node(), command=" ".join(["python", "benchmarks/gpu_bench.py"] + sys.argv[1:]))
    base.with_suffix(".json").write_text(json.dumps(dict(meta, rows=rows), indent=2))
    lines = [f"GPU bench on {device}, {date} (median of {args.repeats} medians; CUDA events, L2 flushed)", "",
             "| workload | autosched ms | CuPy ms | CuPy formulation | speedup | GFLOPS | correct |",
             "|---|---:|---:|---|---:|---:|---|"]
    for r in rows:
        lost = " (lost)" if r["speedup"] < 1 else ""
        lines.append(f"| {r['workload']} | {r['autosched_ms']:.3f} | {r['cupy_ms']:.3f} | {r['cupy']} | "
                     f"{r['speedup']:.2f}x{lost} | {r['gflops']:.0f} | {'yes' if r['correct'] else 'NO'} |")
    base.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {base}.json and .md")


def dry_run(args) -> int:
    """Everything but the GPU: each workload's default kernel compiled and checked against the
    device limits, and each CuPy formulation checked with numpy against the reference."""
    import numpy as np

    from codegen import build
    from codegen.cuda_compile import verify
    from schedules import Target, as_target
    target = Target.cuda(arch=args.arch) if args.arch else as_target("cuda")
    failures = 0
    for (name, op, formulation, baseline), (_, small, _, _) in zip(workloads(), workloads(small=True)):
        if args.only and not fnmatch.fnmatch(name, args.only):
            continue
        kernel = build(op, target)
        report = verify(kernel.source, kernel.launches, target)
        regs = ", ".join(f"{k}: {r.registers} regs, {r.shared_bytes} B smem" for k, r in report.resources.items())
        inputs = small.random_inputs(0)
        good = np.allclose(baseline(np, numpy_erf())(*inputs), small.reference(*inputs), rtol=RTOL, atol=ATOL)
        failures += (not report.ok) + (not good)
        print(f"{name:18s} {len(kernel.launches)} kernel(s) [{regs}] "
              f"{'within limits' if report.ok else report.violations}; baseline "
              f"'{formulation}' {'matches' if good else 'DIFFERS FROM'} the reference")
    return 1 if failures else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", default=str(HERE / ".bench" / "gpu.db"),
                        help="records database (default: benchmarks/.bench/gpu.db)")
    parser.add_argument("--trials", type=int, default=64,
                        help="tuning budget per workload, 0 to use the records as they are (default: 64)")
    parser.add_argument("--only", help="only workloads whose name matches this glob")
    parser.add_argument("--repeats", type=int, default=5, help="timing runs per side, median kept (default: 5)")
    parser.add_argument("--runs", type=int, default=20, help="launches per timing run (default: 20)")
    parser.add_argument("--out", default=str(HERE / "results"), help="folder for the JSON and markdown results")
    parser.add_argument("--dry-run", action="store_true",
                        help="no GPU needed: compile each workload's kernels and check them and the baselines")
    parser.add_argument("--arch", help="with --dry-run: the GPU architecture to compile for (e.g. sm_80)")
    args = parser.parse_args(argv)
    Path(args.database).parent.mkdir(parents=True, exist_ok=True)
    if args.dry_run:
        return dry_run(args)
    from codegen.cuda_kernel import GpuUnavailable
    try:
        return run(args)
    except GpuUnavailable as exc:
        print(f"gpu_bench: {exc}\n(--dry-run compiles and checks every kernel without a GPU)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
