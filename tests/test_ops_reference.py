"""The operator library against independent numpy implementations, via Operator.reference."""
from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from schedules import ops, te
from schedules.expr import FLOAT_DTYPES, Reduce, walk

REPO = Path(__file__).resolve().parents[1]


from numpy_oracles import (np_activation, pair, np_conv2d, np_depthwise,
                           np_pool2d, np_softmax, np_layer_norm)


# -- helpers -------------------------------------------------------------------------------------
def assert_close(got, want, dtype, reduction=1):
    assert got.dtype == np.dtype(dtype), (got.dtype, dtype)
    assert got.shape == want.shape, (got.shape, want.shape)
    if dtype == "float64":
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10 * math.sqrt(reduction))
    else:
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * math.sqrt(reduction))


def check_structure(op, dtype):
    """Every stage has the operator's dtype, float constants included; a reduction is the whole
    body of its stage; names are unique."""
    names = [t.name for t in op.inputs] + [s.name for s in op.stages]
    assert len(names) == len(set(names))
    for s in op.stages:
        assert s.dtype == dtype, (s.name, s.dtype)
        for node in walk(s.body):
            if isinstance(node, Reduce):
                assert node is s.body
            if node.dtype in FLOAT_DTYPES:
                assert node.dtype == dtype, (s.name, node)


def run(op, seed=0):
    ins = op.random_inputs(seed)
    return ins, op.reference(*ins)


# -- matmul / batch_matmul / dense ------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("M,N,K", [(1, 1, 1), (3, 5, 7), (4, 6, 8), (8, 3, 16)])
def test_matmul(M, N, K, dtype):
    op = ops.matmul(M, N, K, dtype=dtype)
    assert op.name == "matmul" and [t.name for t in op.inputs] == ["A", "B"]
    assert [t.shape for t in op.inputs] == [(M, K), (K, N)]
    check_structure(op, dtype)
    (a, b), got = run(op)
    assert_close(got, a.astype(np.float64) @ b.astype(np.float64), dtype, K)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("B,M,N,K", [(1, 2, 3, 4), (3, 5, 4, 7), (2, 4, 4, 8)])
def test_batch_matmul(B, M, N, K, dtype):
    op = ops.batch_matmul(B, M, N, K, dtype=dtype)
    assert op.name == "batch_matmul"
    assert [t.shape for t in op.inputs] == [(B, M, K), (B, K, N)]
    check_structure(op, dtype)
    (a, b), got = run(op, seed=1)
    assert_close(got, np.matmul(a.astype(np.float64), b.astype(np.float64)), dtype, K)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("activation", [None, "relu", "gelu", "sigmoid", "tanh"])
def test_dense(bias, activation, dtype):
    M, N, K = 5, 6, 7
    op = ops.dense(M, N, K, bias=bias, activation=activation, dtype=dtype)
    expected_name = "dense" + ("_bias" if bias else "") + (f"_{activation}" if activation else "")
    assert op.name == expected_name
    assert [t.name for t in op.inputs] == ["x", "weight"] + (["bias"] if bias else [])
    assert [t.shape for t in op.inputs][:2] == [(M, K), (N, K)]
    check_structure(op, dtype)
    red = op.stage("matmul")
    assert isinstance(red.body, Reduce) and red.body.combiner == "sum"
    if bias or activation:
        assert len(op.stages) == 2 and not isinstance(op.outputs[0].body, Reduce)
        assert op.outputs[0].inputs[0] is red
    else:
        assert op.stages == (red,) and op.outputs[0] is red
    ins, got = run(op, seed=2)
    want = ins[0].astype(np.float64) @ ins[1].astype(np.float64).T
    if bias:
        want = want + ins[2].astype(np.float64)
    assert_close(got, np_activation(want, activation), dtype, K)


def test_dense_unknown_activation():
    with pytest.raises(ValueError, match="swish") as info:
        ops.dense(2, 3, 4, activation="swish")
    for allowed in ("relu", "gelu", "sigmoid", "tanh"):
        assert allowed in str(info.value)
    with pytest.raises(ValueError, match="activation"):
        ops.conv2d(1, 1, 3, 3, 1, 1, 1, activation="elu")


