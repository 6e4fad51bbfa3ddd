"""Wall-clock timing of a callable: warm-up, then repeats until a minimum total time."""
from __future__ import annotations

import statistics
import time


def time_callable(fn, min_seconds: float = 0.2, min_repeats: int = 5, max_repeats: int = 1000) -> list:
    """Seconds of each timed call after one warm-up call."""
    fn()
    costs = []
    start = time.perf_counter()
    while len(costs) < max_repeats and (len(costs) < min_repeats or time.perf_counter() - start < min_seconds):
        t0 = time.perf_counter()
        fn()
        costs.append(time.perf_counter() - t0)
    return costs


def median(costs) -> float:
    return statistics.median(costs)
