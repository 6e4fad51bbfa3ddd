"""Row statistics computed one row ahead (compute_next_row): results under any split of the
rows into parallel chunks, how often the row is read, the knob's reach, and its errors."""
from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codegen import build
from helpers import assert_matches, configs
from schedules import lower, ops, te
from schedules.errors import ScheduleError
from schedules.schedule import Schedule
from schedules.target import as_target


class _CountedRows(np.ndarray):
    """An input that counts the element reads of each row, as the interpreted steps make them."""

    def __array_finalize__(self, obj):
        self.reads = getattr(obj, "reads", None)

    def __getitem__(self, index):
        if isinstance(index, tuple) and len(index) == 2 and self.reads is not None:
            self.reads[int(index[0])] += 1
        return super().__getitem__(index)


def _run_in_chunks(kernel, inputs, bounds):
    """Every step of an interpreted kernel run chunk by chunk, in the order given, the way
    pool threads would each run one; returns the output."""
    outs = [np.full(t.shape, np.nan, t.dtype) for t in kernel.op.outputs]
    temps = [kernel._scratch(b) for b in kernel.loopnest.temps]
    block = [*inputs, *outs, *temps, *kernel.params]
    for step, extent in kernel.steps:
        if extent is None:
            step(0, 1, block)
            continue
        for lo, hi in bounds(extent):
            step(lo, hi, block)
    return outs[0]


@st.composite
def _chunks(draw, extent):
    cuts = sorted(draw(st.sets(st.integers(1, max(1, extent - 1)), max_size=4)) - {extent})
    edges = [0, *cuts, extent]
    pieces = [(a, b) for a, b in zip(edges, edges[1:]) if a < b]
    return draw(st.permutations(pieces))


def _row_scaled_exp(M, N):
    """A user operator: y = exp(x - max) * (sum of x's row), so both row statistics of x
    can go ahead, with the costly exp kept in the output loop."""
    x = te.placeholder((M, N), name="x")
    k = te.reduce_axis(N, "k")
    m = te.compute((M,), lambda i: te.max(x[i, k], axis=k), name="m")
    k2 = te.reduce_axis(N, "k")
    s = te.compute((M,), lambda i: te.sum(x[i, k2], axis=k2), name="s")
    y = te.compute((M, N), lambda i, j: te.exp(x[i, j] - m[i]) * s[i], name="y")
    return te.operator("row_scaled_exp", inputs=[x], outputs=[y])


def _numpy_row_scaled_exp(x):
    x64 = x.astype(np.float64)
    return (np.exp(x64 - x64.max(1, keepdims=True)) * x64.sum(1, keepdims=True)).astype(np.float32)


_OPERATORS = {
    "softmax": (ops.softmax, ("rowmax.next_row",), None),
    "layer_norm": (ops.layer_norm, ("x_sum.next_row",), None),
    "row_scaled_exp": (_row_scaled_exp, ("m.next_row", "s.next_row"), _numpy_row_scaled_exp),
}


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_rows_computed_ahead_match_numpy_under_any_chunking(data):
    name = data.draw(st.sampled_from(sorted(_OPERATORS)))
    make, knobs, oracle = _OPERATORS[name]
    M, N = data.draw(st.integers(1, 9)), data.draw(st.integers(1, 23))
    op = make(M, N)
    space = op.space("cpu")
    assert set(knobs) <= {k.name for k in space.knobs}
    config = data.draw(configs(space))
    kernel = build(op, "cpu", config, jit=False)
    inputs = op.random_inputs(3)
    ref = oracle(*inputs) if oracle else op.reference(*inputs)
    chunks = {}
    got = _run_in_chunks(kernel, inputs, lambda e: chunks.setdefault(e, data.draw(_chunks(e))))
    assert_matches(op, got, ref, f"{config.to_json()} chunks {chunks}")
    ahead = [k for k in knobs if config[k]]
    assert len(re.findall(r"_ahead_row = \(", kernel.source)) == len(ahead)


