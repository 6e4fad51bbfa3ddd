"""How fast GPU candidates are made with no GPU: lowering to CUDA C, NVRTC compiling to PTX and
to machine code with ptxas's resource report, and the limit check, per sampled config.

This is the build side of tuning on a GPU (it runs in the build workers); the GPU itself only
times kernels that passed it.
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--configs", type=int, default=40, help="sampled configs per workload (default: 40)")
    parser.add_argument("--out", default=str(HERE / "results"), help="folder for the JSON result, or 'none'")
    args = parser.parse_args(argv)

    import numpy as np

    from codegen import build
    from codegen.cuda_compile import verify
    from gpu_bench import workloads
    from schedules import as_target
    target = as_target("cuda")
    rows = []
    for name, op, _, _ in workloads():
        space = op.space(target)
        rng = np.random.default_rng(0)
        configs = [space.default()] + [space.sample(rng) for _ in range(args.configs - 1)]
        lower_s, compile_s, regs, over = [], [], [], 0
        for cfg in configs:
            t0 = time.perf_counter()
            kernel = build(op, target, cfg)
            t1 = time.perf_counter()
            report = verify(kernel.source, kernel.launches, target, "nvrtc")
            t2 = time.perf_counter()
            lower_s.append(t1 - t0)
            compile_s.append(t2 - t1)
            regs += [r.registers for r in report.resources.values()]
            over += not report.ok
        total = sum(lower_s) + sum(compile_s)
        row = dict(workload=name, configs=len(configs), lower_ms=1e3 * statistics.median(lower_s),
                   compile_ms=1e3 * statistics.median(compile_s), per_minute=60 * len(configs) / total,
                   registers_median=statistics.median(regs), registers_max=max(regs), over_limits=over)
        rows.append(row)
        print(f"{name:16s} lower {row['lower_ms']:6.1f} ms  NVRTC+ptxas {row['compile_ms']:6.1f} ms  "
              f"{row['per_minute']:6.0f} candidates/min/process  registers {row['registers_median']:.0f} "
              f"(max {row['registers_max']})  over limits: {over}")
    if args.out != "none":
        path = Path(args.out) / f"gpu_build_speed-{datetime.date.today().isoformat()}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(dict(machine=platform.processor() or platform.machine(),
                                        target=target.key, date=datetime.datetime.now().isoformat(timespec="minutes"),
                                        command="python benchmarks/gpu_build_speed.py", rows=rows), indent=2))
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