# -- conv2d ------------------------------------------------------------------------------------
CONV_CASES = [
    # N, C, H, W, K, R, S, stride, padding, dilation
    (1, 1, 5, 5, 1, 3, 3, 1, 0, 1),
    (2, 3, 7, 6, 4, 3, 3, 1, 1, 1),
    (1, 2, 8, 8, 3, 3, 3, 2, 1, 1),
    (1, 3, 9, 7, 2, 3, 2, (2, 1), (1, 0), (2, 1)),
    (2, 2, 6, 6, 2, 1, 1, 1, 0, 1),
    (1, 4, 7, 7, 5, 5, 5, 3, 2, 1),
    (1, 2, 10, 9, 3, 3, 3, 1, 2, 2),
    (1, 1, 4, 4, 2, 4, 4, 1, 0, 1),
]


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d(case, layout):
    N, C, H, W, K, R, S, stride, padding, dilation = case
    op = ops.conv2d(N, C, H, W, K, R, S, stride=stride, padding=padding, dilation=dilation,
                    layout=layout)
    check_structure(op, "float32")
    data, weight = op.random_inputs(3)
    if layout == "NCHW":
        assert data.shape == (N, C, H, W) and weight.shape == (K, C, R, S)
    else:
        assert data.shape == (N, H, W, C) and weight.shape == (R, S, C, K)
    assert len(op.stages) == 1 and op.outputs[0].body.combiner == "sum"
    got = op.reference(data, weight)
    want = np_conv2d(data, weight, None, stride, padding, dilation, layout, None)
    assert_close(got, want, "float32", C * R * S)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("bias,activation", [(True, None), (False, "relu"), (True, "gelu"),
                                             (True, "sigmoid"), (False, "tanh")])
def test_conv2d_epilogue(bias, activation, layout, dtype):
    N, C, H, W, K, R, S = 1, 3, 7, 6, 4, 3, 3
    op = ops.conv2d(N, C, H, W, K, R, S, stride=2, padding=1, layout=layout, bias=bias,
                    activation=activation, dtype=dtype)
    check_structure(op, dtype)
    assert [s.name for s in op.stages] == ["conv2d", "epilogue"]
    ins = op.random_inputs(4)
    if bias:
        assert ins[2].shape == (K,)
    got = op.reference(*ins)
    want = np_conv2d(ins[0], ins[1], ins[2] if bias else None, 2, 1, 1, layout, activation)
    assert_close(got, want, dtype, C * R * S)


def test_conv2d_layouts_agree():
    a = ops.conv2d(1, 3, 6, 5, 2, 3, 3, padding=1, layout="NCHW")
    b = ops.conv2d(1, 3, 6, 5, 2, 3, 3, padding=1, layout="NHWC")
    data, weight = a.random_inputs(5)
    got_a = a.reference(data, weight)
    got_b = b.reference(np.ascontiguousarray(data.transpose(0, 2, 3, 1)),
                        np.ascontiguousarray(weight.transpose(2, 3, 1, 0)))
    np.testing.assert_allclose(got_b.transpose(0, 3, 1, 2), got_a, rtol=1e-5, atol=1e-5)


def test_conv2d_empty_output():
    with pytest.raises(ValueError, match="conv2d") as info:
        ops.conv2d(1, 1, 3, 3, 1, 5, 5)
    assert "3x3" in str(info.value) and "5x5" in str(info.value)
    with pytest.raises(ValueError, match="conv2d"):
        ops.conv2d(1, 1, 5, 5, 1, 3, 3, dilation=3)


