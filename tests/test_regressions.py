"""User-written operators that once compiled to wrong code or crashed, checked on many configs."""
import math

import numpy as np
import pytest

from codegen import build
from helpers import assert_matches
from schedules import ops, te


def two_reductions_in_one_epilogue():
    M, N, K = 5, 6, 7
    A, B = te.placeholder((M, K), name="A"), te.placeholder((K, N), name="B")
    k, k2 = te.reduce_axis(K, "k"), te.reduce_axis(K, "k2")
    C = te.compute((M, N), lambda i, j: te.sum(A[i, k] * B[k, j], axis=k), name="C")
    D = te.compute((M, N), lambda i, j: te.max(A[i, k2] + B[k2, j], axis=k2), name="D")
    return te.operator("two_red", [A, B], [te.compute((M, N), lambda i, j: C[i, j] + D[i, j], name="Y")])


def dense_scaled_by_row_statistic():
    M, N, K = 4, 6, 5
    A, B = te.placeholder((M, K), name="A"), te.placeholder((K, N), name="B")
    k, r = te.reduce_axis(K, "k"), te.reduce_axis(K, "r")
    C = te.compute((M, N), lambda i, j: te.sum(A[i, k] * B[k, j], axis=k), name="C")
    S = te.compute((M,), lambda i: te.sum(A[i, r] * A[i, r], axis=r), name="S")
    return te.operator("scaled", [A, B], [te.compute((M, N), lambda i, j: C[i, j] / te.sqrt(S[i] + 1.0), name="Y")])


def stencil_of_a_computed_output():
    A = te.placeholder((8,), name="A")
    P = te.compute((8,), lambda i: A[i] * A[i], name="P")
    Q = te.compute((8,), lambda i: P[i - 1] + P[i + 1], name="Q")
    return te.operator("stencil_out", [A], [P, Q])


def statistic_read_at_two_axes():
    A = te.placeholder((6, 5), name="A")
    r = te.reduce_axis(5, "r")
    S = te.compute((6,), lambda i: te.sum(A[i, r], axis=r), name="S")
    return te.operator("outer_sum", [A], [te.compute((6, 6), lambda i, j: S[i] + S[j], name="Y")])


def statistic_longer_than_its_consumer():
    A, X = te.placeholder((6, 4), name="A"), te.placeholder((3, 4), name="X")
    r = te.reduce_axis(4, "r")
    S = te.compute((6,), lambda i: te.sum(A[i, r], axis=r), name="S")
    return te.operator("partial_stat", [A, X], [te.compute((3, 4), lambda i, j: X[i, j] * S[i], name="Y"), S])


def statistic_shorter_than_its_consumer():
    A, X = te.placeholder((1, 4), name="A"), te.placeholder((6, 4), name="X")
    r = te.reduce_axis(4, "r")
    S = te.compute((1,), lambda i: te.sum(A[i, r], axis=r), name="S")
    return te.operator("oob_stat", [A, X], [te.compute((6, 4), lambda i, j: X[i, j] + S[i], name="Y"), S])


def conv_of_conv():
    N = 8
    x, w1, w2 = te.placeholder((N,), name="x"), te.placeholder((3,), name="w1"), te.placeholder((3,), name="w2")
    a, b = te.reduce_axis(3, "a"), te.reduce_axis(3, "b")
    H = te.compute((N,), lambda i: te.sum(x[i + a - 1] * w1[a], axis=a), name="H")
    return te.operator("conv_conv", [x, w1, w2], [te.compute((N,), lambda i: te.sum(H[i + b - 1] * w2[b], axis=b), name="Z")])


def dense_bias_relu_in_separate_stages():
    M, N, K = 4, 5, 6
    A, B, bias = te.placeholder((M, K), name="A"), te.placeholder((K, N), name="B"), te.placeholder((N,), name="bias")
    k = te.reduce_axis(K, "k")
    C = te.compute((M, N), lambda i, j: te.sum(A[i, k] * B[k, j], axis=k), name="C")
    T = te.compute((M, N), lambda i, j: C[i, j] + bias[j], name="T")
    return te.operator("dbr", [A, B, bias], [te.compute((M, N), lambda i, j: te.maximum(T[i, j], 0.0), name="Y")])


def variance_through_an_inlined_mean():
    M, N = 3, 8
    X = te.placeholder((M, N), name="X")
    r, r2 = te.reduce_axis(N, "r"), te.reduce_axis(N, "r2")
    S = te.compute((M,), lambda i: te.sum(X[i, r], axis=r), name="S")
    mean = te.compute((M,), lambda i: S[i] / float(N), name="mean")
    var = te.compute((M,), lambda i: te.sum((X[i, r2] - mean[i]) * (X[i, r2] - mean[i]), axis=r2), name="var")
    return te.operator("variance", [X], [var])


