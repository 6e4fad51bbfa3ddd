"""Thread hand-off cost: how long a kernel call split across the pool takes when the chunks do
nothing, for a compiled step called by address (how kernels run) and for a Python callable,
against the same call on one thread and against a sleeping ThreadPoolExecutor."""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from concurrent.futures import ThreadPoolExecutor


def _timed(fn, calls: int) -> float:
    costs = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        costs.append(time.perf_counter() - start)
    return statistics.median(costs)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=5000, help="calls per measurement (default: 5000)")
    parser.add_argument("--rounds", type=int, default=5, help="measurements per variant, median kept")
    parser.add_argument("--out", default="benchmarks/results", help="folder for the JSON result, or 'none'")
    args = parser.parse_args(argv)

    import numpy as np
    from numba import njit

    from numba import cfunc

    from codegen.parallel import run_parallel, run_step, thread_count
    from codegen.step_abi import STEP_SIGNATURE, array_at

    @njit("void(int64, int64, float32[::1], int64)", nogil=True)
    def noop(lo, hi, a, p):  # a compiled, GIL-free Python callable
        pass

    @cfunc(STEP_SIGNATURE)
    def noop_step(lo, hi, args):  # a step as generated kernels have them
        array_at(args[0], (4,), np.float32)[0] += 0
        return 1

    a = np.zeros(4, np.float32)
    threads = max(2, thread_count())
    sleeping = ThreadPoolExecutor(max_workers=threads)

    def executor_call():
        for f in [sleeping.submit(noop, k, k + 1, a, 0) for k in range(threads)]:
            f.result()

    params = np.zeros(1, np.int64)
    variants = {
        "compiled step, one thread": lambda: run_step(noop_step.address, threads, (a,), params, 1),
        f"compiled step, spinning pool ({threads} chunks)":
            lambda: run_step(noop_step.address, threads, (a,), params, threads),
        "one thread (run_parallel, 1 chunk)": lambda: run_parallel(noop, threads, (a, 0), 1),
        f"spinning pool, Python callable ({threads} chunks)": lambda: run_parallel(noop, threads, (a, 0), threads),
        f"ThreadPoolExecutor ({threads} tasks)": executor_call,
    }
    results = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, fn in variants.items():  # interleaved, so a slow phase hits every variant
            results[name].append(_timed(fn, args.calls))
    sleeping.shutdown()
    table = {name: round(statistics.median(v) * 1e6, 1) for name, v in results.items()}
    for name, us in table.items():
        print(f"{name:48s} {us:8.1f} us per call (median of {args.rounds} x {args.calls})")
    if args.out != "none":
        import os
        os.makedirs(args.out, exist_ok=True)
        path = os.path.join(args.out, f"thread_handoff-{time.strftime('%Y-%m-%d')}.json")
        with open(path, "w") as f:
            json.dump({"machine": platform.processor() or platform.machine(), "threads": threads,
                       "date": time.strftime("%Y-%m-%d %H:%M"), "command": "python benchmarks/thread_handoff.py",
                       "microseconds_per_call": table}, f, indent=2)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