# -- depthwise conv2d ---------------------------------------------------------------------------
DW_CASES = [
    # N, C, H, W, R, S, stride, padding, dilation, multiplier
    (1, 3, 5, 5, 3, 3, 1, 0, 1, 1),
    (2, 4, 7, 6, 3, 3, 1, 1, 1, 1),
    (1, 2, 8, 9, 3, 3, 2, 1, 1, 1),
    (1, 3, 9, 8, 3, 2, (2, 1), (2, 0), (2, 1), 1),
    (1, 2, 6, 7, 3, 3, 1, 1, 1, 2),
    (1, 3, 7, 7, 5, 5, 2, 2, 1, 3),
]


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("case", DW_CASES)
def test_depthwise_conv2d(case, layout):
    N, C, H, W, R, S, stride, padding, dilation, m = case
    op = ops.depthwise_conv2d(N, C, H, W, R, S, stride=stride, padding=padding,
                              dilation=dilation, multiplier=m, layout=layout)
    check_structure(op, "float32")
    data, weight = op.random_inputs(6)
    if layout == "NCHW":
        assert data.shape == (N, C, H, W) and weight.shape == (C * m, 1, R, S)
    else:
        assert data.shape == (N, H, W, C) and weight.shape == (R, S, C, m)
    got = op.reference(data, weight)
    want = np_depthwise(data, weight, None, stride, padding, dilation, m, layout, None)
    assert_close(got, want, "float32", R * S)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_depthwise_conv2d_epilogue(layout, dtype):
    op = ops.depthwise_conv2d(2, 3, 7, 8, 3, 3, stride=1, padding=1, layout=layout, bias=True,
                              activation="relu", dtype=dtype)
    check_structure(op, dtype)
    assert [s.name for s in op.stages] == ["depthwise_conv2d", "epilogue"]
    ins = op.random_inputs(7)
    got = op.reference(*ins)
    want = np_depthwise(ins[0], ins[1], ins[2], 1, 1, 1, 1, layout, "relu")
    assert_close(got, want, dtype, 9)


# -- pool2d ------------------------------------------------------------------------------------
POOL_CASES = [
    # N, C, H, W, kernel, stride, padding
    (1, 2, 6, 6, 2, None, 0),
    (2, 3, 7, 7, 3, 2, 1),
    (1, 2, 5, 8, 3, 1, 1),
    (1, 1, 9, 7, (3, 2), (2, 1), (1, 0)),
    (1, 3, 8, 8, 3, 3, 2),
    (1, 2, 5, 5, 1, 2, 0),
]


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("pool_type,count_include_pad", [("max", True), ("avg", True),
                                                         ("avg", False)])
@pytest.mark.parametrize("case", POOL_CASES)
def test_pool2d(case, pool_type, count_include_pad, layout):
    N, C, H, W, kernel, stride, padding = case
    op = ops.pool2d(N, C, H, W, kernel, stride=stride, padding=padding, pool_type=pool_type,
                    layout=layout, count_include_pad=count_include_pad)
    check_structure(op, "float32")
    (data,) = op.random_inputs(8)
    assert data.shape == ((N, C, H, W) if layout == "NCHW" else (N, H, W, C))
    got = op.reference(data)
    assert np.isfinite(got).all()
    want = np_pool2d(data, kernel, stride, padding, pool_type, layout, count_include_pad)
    R, S = pair(kernel)
    assert_close(got, want, "float32", R * S)


def test_max_pool_pads_with_minus_infinity():
    op = ops.pool2d(1, 1, 3, 3, 3, stride=1, padding=1, pool_type="max")
    data = -np.arange(1, 10, dtype=np.float32).reshape(1, 1, 3, 3) - 100.0  # all negative
    got = op.reference(data)
    assert (got < -100).all()  # zero padding would have produced 0 at the borders
    np.testing.assert_array_equal(got, np_pool2d(data, 3, 1, 1, "max", "NCHW", True))


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_pool2d_float64(layout):
    for pool_type, cip in (("max", True), ("avg", True), ("avg", False)):
        op = ops.pool2d(1, 2, 7, 6, 3, stride=2, padding=1, pool_type=pool_type, layout=layout,
                        count_include_pad=cip, dtype="float64")
        check_structure(op, "float64")
        (data,) = op.random_inputs(9)
        assert_close(op.reference(data), np_pool2d(data, 3, 2, 1, pool_type, layout, cip),
                     "float64", 9)


def test_pool2d_bad_arguments():
    with pytest.raises(ValueError, match="pool_type"):
        ops.pool2d(1, 1, 4, 4, 2, pool_type="median")
    with pytest.raises(ValueError, match="padding"):
        ops.pool2d(1, 1, 4, 4, 2, padding=2)
    with pytest.raises(ValueError, match="pool2d"):
        ops.pool2d(1, 1, 2, 2, 3)
    with pytest.raises(ValueError, match="layout"):
        ops.pool2d(1, 1, 4, 4, 2, layout="CHWN")


