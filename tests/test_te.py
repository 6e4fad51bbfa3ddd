"""Tier 1 (unit): the tensor-expression language and Operator checks, no compiler involved."""
import math

import numpy as np
import pytest

from schedules import te
from schedules.expr import Binary, Const


def test_arithmetic_builds_typed_expressions():
    A = te.placeholder((4, 4), "float32", name="A")
    i = te.reduce_axis(4, name="i")
    e = A[0, 1] * 2 + 1.5
    assert isinstance(e, Binary) and e.dtype == "float32"
    assert (A[0, 0] < 1.0).dtype == "bool"
    assert (A[0, 0] == A[1, 1]).dtype == "bool"
    idx = (i * 2 + 1 - 3) // 2 % 3
    assert idx.dtype == "int64"
    assert te.cast("float64", A[0, 0]).dtype == "float64"
    assert te.const(3, "int32").dtype == "int32"
    with pytest.raises(TypeError, match="no truth value"):
        bool(A[0, 0] > 0)


@pytest.mark.parametrize("bad,match", [
    (lambda: te.placeholder((), name="s"), "at least one dimension"),
    (lambda: te.placeholder((3, 0), name="z"), "positive"),
    (lambda: te.compute((3,), lambda i, j: i, name="x"), "takes 2 indices"),
    (lambda: te.reduce_axis(0), "positive"),
])
def test_bad_declarations_raise(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        bad()


def test_reduction_must_be_the_whole_body_and_use_its_axes():
    A = te.placeholder((4, 5), name="A")
    k = te.reduce_axis(5, name="k")
    with pytest.raises(ValueError, match="must be the whole body"):
        te.compute((4,), lambda i: te.sum(A[i, k], axis=k) + 1.0, name="bad")
    with pytest.raises(ValueError, match="used outside a reduction"):
        te.compute((4,), lambda i: A[i, k], name="bad2")
    k2 = te.reduce_axis(5, name="k2")
    with pytest.raises(ValueError, match="not listed in axis="):
        te.compute((4,), lambda i: te.sum(A[i, k] + A[i, k2], axis=k), name="bad3")
    with pytest.raises(TypeError, match="where= must be a comparison"):
        te.sum(A[0, k], axis=k, where=k)
    with pytest.raises(TypeError, match="integer expression"):
        A[0.5, 1]


def test_operator_validates_its_graph():
    A = te.placeholder((3,), name="A")
    B = te.placeholder((3,), name="B")
    C = te.compute((3,), lambda i: A[i] + B[i], name="C")
    with pytest.raises(ValueError, match="reads placeholder B, which is not in inputs"):
        te.operator("x", [A], [C])
    D = te.compute((3,), lambda i: A[i] * 2.0, name="A")
    with pytest.raises(ValueError, match="names must be unique"):
        te.operator("y", [A], [D])
    with pytest.raises(TypeError, match="outputs must be te.compute"):
        te.operator("z", [A], [A])


def test_padding_reads_and_custom_defaults_in_reference():
    A = te.placeholder((5,), name="A")
    r = te.reduce_axis(3, name="r")
    S = te.compute((5,), lambda i: te.sum(A[i + r - 1], axis=r), name="S")
    M = te.compute((5,), lambda i: te.max(A.at(i + r - 1, default=-math.inf), axis=r), name="M")
    op = te.operator("window", [A], [S, M])
    a = np.array([1, -2, 3, -4, 5], np.float32)
    s, m = op.reference(a)
    padded = np.concatenate([[0], a, [0]]).astype(np.float32)
    np.testing.assert_allclose(s, padded[:-2] + padded[1:-1] + padded[2:])
    np.testing.assert_allclose(m, [1, 3, 3, 5, 5])


def test_workload_key_depends_on_structure_not_names_of_axes():
    def make(n, axis_name):
        A = te.placeholder((n, 4), name="A")
        k = te.reduce_axis(4, name=axis_name)
        return te.operator("rowsum", [A], [te.compute((n,), lambda i: te.sum(A[i, k], axis=k), name="S")])
    assert make(3, "k").workload_key == make(3, "kk").workload_key
    assert make(3, "k").workload_key != make(4, "k").workload_key
    assert make(3, "k") == make(3, "k") and hash(make(3, "k")) == hash(make(3, "k"))


def test_flops_counts_multiply_add_as_two():
    from schedules import ops
    assert ops.matmul(4, 5, 6).flops() == 2 * 4 * 5 * 6
    assert isinstance(Const(1, "int32").value, int)