def softmax_3d():
    X = te.placeholder((2, 3, 5), name="X")
    r = te.reduce_axis(5, "r")
    M = te.compute((2, 3), lambda b, t: te.max(X[b, t, r], axis=r), name="M")
    return te.operator("sm3", [X], [te.compute((2, 3, 5), lambda b, t, v: te.exp(X[b, t, v] - M[b, t]), name="Y")])


def same_named_reduce_axes_and_keyword_names():
    X = te.placeholder((4, 5, 5), name="in")
    rh, rw = te.reduce_axis(3), te.reduce_axis(3)
    return te.operator("range", [X], [te.compute((4, 3, 3), lambda c, h, w: te.sum(X[c, h + rh, w + rw], axis=[rh, rw]), name="min")])


CASES = [two_reductions_in_one_epilogue, dense_scaled_by_row_statistic, stencil_of_a_computed_output,
         statistic_read_at_two_axes, statistic_longer_than_its_consumer, statistic_shorter_than_its_consumer,
         conv_of_conv, dense_bias_relu_in_separate_stages, variance_through_an_inlined_mean, softmax_3d,
         same_named_reduce_axes_and_keyword_names]


@pytest.mark.parametrize("make", CASES, ids=[c.__name__ for c in CASES])
def test_operator_is_correct_for_default_and_sampled_configs(make):
    op = make()
    space = op.space("cpu")
    inputs = op.random_inputs(0)
    ref = op.reference(*inputs)
    rng = np.random.default_rng(0)
    for config in [space.default()] + [space.sample(rng) for _ in range(12)]:
        assert_matches(op, build(op, "cpu", config, jit=False)(*inputs), ref, f"config {config.to_json()}")


def test_compiled_regressions():
    for make in (two_reductions_in_one_epilogue, variance_through_an_inlined_mean, same_named_reduce_axes_and_keyword_names):
        op = make()
        inputs = op.random_inputs(1)
        assert_matches(op, build(op, "cpu")(*inputs), op.reference(*inputs))


def test_bitwise_and_logical_operators():
    I = te.placeholder((6,), "int32", name="I")
    J = te.placeholder((6,), "int32", name="J")
    Y = te.compute((6,), lambda i: (I[i] & J[i]) + (I[i] | J[i]), name="Y")
    Z = te.compute((6,), lambda i: te.where((I[i] > 0) & (J[i] > 0), 1, 0), name="Z")
    op = te.operator("bits", [I, J], [Y, Z])
    a = np.array([1, 2, 0, 3, -4, 5], np.int32)
    b = np.array([5, 6, 7, 0, 9, 1], np.int32)
    y, z = build(op, "cpu")(a, b)
    np.testing.assert_array_equal(y, (a & b) + (a | b))
    np.testing.assert_array_equal(z, ((a > 0) & (b > 0)).astype(np.int32))
    X = te.placeholder((3,), name="X")
    with pytest.raises(TypeError, match="two booleans"):
        X[0] & X[1]


def test_integer_max_starts_at_the_smallest_integer():
    A = te.placeholder((2, 3), "int32", name="A")
    r = te.reduce_axis(3, "r")
    op = te.operator("imax", [A], [te.compute((2,), lambda i: te.max(A[i, r], axis=r), name="M")])
    a = np.full((2, 3), np.iinfo(np.int32).min, np.int32)
    assert build(op, "cpu")(a).tolist() == [np.iinfo(np.int32).min] * 2
    assert math.isfinite(float(op.reference(a)[0]))


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_padded_copies_run_in_parallel_over_an_axis_without_margins(layout):
    # With batch 1 the pad copy was parallel over the batch axis alone: one thread did it all.
    from codegen import build
    op = ops.depthwise_conv2d(1, 6, 7, 5, 3, 3, padding=1, layout=layout, bias=True, activation="relu")
    # The tiled schedule reads a padded copy (the window kernel needs none).
    tiled = dict(op.space("cpu").default()) | {"depthwise_conv2d.kernel": "tiled"}
    kernel = build(op, "cpu", tiled, jit=False)  # scratch starts as NaN: an unfilled margin shows up
    pad_step_extent = next(e for _, e in kernel.steps if e is not None)
    assert pad_step_extent == (6 if layout == "NCHW" else 9)  # channels, or padded rows: never batch 1
    x = op.random_inputs(0)
    np.testing.assert_allclose(kernel(*x), op.reference(*x), rtol=1e-4, atol=1e-4)
