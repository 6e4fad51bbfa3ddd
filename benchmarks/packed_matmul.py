"""The micro-kernel GEMM (codegen/gemm.py) against numpy/OpenBLAS on square fp32 matmuls."""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# OpenBLAS threads keep spinning for a while after a call and slow whatever runs next in the
# process, so each timing waits this long after the other library's call.
PAUSE_S = 0.3


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="*", default=[256, 512, 1024, 2048], help="M=N=K values")
    parser.add_argument("--repeats", type=int, default=7, help="timings per size; medians are reported")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"), help="results folder")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / "benchmarks"))
    import numpy as np
    from report import write_result

    from codegen.gemm import packed_matmul
    from codegen.parallel import thread_count
    from codegen.peak import fp32_peak_gflops
    peak = fp32_peak_gflops(threads=thread_count(), iterations=5_000_000)
    rng = np.random.default_rng(0)
    rows = []
    for n in args.sizes:
        A = rng.standard_normal((n, n)).astype(np.float32)
        B = rng.standard_normal((n, n)).astype(np.float32)
        C = packed_matmul(A, B)
        error = float(np.abs(C - A @ B).max())
        ours, theirs = [], []
        for _ in range(args.repeats):
            time.sleep(PAUSE_S)
            start = time.perf_counter()
            packed_matmul(A, B, out=C)
            ours.append(time.perf_counter() - start)
            time.sleep(PAUSE_S)
            start = time.perf_counter()
            A @ B
            theirs.append(time.perf_counter() - start)
        t_ours, t_numpy = statistics.median(ours), statistics.median(theirs)
        flops = 2.0 * n ** 3
        rows.append({"size": n, "ours_ms": round(t_ours * 1e3, 3), "numpy_ms": round(t_numpy * 1e3, 3),
                     "ours_gflops": round(flops / t_ours / 1e9, 1), "numpy_gflops": round(flops / t_numpy / 1e9, 1),
                     "ratio_to_numpy": round(t_numpy / t_ours, 3),
                     "fraction_of_peak": round(flops / t_ours / 1e9 / peak, 3), "max_abs_error": error})
        print(rows[-1])
    path = write_result(args.out, "packed_matmul", "benchmarks/packed_matmul.py", argv,
                        {"fp32_peak_gflops": round(peak, 1), "threads": thread_count(),
                         "numpy": np.__version__, "results": rows})
    print(f"measured peak {peak:.1f} GFLOPS; wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
