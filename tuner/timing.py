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


def interleaved_rounds(fns: dict, seconds: float, rounds: int, pause: float = 0.0) -> dict:
    """{name: the median seconds of each round} for each callable in `fns`, timed in `rounds`
    rounds of seconds/rounds each, one after another within a round and in a rotated order:
    the machine's slow and fast phases then fall on every callable alike, instead of on
    whichever ran last. `pause` seconds follow each timing (a BLAS's spinning threads stop)."""
    names = list(fns)
    per_round = {name: [] for name in names}
    for r in range(rounds if names else 0):
        for name in names[r % len(names):] + names[:r % len(names)]:
            per_round[name].append(median(time_callable(fns[name], seconds / rounds)))
            if pause:
                time.sleep(pause)
    return per_round