# -- softmax / layer_norm -----------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("M,N", [(1, 1), (3, 5), (4, 8), (7, 16)])
def test_softmax(M, N, dtype):
    op = ops.softmax(M, N, dtype=dtype)
    assert op.name == "softmax"
    check_structure(op, dtype)
    assert [s.name for s in op.stages] == ["rowmax", "exp", "rowsum", "softmax"]
    assert op.stage("rowmax").body.combiner == "max"
    assert op.stage("rowsum").body.combiner == "sum"
    (x,), got = run(op, seed=10)
    assert_close(got, np_softmax(x), dtype, N)


def test_softmax_is_stable():
    op = ops.softmax(2, 4)
    x = np.array([[1000.0, 1001.0, 1002.0, 999.0], [-1000.0, -1000.0, -999.0, -1001.0]],
                 dtype=np.float32)
    got = op.reference(x)
    assert np.isfinite(got).all()
    assert_close(got, np_softmax(x), "float32", 4)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("M,N,eps", [(1, 2, 1e-5), (3, 5, 1e-5), (4, 8, 1e-3), (6, 17, 0.1)])
def test_layer_norm(M, N, eps, dtype):
    op = ops.layer_norm(M, N, eps=eps, dtype=dtype)
    assert op.name == "layer_norm"
    assert [(t.name, t.shape) for t in op.inputs] == [("x", (M, N)), ("gamma", (N,)),
                                                      ("beta", (N,))]
    check_structure(op, dtype)
    (x, g, b), got = run(op, seed=11)
    assert_close(got, np_layer_norm(x, g, b, eps), dtype, N)


# -- elementwise -------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_elementwise_broadcast(dtype):
    op = ops.elementwise([(4, 5), (5,)], lambda a, b: te.tanh(a * b) + 1.0, dtype=dtype)
    check_structure(op, dtype)
    (a, b), got = run(op, seed=12)
    assert_close(got, np.tanh(a.astype(np.float64) * b) + 1.0, dtype)


def test_elementwise_size_one_dims():
    op = ops.elementwise([(3, 1, 5), (1, 4, 1), (4, 5)],
                         lambda a, b, c: te.maximum(a - b, 0.0) * c, name="relu_sub_mul")
    assert op.name == "relu_sub_mul"
    assert op.outputs[0].shape == (3, 4, 5)
    (a, b, c), got = run(op, seed=13)
    assert_close(got, np.maximum(a.astype(np.float64) - b, 0.0) * c, "float32")


def test_elementwise_bad_arguments():
    with pytest.raises(ValueError, match="broadcast"):
        ops.elementwise([(3, 4), (5,)], lambda a, b: a + b)
    with pytest.raises(ValueError, match="callable"):
        ops.elementwise([(3, 4)], "relu")
    with pytest.raises(ValueError, match="positive"):
        ops.elementwise([(3, 0)], lambda a: a)


# -- argument validation -----------------------------------------------------------------------
@pytest.mark.parametrize("ctor,args,kwargs,bad", [
    (ops.matmul, (0, 4, 4), {}, "M"),
    (ops.matmul, (4, 4, -1), {}, "K"),
    (ops.matmul, (4, 2.5, 4), {}, "N"),
    (ops.batch_matmul, (0, 2, 2, 2), {}, "B"),
    (ops.dense, (2, 3, 0), {}, "K"),
    (ops.conv2d, (1, 0, 5, 5, 2, 3, 3), {}, "C"),
    (ops.conv2d, (1, 1, 5, 5, 2, 3, 3), {"stride": 0}, "stride"),
    (ops.conv2d, (1, 1, 5, 5, 2, 3, 3), {"padding": -1}, "padding"),
    (ops.conv2d, (1, 1, 5, 5, 2, 3, 3), {"dilation": (1, 2, 3)}, "dilation"),
    (ops.conv2d, (1, 1, 5, 5, 2, 3, 3), {"layout": "NCWH"}, "layout"),
    (ops.depthwise_conv2d, (1, 2, 5, 5, 0, 3), {}, "R"),
    (ops.depthwise_conv2d, (1, 2, 5, 5, 3, 3), {"multiplier": 0}, "multiplier"),
    (ops.pool2d, (1, 2, 5, True, 2), {}, "W"),
    (ops.pool2d, (1, 2, 5, 5, 0), {}, "kernel"),
    (ops.softmax, (3, 0), {}, "N"),
    (ops.layer_norm, (0, 3), {}, "M"),
    (ops.layer_norm, (2, 3), {"eps": -1.0}, "eps"),
    (ops.matmul, (2, 2, 2), {"dtype": "float16"}, "dtype"),
])
def test_bad_arguments(ctor, args, kwargs, bad):
    with pytest.raises(ValueError) as info:
        ctor(*args, **kwargs)
    msg = str(info.value)
    assert msg.startswith(ctor.__name__) and bad in msg, msg


