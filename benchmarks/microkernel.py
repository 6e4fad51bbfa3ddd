"""Register micro-kernel speed against the measured FMA peak of one core (L1-resident panels)."""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kc", type=int, default=256, help="reduction length per call (default: 256)")
    parser.add_argument("--calls", type=int, default=20000, help="kernel calls per timing (default: 20000)")
    parser.add_argument("--repeats", type=int, default=7, help="timings per tile; the median is reported")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"), help="results folder")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / "benchmarks"))
    from report import write_result
    import numpy as np
    from numba import njit

    from codegen.peak import fp32_peak_gflops
    from codegen.simd import outer_product_kernel
    peak_1 = fp32_peak_gflops(threads=1, iterations=5_000_000)
    peak_all = fp32_peak_gflops(threads=os.cpu_count() or 1, iterations=5_000_000)
    rows = []
    for mr, nvec in ((6, 2), (4, 2), (8, 1), (4, 3), (3, 4)):
        kernel = outer_product_kernel(mr, nvec)

        @njit(nogil=True)
        def repeat(a, b, c, kc, calls, nr):
            for _ in range(calls):
                kernel(a, 0, b, 0, c, 0, nr, kc)

        nr = 8 * nvec
        a = np.random.rand(args.kc * mr).astype(np.float32)
        b = np.random.rand(args.kc * nr).astype(np.float32)
        c = np.zeros(mr * nr, np.float32)
        start = time.perf_counter()
        repeat(a, b, c, args.kc, 1, nr)
        compile_s = time.perf_counter() - start
        rates = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            repeat(a, b, c, args.kc, args.calls, nr)
            rates.append(2.0 * mr * nr * args.kc * args.calls / (time.perf_counter() - start) / 1e9)
        gflops = statistics.median(rates)
        rows.append({"tile": f"{mr}x{nr}", "gflops_one_core": round(gflops, 1),
                     "fraction_of_core_peak": round(gflops / peak_1, 3), "compile_s": round(compile_s, 2)})
        print(rows[-1])
    path = write_result(args.out, "microkernel", "benchmarks/microkernel.py", argv,
                        {"fp32_peak_gflops_one_core": round(peak_1, 1),
                         "fp32_peak_gflops_all_cores": round(peak_all, 1), "kc": args.kc, "results": rows})
    print(f"peak: {peak_1:.1f} GFLOPS on one core, {peak_all:.1f} on all; wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
