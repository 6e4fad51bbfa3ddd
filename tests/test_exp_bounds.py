"""exp of x - max(x) over x's row is marked nonpositive (no overflow clamp), and nothing else is."""
from __future__ import annotations

import re

import numpy as np
import pytest

from codegen import build
from helpers import assert_matches
from schedules import ops, te

M, N = 5, 12


def _calls(source: str, name: str) -> int:
    return len(re.findall(rf"\b{name}\(\(", source))


CASES = {
    # (statistic, output, marked?)
    "row_max": (lambda x, k: te.compute((M,), lambda i: te.max(x[i, k], axis=k), name="m"),
                lambda x, m, i, j: te.exp(x[i, j] - m[i]), True),
    "column_max": (lambda x, k: te.compute((N,), lambda j: te.max(x[k, j], axis=k), name="m"),
                   lambda x, m, i, j: te.exp(x[i, j] - m[j]), True),
    "row_sum": (lambda x, k: te.compute((M,), lambda i: te.sum(x[i, k], axis=k), name="m"),
                lambda x, m, i, j: te.exp(x[i, j] - m[i]), False),
    "reversed": (lambda x, k: te.compute((M,), lambda i: te.max(x[i, k], axis=k), name="m"),
                 lambda x, m, i, j: te.exp(m[i] - x[i, j]), False),
    "other_row": (lambda x, k: te.compute((M,), lambda i: te.max(x[i, k], axis=k), name="m"),
                  lambda x, m, i, j: te.exp(x[i, j] - m[(i + 1) % M]), False),
    "shifted_column": (lambda x, k: te.compute((M,), lambda i: te.max(x[i, k], axis=k), name="m"),
                       lambda x, m, i, j: te.exp(x[i, (j + 1) % N] * 2.0 - m[i]), False),
}


def _case_operator(name):
    stat, out, _ = CASES[name]
    x = te.placeholder((M, N), name="x")
    k = te.reduce_axis(M if name == "column_max" else N, "k")
    m = stat(x, k)
    y = te.compute((M, N), lambda i, j: out(x, m, i, j), name="y")
    return te.operator(f"exp_bounds_{name}", inputs=[x], outputs=[y])


def _partial_row_max():
    """max over all but the last column: x[i, N-1] may exceed it, so exp(x - m) may be > 1."""
    x = te.placeholder((M, N), name="x")
    k = te.reduce_axis(N - 1, "k")
    m = te.compute((M,), lambda i: te.max(x[i, k], axis=k), name="m")
    y = te.compute((M, N), lambda i, j: te.exp(x[i, j] - m[i]), name="y")
    return te.operator("exp_bounds_partial", inputs=[x], outputs=[y])


@pytest.mark.parametrize("name", sorted(CASES) + ["partial"])
def test_only_exps_of_x_minus_the_max_of_its_row_are_marked(name):
    op = _partial_row_max() if name == "partial" else _case_operator(name)
    marked = False if name == "partial" else CASES[name][2]
    kernel = build(op, "cpu", op.space("cpu").default(), jit=False)
    assert (_calls(kernel.source, "exp_nonpos_f32") > 0) == marked, kernel.source
    assert (_calls(kernel.source, "exp_f32") > 0) == (not marked)
    x = (op.random_inputs(0)[0] * 4).astype(np.float32)
    assert_matches(op, kernel(x), op.reference(x))


@pytest.mark.parametrize("compute", ["rows", "inline"])
def test_softmax_uses_the_unclamped_exp(compute):
    op = ops.softmax(6, 40)
    config = op.space("cpu").default().replace(**{"exp.compute": compute})
    kernel = build(op, "cpu", config)
    assert _calls(kernel.source, "exp_nonpos_f32") == (1 if compute == "rows" else 2)
    assert _calls(kernel.source, "exp_f32") == 0
    x = op.random_inputs(1)
    assert_matches(op, kernel(*x), op.reference(*x))