def test_library():
    assert set(ops.LIBRARY) == {"matmul", "batch_matmul", "dense", "conv2d", "depthwise_conv2d",
                                "pool2d", "softmax", "layer_norm"}
    for name, ctor in ops.LIBRARY.items():
        assert ctor is getattr(ops, name)


# -- input checks of Operator.reference ------------------------------------------------------------
def test_reference_rejects_wrong_shape():
    op = ops.conv2d(1, 3, 6, 6, 4, 3, 3)
    data, weight = op.random_inputs(0)
    with pytest.raises(ValueError) as info:
        op.reference(data, weight[:, :2])
    msg = str(info.value)
    assert "weight" in msg and str((4, 3, 3, 3)) in msg and str((4, 2, 3, 3)) in msg
    with pytest.raises(ValueError) as info:
        op.reference(data.reshape(1, 3, 36), weight)
    msg = str(info.value)
    assert "data" in msg and str((1, 3, 6, 6)) in msg and str((1, 3, 36)) in msg


def test_reference_rejects_wrong_dtype():
    op = ops.dense(3, 4, 5)
    x, w, b = op.random_inputs(0)
    with pytest.raises(ValueError) as info:
        op.reference(x, w, b.astype(np.float64))
    msg = str(info.value)
    assert "bias" in msg and "float32" in msg and "float64" in msg and str((4,)) in msg
    with pytest.raises(ValueError, match="3 inputs"):
        op.reference(x, w)


# -- workload keys -------------------------------------------------------------------------------
def test_workload_key_stable_and_shape_sensitive():
    a = ops.conv2d(1, 3, 8, 8, 4, 3, 3, stride=2, padding=1, bias=True, activation="relu")
    b = ops.conv2d(1, 3, 8, 8, 4, 3, 3, stride=2, padding=1, bias=True, activation="relu")
    assert a is not b and a.workload_key == b.workload_key and a == b
    variants = [
        ops.conv2d(1, 3, 8, 9, 4, 3, 3, stride=2, padding=1, bias=True, activation="relu"),
        ops.conv2d(1, 3, 8, 8, 4, 3, 3, stride=1, padding=1, bias=True, activation="relu"),
        ops.conv2d(1, 3, 8, 8, 4, 3, 3, stride=2, padding=0, bias=True, activation="relu"),
        ops.conv2d(1, 3, 8, 8, 4, 3, 3, stride=2, padding=1, bias=True, activation="gelu"),
        ops.conv2d(1, 3, 8, 8, 4, 3, 3, stride=2, padding=1, bias=True, activation="relu",
                   dtype="float64"),
        ops.conv2d(1, 3, 8, 8, 4, 3, 3, stride=2, padding=1, dilation=2, bias=True,
                   activation="relu"),
    ]
    keys = {a.workload_key} | {v.workload_key for v in variants}
    assert len(keys) == len(variants) + 1
    assert ops.matmul(4, 5, 6).workload_key == ops.matmul(4, 5, 6).workload_key
    assert ops.matmul(4, 5, 6).workload_key != ops.matmul(4, 5, 7).workload_key
    assert ops.matmul(4, 5, 6).workload_key != ops.matmul(5, 4, 6).workload_key
    assert ops.pool2d(1, 2, 6, 6, 2).workload_key != ops.pool2d(1, 2, 6, 6, 2, pool_type="avg").workload_key
    assert ops.pool2d(1, 2, 6, 6, 3, padding=1, pool_type="avg").workload_key != \
        ops.pool2d(1, 2, 6, 6, 3, padding=1, pool_type="avg", count_include_pad=False).workload_key


