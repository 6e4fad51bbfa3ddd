"""The search-efficiency benchmark's metrics and its measurement cache (no compiler involved)."""
import sys
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from measure_cache import CachedMeasurer  # noqa: E402
from search_efficiency import best_so_far, spearman, trials_to_reach  # noqa: E402

from schedules import ops  # noqa: E402
from tuner.simulate import ReplayMeasurer  # noqa: E402


@settings(deadline=None)  # the first example imports scipy
@given(st.lists(st.floats(-1e3, 1e3), min_size=3, max_size=40, unique=True))
def test_spearman_matches_scipy_and_is_rank_invariant(xs):
    from scipy.stats import spearmanr
    ys = [x ** 3 - 5 * x for x in xs]
    assert abs(spearman(xs, ys) - spearmanr(xs, ys).statistic) < 1e-9
    assert abs(spearman(xs, [2.0 * x for x in xs]) - 1.0) < 1e-9    # same order: exactly 1
    assert abs(spearman(xs, [-x for x in xs]) + 1.0) < 1e-9         # reversed: exactly -1


def test_best_so_far_and_trials_to_reach():
    curve = best_so_far([2.0, None, 1.0, 4.0, 0.5], flops=8.0)   # seconds -> flops/s
    assert curve == [4.0, 4.0, 8.0, 8.0, 16.0]
    assert trials_to_reach(curve, 8.0) == 3
    assert trials_to_reach(curve, 15.0) == 5
    assert trials_to_reach(curve, 17.0) is None


def test_measure_cache_measures_each_config_once_and_resumes_from_its_file(tmp_path):
    op = ops.matmul(16, 16, 16)
    space = op.space("cpu")
    configs = [space.sample(np.random.default_rng(i)) for i in range(4)]
    inner = ReplayMeasurer()
    cache = CachedMeasurer(inner, str(tmp_path / "m.jsonl"))
    first = cache.measure(op, "cpu", configs)
    again = cache.measure(op, "cpu", configs[::-1])
    assert len(inner.calls) == 4 and [r.seconds for r in again] == [r.seconds for r in first][::-1]
    reopened = CachedMeasurer(ReplayMeasurer(), str(tmp_path / "m.jsonl"))
    assert [r.seconds for r in reopened.measure(op, "cpu", configs)] == [r.seconds for r in first]
    assert reopened.inner.calls == [] and len(reopened.entries(op.workload_key)) == 4