@pytest.mark.parametrize("ahead", [False, True])
def test_each_row_is_read_ahead_once_and_only_a_chunks_first_row_twice(ahead):
    M, N = 7, 5
    op = ops.softmax(M, N)
    space = op.space("cpu")
    config = space.default().replace(**{"rowmax.next_row": ahead, "softmax.i": (1,)})
    kernel = build(op, "cpu", config, jit=False)
    x = op.random_inputs(0)[0]
    counted = x.view(_CountedRows)
    counted.reads = np.zeros(M, dtype=int)
    parts = [(0, 3), (3, 4), (4, 7)]
    got = _run_in_chunks(kernel, [counted], lambda extent: parts)
    assert_matches(op, got, op.reference(x))
    # Every row is read for its max and for its exp; ahead, a chunk's first row is read for
    # its max in the row loop before it (or by itself), and each chunk reads one row past
    # its end (clamped to the last row) that it does not use.
    expected = np.full(M, 2 * N)
    if ahead:
        for _, hi in parts:
            expected[min(hi, M - 1)] += N
    assert counted.reads.tolist() == expected.tolist()


def test_softmax_default_reads_the_next_rows_max_in_its_output_loop():
    op = ops.softmax(6, 40)
    space = op.space("cpu")
    assert space.default()["rowmax.next_row"] is True
    source = build(op, "cpu", space.default(), jit=False).source
    output_loop = source[source.index("for softmax_j_i"):]
    assert re.search(r"rowmax_ahead = fmax_f32\(rowmax_ahead, x\[np\.uint64\(rowmax_next_row\)", output_loop)
    assert re.search(r"rowmax_next_row = min\(\(softmax_i \+ 1\), 5\)", source)
    off = build(op, "cpu", space.default().replace(**{"rowmax.next_row": False}), jit=False).source
    assert "_ahead" not in off


def test_compiled_softmax_with_rows_ahead_matches_numpy_on_threads():
    op = ops.softmax(37, 70)
    config = op.space("cpu").default().replace(**{"rowmax.next_row": True, "softmax.i": (2,)})
    x = op.random_inputs(1)
    assert_matches(op, build(op, "cpu", config)(*x), op.reference(*x))


def test_only_row_statistics_of_inputs_get_the_knob():
    # layer_norm's variance reads its mean; the window of a pool has no row loop after it.
    names = {k.name for k in ops.layer_norm(4, 8).space("cpu").knobs}
    assert "x_sum.next_row" in names and "sq_sum.next_row" not in names
    assert not any(k.name.endswith(".next_row") for k in ops.matmul(8, 8, 8).space("cpu").knobs)
    assert not any(k.name.endswith(".next_row") for k in ops.pool2d(1, 2, 6, 6, 2).space("cpu").knobs)


def _manual_softmax(order_j_first: bool, ahead_stage: str = "rowmax"):
    op = ops.softmax(5, 8)
    sch = Schedule(op, as_target("cpu"))
    y = sch["softmax"]
    i, j = y.axis
    jo, ji = y.split(j, 4)
    if order_j_first:
        y.reorder(jo, i, ji)
    sch["exp"].compute_inline()
    sch["rowmax"].compute_at(y, i)
    sch["rowsum"].compute_at(y, i)
    sch[ahead_stage].compute_next_row()
    return op, sch


def test_a_hand_schedule_with_the_exp_inlined_carries_the_max_in_the_output_loop():
    op, sch = _manual_softmax(order_j_first=False)
    nest = lower(sch)
    from codegen.interpret import interpreted_steps
    from codegen.numba_source import generate
    source = generate(nest)
    assert "rowmax_ahead = fmax_f32(rowmax_ahead" in source and interpreted_steps(source)


def test_compute_next_row_errors_name_the_stage_and_what_is_missing():
    op, sch = _manual_softmax(order_j_first=True)
    with pytest.raises(ScheduleError, match=r"rowmax.*one whole row of 8"):
        lower(sch)
    op, sch = _manual_softmax(order_j_first=False, ahead_stage="rowsum")
    with pytest.raises(ScheduleError, match=r"rowsum: it reads other stages"):
        lower(sch)
    sch = Schedule(ops.softmax(5, 8), as_target("cpu"))
    with pytest.raises(ScheduleError, match=r"compute_next_row on stage exp"):
        sch["exp"].compute_next_row()
