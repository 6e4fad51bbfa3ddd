"""Wall-clock timing of a callable: warm-up, then repeats until a minimum total time."""
from __future__ import annotations

import statistics
import time


def time_callable(fn, min_seconds: float = 0.2, min_repeats: int = 5, max_repeats: int = 1000,
                  warmup: bool = True, give_up_after: float | None = None) -> list:
    """Seconds of each timed call, after one warm-up call unless the caller just ran fn.

    With give_up_after, timing stops after the first call that takes longer: a candidate
    several times slower than the best known needs no more precision to be ranked last.
    """
    if warmup:
        fn()
    costs = []
    start = time.perf_counter()
    while len(costs) < max_repeats and (len(costs) < min_repeats or time.perf_counter() - start < min_seconds):
        t0 = time.perf_counter()
        fn()
        costs.append(time.perf_counter() - t0)
        if give_up_after is not None and costs[-1] > give_up_after:
            break
    return costs


def median(costs) -> float:
    return statistics.median(costs)