def test_workload_key_same_in_subprocess():
    script = ("from schedules import ops\n"
              "print(ops.conv2d(1, 3, 8, 8, 4, 3, 3, stride=2, padding=1, bias=True, "
              "activation='gelu', layout='NHWC').workload_key)\n"
              "print(ops.layer_norm(4, 6).workload_key)\n"
              "print(ops.pool2d(1, 2, 7, 7, 3, padding=1, pool_type='max').workload_key)\n")
    env = dict(os.environ, PYTHONHASHSEED="12345",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=60, check=True).stdout.split()
    here = [ops.conv2d(1, 3, 8, 8, 4, 3, 3, stride=2, padding=1, bias=True, activation="gelu",
                       layout="NHWC").workload_key,
            ops.layer_norm(4, 6).workload_key,
            ops.pool2d(1, 2, 7, 7, 3, padding=1, pool_type="max").workload_key]
    assert out == here


# -- property tests ------------------------------------------------------------------------------
small = st.integers(1, 6)


@settings(max_examples=20, deadline=None, database=None)
@given(M=small, N=small, K=st.integers(1, 9), dtype=st.sampled_from(["float32", "float64"]),
       seed=st.integers(0, 2**16))
def test_matmul_property(M, N, K, dtype, seed):
    op = ops.matmul(M, N, K, dtype=dtype)
    (a, b), got = run(op, seed)
    assert_close(got, a.astype(np.float64) @ b.astype(np.float64), dtype, K)


@settings(max_examples=20, deadline=None, database=None)
@given(N=st.integers(1, 2), C=st.integers(1, 3), H=st.integers(1, 8), W=st.integers(1, 8),
       K=st.integers(1, 3), R=st.integers(1, 3), S=st.integers(1, 3),
       stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       padding=st.tuples(st.integers(0, 2), st.integers(0, 2)),
       dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
       layout=st.sampled_from(["NCHW", "NHWC"]), bias=st.booleans(),
       activation=st.sampled_from([None, "relu", "gelu"]), seed=st.integers(0, 2**16))
def test_conv2d_property(N, C, H, W, K, R, S, stride, padding, dilation, layout, bias,
                         activation, seed):
    OH = (H + 2 * padding[0] - dilation[0] * (R - 1) - 1) // stride[0] + 1
    OW = (W + 2 * padding[1] - dilation[1] * (S - 1) - 1) // stride[1] + 1
    if OH <= 0 or OW <= 0:
        with pytest.raises(ValueError):
            ops.conv2d(N, C, H, W, K, R, S, stride, padding, dilation, layout)
        return
    op = ops.conv2d(N, C, H, W, K, R, S, stride=stride, padding=padding, dilation=dilation,
                    layout=layout, bias=bias, activation=activation)
    ins, got = run(op, seed)
    want = np_conv2d(ins[0], ins[1], ins[2] if bias else None, stride, padding, dilation,
                     layout, activation)
    assert_close(got, want, "float32", C * R * S)


@settings(max_examples=20, deadline=None, database=None)
@given(N=st.integers(1, 2), C=st.integers(1, 3), H=st.integers(1, 9), W=st.integers(1, 9),
       kernel=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       stride=st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3))),
       padding=st.tuples(st.integers(0, 2), st.integers(0, 2)),
       pool=st.sampled_from([("max", True), ("avg", True), ("avg", False)]),
       layout=st.sampled_from(["NCHW", "NHWC"]), seed=st.integers(0, 2**16))
def test_pool2d_property(N, C, H, W, kernel, stride, padding, pool, layout, seed):
    assume(padding[0] < kernel[0] and padding[1] < kernel[1])
    sh, sw = kernel if stride is None else stride
    assume((H + 2 * padding[0] - kernel[0]) // sh + 1 > 0)
    assume((W + 2 * padding[1] - kernel[1]) // sw + 1 > 0)
    pool_type, cip = pool
    op = ops.pool2d(N, C, H, W, kernel, stride=stride, padding=padding, pool_type=pool_type,
                    layout=layout, count_include_pad=cip)
    (data,), got = run(op, seed)
    want = np_pool2d(data, kernel, stride, padding, pool_type, layout, cip)
    assert_close(got, want, "float32", kernel[0] * kernel[1])
