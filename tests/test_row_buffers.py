"""Costly intermediates computed once per row, fast-math min/max, hoisted scratch, thread pool."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codegen import build
from codegen.numba_source import generate
from codegen.parallel import run_parallel
from schedules import lower, ops, te
from tests.helpers import assert_matches, configs


def _exp_calls(source: str) -> int:
    return len(re.findall(r"\bexp(?:_nonpos)?_f32\(", source))


def test_softmax_computes_exp_once_per_element_into_its_output_row():
    op = ops.softmax(6, 21)
    space = op.space("cpu")
    rows = build(op, "cpu", space.default())
    inline = build(op, "cpu", space.default().replace(**{"exp.compute": "inline"}))
    assert space.default()["exp.compute"] == "rows"
    # exp(x - max) goes straight into the output row, the row sum accumulates in the same
    # loop, and the output is scaled in place by the sum's reciprocal.
    assert _exp_calls(rows.source) == 1 and "exp_row" not in rows.source
    assert re.search(r"softmax\[[^]]*\] = exp_e\b", rows.source)
    assert re.search(r"rowsum_v = \(rowsum_v \+ exp_e\)", rows.source)
    assert re.search(r"softmax\[[^]]*\] \* inv", rows.source) and not re.search(r"softmax_v = .*/", rows.source)
    assert _exp_calls(inline.source) == 2 and "exp_row" not in inline.source
    x = op.random_inputs(1)
    for kernel in (rows, inline):
        assert_matches(op, kernel(*x), op.reference(*x))


def test_row_buffer_is_allocated_once_per_thread_not_per_row():
    op = _row_normalized_tanh(2, 3, 9, reverse=True)  # read backwards: it needs its own row
    lines = build(op, "cpu", op.space("cpu").default()).source.splitlines()
    alloc = next(k for k, line in enumerate(lines) if "t_row = np.empty" in line)
    parallel = next(k for k, line in enumerate(lines) if "range(lo_" in line)
    assert alloc < parallel


def _row_normalized_tanh(B, M, N, reverse=False):
    """A user operator: t = tanh(x) is read by a row sum and by the output (backwards along
    the row with `reverse`, so the output row cannot hold t)."""
    x = te.placeholder((B, M, N), name="x")
    t = te.compute((B, M, N), lambda b, i, j: te.tanh(x[b, i, j]) + 2.0, name="t")
    k = te.reduce_axis(N, "k")
    s = te.compute((B, M), lambda b, i: te.sum(t[b, i, k], axis=k), name="s")
    y = te.compute((B, M, N), lambda b, i, j: t[b, i, N - 1 - j if reverse else j] / s[b, i] + x[b, i, j],
                   name="y")
    return te.operator("row_normalized_tanh_rev" if reverse else "row_normalized_tanh", inputs=[x], outputs=[y])


def _numpy_row_normalized_tanh(x, reverse=False):
    t = np.tanh(x.astype(np.float64)) + 2.0
    t_read = t[..., ::-1] if reverse else t
    return (t_read / t.sum(-1, keepdims=True) + x).astype(np.float32)


@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_user_operator_with_a_costly_intermediate_matches_numpy_for_sampled_configs(data):
    B, M, N = data.draw(st.tuples(st.integers(1, 3), st.integers(1, 5), st.integers(1, 19)))
    reverse = data.draw(st.booleans())
    op = _row_normalized_tanh(B, M, N, reverse)
    space = op.space("cpu")
    assert "t.compute" in {k.name for k in space.knobs}
    config = data.draw(configs(space))
    x = op.random_inputs(2)
    ref = _numpy_row_normalized_tanh(*x, reverse=reverse)
    kernel = build(op, "cpu", config, jit=False)
    assert_matches(op, kernel(*x), ref, config.to_json())
    if config["t.compute"] == "rows":
        # Read at its own points, t is computed into the output row; read backwards, into its own.
        assert ("t_row" in kernel.source) == reverse


def test_cheap_or_single_reader_intermediates_stay_inlined():
    # layer_norm's mean has two readers but no costly call; dense's gelu has one reader.
    assert not any(k.name.endswith(".compute") for k in ops.layer_norm(4, 8).space("cpu").knobs)
    assert not any(k.name.endswith(".compute")
                   for k in ops.dense(4, 8, 8, activation="gelu").space("cpu").knobs)


def test_fast_math_max_uses_the_vectorizable_intrinsic_and_strict_math_does_not():
    op = ops.pool2d(1, 2, 6, 6, 2, pool_type="max")
    nest = lower(op.space("cpu").apply(op.space("cpu").default()))
    assert "fmax_f32(" in generate(nest, fastmath=True)
    strict = generate(nest, fastmath=False)
    assert "fmax_f32(" not in strict.replace("import", "").split("\n", 5)[-1] and "max(" in strict


@pytest.mark.parametrize("threads,extent,chunks", [(2, 1, 1), (2, 7, 1), (2, 100, 3), (3, 10, 2)])
def test_run_parallel_covers_the_range_exactly_once(threads, extent, chunks):
    seen, lock = [], threading.Lock()

    def step(lo, hi, tag):
        with lock:
            seen.extend(range(lo, hi))
        assert tag == "t"

    run_parallel(step, extent, ("t",), threads, chunks_per_thread=chunks)
    assert sorted(seen) == list(range(extent))


_AFFINITY_PROBE = """
import os, threading
from codegen.parallel import run_parallel
found, lock, both = [], threading.Lock(), threading.Barrier(2)
def step(lo, hi):
    both.wait(timeout=30)  # the two chunks run at once, so on two different workers
    with lock:
        found.append(sorted(os.sched_getaffinity(0)))
cpus = sorted(os.sched_getaffinity(0))
run_parallel(lambda lo, hi: None, 2, (), 2)  # the pool starts with the process's cores
os.sched_setaffinity(0, {cpus[-1]})  # then the caller moves to the last core
run_parallel(step, 2, (), 2)
os.sched_setaffinity(0, set(cpus))
print(sorted(map(tuple, found)))
"""


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs two cores and Linux affinity")
@pytest.mark.parametrize("pin", ["1", "0"])
def test_kernel_worker_threads_are_pinned_or_kept_off_the_callers_core(pin):
    env = dict(os.environ, AUTOSCHED_PIN_THREADS=pin)
    out = subprocess.run([sys.executable, "-c", _AFFINITY_PROBE], env=env, capture_output=True,
                         text=True, check=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    affinities = eval(out.stdout.strip())
    cpus = sorted(os.sched_getaffinity(0))
    if pin == "1":
        # The worker holds a core of its own, not the first one, which the caller tends to
        # keep (here the caller is on the last core).
        assert sorted(affinities) == sorted([(cpus[-1],), (cpus[1],)])
    else:
        # Unpinned, the worker may run anywhere but on the caller's core.
        assert sorted(affinities) == sorted([(cpus[-1],), tuple(cpus[:-1])])
