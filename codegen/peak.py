"""The machine's measured fp32 FMA peak, so benchmarks can state "% of peak" honestly."""
from __future__ import annotations

import threading
import time

from .simd import fma_probe


def fp32_peak_gflops(threads: int = 1, lanes: int = 8, chains: int = 12, iterations: int = 10_000_000,
                     repeats: int = 5) -> float:
    """Best GFLOPS over `repeats` runs of `threads` threads, each running independent FMA
    chains (2 flops per lane per FMA). The probe releases the GIL, so threads run on separate
    cores. The best run, not the median, because a peak is a capability: on a shared machine
    noise only ever slows the probe down. 12 chains plus 2 constants fit in 16 registers.
    Each run lasts about 40 ms, so thread start-up jitter does not count against the peak."""
    if threads < 1 or repeats < 1 or iterations < 1:
        raise ValueError(f"fp32_peak_gflops: threads={threads}, repeats={repeats}, iterations={iterations} must be >= 1")
    probe = fma_probe(lanes, chains)
    probe(10)  # compile outside the timing
    flops = 2.0 * lanes * chains * iterations * threads
    rates = []
    for _ in range(repeats):
        workers = [threading.Thread(target=probe, args=(iterations,)) for _ in range(threads)]
        start = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        rates.append(flops / (time.perf_counter() - start) / 1e9)
    return max(rates)
