"""The operator library: common fused operators written in te."""
from __future__ import annotations

import math

import numpy as np

from . import te

__all__ = ["matmul", "batch_matmul", "dense", "conv2d", "depthwise_conv2d", "pool2d", "softmax",
           "layer_norm", "elementwise", "ACTIVATIONS", "LIBRARY"]

ACTIVATIONS = (None, "relu", "gelu", "sigmoid", "tanh")
_LAYOUTS = ("NCHW", "NHWC")
_FLOATS = ("float32", "float64")


# -- argument checks ---------------------------------------------------------------------------
def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _check_sizes(op: str, **sizes) -> None:
    """Every named size must be a positive integer."""
    for name, v in sizes.items():
        if not _is_int(v) or int(v) <= 0:
            raise ValueError(f"{op}: {name} must be a positive integer, got {v!r}")


def _check_dtype(op: str, dtype) -> str:
    if str(dtype) not in _FLOATS:
        raise ValueError(f"{op}: dtype must be one of {', '.join(_FLOATS)}, got {dtype!r}")
    return str(dtype)


def _check_activation(op: str, activation):
    if activation not in ACTIVATIONS:
        allowed = ", ".join(repr(a) for a in ACTIVATIONS)
        raise ValueError(f"{op}: unknown activation {activation!r}; allowed: {allowed}")
    return activation


def _check_layout(op: str, layout) -> str:
    if layout not in _LAYOUTS:
        raise ValueError(f"{op}: layout must be one of {', '.join(_LAYOUTS)}, got {layout!r}")
    return layout


def _pair(op: str, name: str, value, minimum: int) -> tuple:
    """An int or a 2-sequence of ints, each at least `minimum`."""
    if _is_int(value):
        pair = (int(value), int(value))
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(_is_int(v) for v in value):
        pair = (int(value[0]), int(value[1]))
    else:
        raise ValueError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")
    if any(v < minimum for v in pair):
        raise ValueError(f"{op}: {name} must be at least {minimum}, got {value!r}")
    return pair


def _out_size(size: int, kernel: int, stride: int, pad: int, dilation: int) -> int:
    return (size + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1


def _window(op: str, H, W, R, S, stride, padding, dilation):
    """Validated (stride, padding, dilation) pairs and the output size of a sliding window."""
    sh, sw = _pair(op, "stride", stride, 1)
    ph, pw = _pair(op, "padding", padding, 0)
    dh, dw = _pair(op, "dilation", dilation, 1)
    OH = _out_size(H, R, sh, ph, dh)
    OW = _out_size(W, S, sw, pw, dw)
    _check_output(op, OH, OW, H, W, R, S, (sh, sw), (ph, pw), (dh, dw))
    return (sh, sw), (ph, pw), (dh, dw), OH, OW


def _check_output(op: str, oh: int, ow: int, H, W, R, S, stride, padding, dilation) -> None:
    if oh <= 0 or ow <= 0:
        raise ValueError(f"{op}: empty output ({oh}, {ow}) for input {H}x{W}, kernel {R}x{S}, "
                         f"stride {stride}, padding {padding}, dilation {dilation}")


# -- epilogues ---------------------------------------------------------------------------------
def _activate(x, activation):
    if activation is None:
        return x
    if activation == "relu":
        return te.maximum(x, 0.0)
    if activation == "gelu":
        return 0.5 * x * (1.0 + te.erf(x * (1.0 / math.sqrt(2.0))))
    if activation == "sigmoid":
        return te.sigmoid(x)
    if activation == "tanh":
        return te.tanh(x)
    raise ValueError(f"unknown activation {activation!r}")  # pragma: no cover - checked earlier


def _epilogue(acc, bias, channel_axis: int, activation, name: str = "epilogue", skip=None):
    """One elementwise stage: activation(acc[idx] + bias[idx[channel_axis]] + skip[idx]), or
    acc itself."""
    if bias is None and activation is None and skip is None:
        return acc

    def body(*idx):
        x = acc[idx]
        if bias is not None:
            x = x + bias[idx[channel_axis]]
        if skip is not None:
            x = x + skip[idx]
        return _activate(x, activation)

    return te.compute(acc.shape, _with_arity(acc.ndim, body), name=name)


def _suffix(bias: bool, activation, residual: bool = False) -> str:
    return ("_bias" if bias else "") + ("_add" if residual else "") + (f"_{activation}" if activation else "")


# te.compute names the axes after fcompute's parameters, so an n-dimensional stage needs a
# function with exactly n named parameters.
_ARITY = {
    1: lambda f: (lambda i0: f(i0)),
    2: lambda f: (lambda i0, i1: f(i0, i1)),
    3: lambda f: (lambda i0, i1, i2: f(i0, i1, i2)),
    4: lambda f: (lambda i0, i1, i2, i3: f(i0, i1, i2, i3)),
    5: lambda f: (lambda i0, i1, i2, i3, i4: f(i0, i1, i2, i3, i4)),
    6: lambda f: (lambda i0, i1, i2, i3, i4, i5: f(i0, i1, i2, i3, i4, i5)),
    7: lambda f: (lambda i0, i1, i2, i3, i4, i5, i6: f(i0, i1, i2, i3, i4, i5, i6)),
    8: lambda f: (lambda i0, i1, i2, i3, i4, i5, i6, i7: f(i0, i1, i2, i3, i4, i5, i6, i7)),
}


def _with_arity(ndim: int, f):
    if ndim not in _ARITY:
        raise ValueError(f"stages of {ndim} dimensions are not supported (1 to {max(_ARITY)})")
    return _ARITY[ndim](f)


# -- linear algebra ----------------------------------------------------------------------------
def matmul(M: int, N: int, K: int, dtype: str = "float32"):
    """C[i, j] = sum_k A[i, k] * B[k, j]."""
    _check_sizes("matmul", M=M, N=N, K=K)
    dtype = _check_dtype("matmul", dtype)
    A = te.placeholder((M, K), dtype, name="A")
    B = te.placeholder((K, N), dtype, name="B")
    k = te.reduce_axis(K, "k")
    C = te.compute((M, N), lambda i, j: te.sum(A[i, k] * B[k, j], axis=k), name="matmul")
    return te.operator("matmul", inputs=[A, B], outputs=[C])


def batch_matmul(B: int, M: int, N: int, K: int, dtype: str = "float32"):
    """C[b, i, j] = sum_k A[b, i, k] * B[b, k, j]."""
    _check_sizes("batch_matmul", B=B, M=M, N=N, K=K)
    dtype = _check_dtype("batch_matmul", dtype)
    a = te.placeholder((B, M, K), dtype, name="A")
    b = te.placeholder((B, K, N), dtype, name="B")
    k = te.reduce_axis(K, "k")
    C = te.compute((B, M, N), lambda n, i, j: te.sum(a[n, i, k] * b[n, k, j], axis=k),
                   name="batch_matmul")
    return te.operator("batch_matmul", inputs=[a, b], outputs=[C])


def dense(M: int, N: int, K: int, bias: bool = True, activation=None, dtype: str = "float32",
          residual: bool = False):
    """y = activation(x @ weight.T + bias), weight laid out (N, K) like torch.nn.Linear.

    With `residual`, a last input `skip` of the output's shape is added before the activation:
    activation(x @ weight.T + bias + skip), a transformer block's residual connection."""
    _check_sizes("dense", M=M, N=N, K=K)
    dtype = _check_dtype("dense", dtype)
    _check_activation("dense", activation)
    x = te.placeholder((M, K), dtype, name="x")
    weight = te.placeholder((N, K), dtype, name="weight")
    inputs = [x, weight]
    b = None
    if bias:
        b = te.placeholder((N,), dtype, name="bias")
        inputs.append(b)
    k = te.reduce_axis(K, "k")
    acc = te.compute((M, N), lambda i, j: te.sum(x[i, k] * weight[j, k], axis=k), name="matmul")
    skip = None
    if residual:
        skip = te.placeholder((M, N), dtype, name="skip")
        inputs.append(skip)
    out = _epilogue(acc, b, 1, activation, skip=skip)
    return te.operator("dense" + _suffix(bias, activation, residual), inputs=inputs, outputs=[out])


# -- convolution and pooling -------------------------------------------------------------------
def conv2d(N: int, C: int, H: int, W: int, K: int, R: int, S: int, stride=1, padding=0,
           dilation=1, layout: str = "NCHW", bias: bool = False, activation=None,
           dtype: str = "float32", residual: bool = False):
    """2-D convolution (cross-correlation) with zero padding, optional bias and activation.

    NCHW: data (N, C, H, W), weight (K, C, R, S) -> (N, K, OH, OW).
    NHWC: data (N, H, W, C), weight (R, S, C, K) -> (N, OH, OW, K).
    With `residual`, a last input `skip` of the output's shape is added before the activation:
    activation(conv + bias + skip), a ResNet block's shortcut.
    """
    op = "conv2d"
    _check_sizes(op, N=N, C=C, H=H, W=W, K=K, R=R, S=S)
    dtype = _check_dtype(op, dtype)
    layout = _check_layout(op, layout)
    _check_activation(op, activation)
    (sh, sw), (ph, pw), (dh, dw), OH, OW = _window(op, H, W, R, S, stride, padding, dilation)

    rc = te.reduce_axis(C, "rc")
    rr = te.reduce_axis(R, "rr")
    rs = te.reduce_axis(S, "rs")
    if layout == "NCHW":
        data = te.placeholder((N, C, H, W), dtype, name="data")
        weight = te.placeholder((K, C, R, S), dtype, name="weight")
        acc = te.compute(
            (N, K, OH, OW),
            lambda n, k, oh, ow: te.sum(
                data[n, rc, oh * sh + rr * dh - ph, ow * sw + rs * dw - pw] * weight[k, rc, rr, rs],
                axis=[rc, rr, rs]),
            name="conv2d")
        channel_axis = 1
    else:
        data = te.placeholder((N, H, W, C), dtype, name="data")
        weight = te.placeholder((R, S, C, K), dtype, name="weight")
        acc = te.compute(
            (N, OH, OW, K),
            lambda n, oh, ow, k: te.sum(
                data[n, oh * sh + rr * dh - ph, ow * sw + rs * dw - pw, rc] * weight[rr, rs, rc, k],
                axis=[rc, rr, rs]),
            name="conv2d")
        channel_axis = 3
    inputs = [data, weight]
    b = None
    if bias:
        b = te.placeholder((K,), dtype, name="bias")
        inputs.append(b)
    skip = None
    if residual:
        skip = te.placeholder(acc.shape, dtype, name="skip")
        inputs.append(skip)
    out = _epilogue(acc, b, channel_axis, activation, skip=skip)
    name = "conv2d" + ("_nhwc" if layout == "NHWC" else "") + _suffix(bias, activation, residual)
    return te.operator(name, inputs=inputs, outputs=[out])


def depthwise_conv2d(N: int, C: int, H: int, W: int, R: int, S: int, stride=1, padding=0,
                     dilation=1, multiplier: int = 1, layout: str = "NCHW", bias: bool = False,
                     activation=None, dtype: str = "float32"):
    """Depthwise 2-D convolution; output channel k reads input channel k // multiplier.

    NCHW: data (N, C, H, W), weight (C*multiplier, 1, R, S) -> (N, C*multiplier, OH, OW).
    NHWC: data (N, H, W, C), weight (R, S, C, multiplier) -> (N, OH, OW, C*multiplier).
    """
    op = "depthwise_conv2d"
    _check_sizes(op, N=N, C=C, H=H, W=W, R=R, S=S, multiplier=multiplier)
    dtype = _check_dtype(op, dtype)
    layout = _check_layout(op, layout)
    _check_activation(op, activation)
    (sh, sw), (ph, pw), (dh, dw), OH, OW = _window(op, H, W, R, S, stride, padding, dilation)
    m = int(multiplier)
    KC = C * m

    rr = te.reduce_axis(R, "rr")
    rs = te.reduce_axis(S, "rs")
    if layout == "NCHW":
        data = te.placeholder((N, C, H, W), dtype, name="data")
        weight = te.placeholder((KC, 1, R, S), dtype, name="weight")

        def ic(k):
            return k if m == 1 else k // m

        acc = te.compute(
            (N, KC, OH, OW),
            lambda n, k, oh, ow: te.sum(
                data[n, ic(k), oh * sh + rr * dh - ph, ow * sw + rs * dw - pw] * weight[k, 0, rr, rs],
                axis=[rr, rs]),
            name="depthwise_conv2d")
        channel_axis = 1
    else:
        data = te.placeholder((N, H, W, C), dtype, name="data")
        weight = te.placeholder((R, S, C, m), dtype, name="weight")
        if m == 1:
            def w_at(k):
                return weight[rr, rs, k, 0]

            def ic(k):
                return k
        else:
            def w_at(k):
                return weight[rr, rs, k // m, k % m]

            def ic(k):
                return k // m
        acc = te.compute(
            (N, OH, OW, KC),
            lambda n, oh, ow, k: te.sum(
                data[n, oh * sh + rr * dh - ph, ow * sw + rs * dw - pw, ic(k)] * w_at(k),
                axis=[rr, rs]),
            name="depthwise_conv2d")
        channel_axis = 3
    inputs = [data, weight]
    b = None
    if bias:
        b = te.placeholder((KC,), dtype, name="bias")
        inputs.append(b)
    out = _epilogue(acc, b, channel_axis, activation)
    name = "depthwise_conv2d" + ("_nhwc" if layout == "NHWC" else "") + _suffix(bias, activation)
    return te.operator(name, inputs=inputs, outputs=[out])


def pool2d(N: int, C: int, H: int, W: int, kernel, stride=None, padding=0,
           pool_type: str = "max", layout: str = "NCHW", count_include_pad: bool = True,
           dtype: str = "float32"):
    """Max or average pooling. Max pooling pads with -inf; average pooling with zeros, divided
    by the window size (count_include_pad) or by the number of in-bounds elements."""
    op = "pool2d"
    _check_sizes(op, N=N, C=C, H=H, W=W)
    dtype = _check_dtype(op, dtype)
    layout = _check_layout(op, layout)
    if pool_type not in ("max", "avg"):
        raise ValueError(f"{op}: pool_type must be 'max' or 'avg', got {pool_type!r}")
    R, S = _pair(op, "kernel", kernel, 1)
    sh, sw = _pair(op, "stride", kernel if stride is None else stride, 1)
    ph, pw = _pair(op, "padding", padding, 0)
    if ph >= R or pw >= S:
        # Then some windows would lie wholly in the padding.
        raise ValueError(f"{op}: padding {(ph, pw)} must be smaller than the kernel {(R, S)}")
    OH = _out_size(H, R, sh, ph, 1)
    OW = _out_size(W, S, sw, pw, 1)
    _check_output(op, OH, OW, H, W, R, S, (sh, sw), (ph, pw), (1, 1))

    rr = te.reduce_axis(R, "rr")
    rs = te.reduce_axis(S, "rs")
    if layout == "NCHW":
        data = te.placeholder((N, C, H, W), dtype, name="data")
        out_shape = (N, C, OH, OW)

        def window(combine, default, name):
            return te.compute(out_shape, lambda n, c, oh, ow: combine(
                data.at(n, c, oh * sh + rr - ph, ow * sw + rs - pw, default=default),
                axis=[rr, rs]), name=name)
    else:
        data = te.placeholder((N, H, W, C), dtype, name="data")
        out_shape = (N, OH, OW, C)

        def window(combine, default, name):
            return te.compute(out_shape, lambda n, oh, ow, c: combine(
                data.at(n, oh * sh + rr - ph, ow * sw + rs - pw, c, default=default),
                axis=[rr, rs]), name=name)

    suffix = "_nhwc" if layout == "NHWC" else ""
    if pool_type == "max":
        out = window(te.max, -math.inf, "pool_max")
        return te.operator("max_pool2d" + suffix, inputs=[data], outputs=[out])

    acc = window(te.sum, 0.0, "pool_sum")
    if count_include_pad:
        scale = 1.0 / (R * S)
        if layout == "NCHW":
            out = te.compute(out_shape, lambda n, c, oh, ow: acc[n, c, oh, ow] * scale,
                             name="pool_avg")
        else:
            out = te.compute(out_shape, lambda n, oh, ow, c: acc[n, oh, ow, c] * scale,
                             name="pool_avg")
    else:
        def count(start, extent, k):
            # How many of the indices start, ..., start + k - 1 lie inside [0, extent).
            lo = te.where(start < 0, 0, start)
            end = start + k
            hi = te.where(end > extent, extent, end)
            return hi - lo

        def n_valid(oh, ow):
            return te.cast(dtype, count(oh * sh - ph, H, R) * count(ow * sw - pw, W, S))

        if layout == "NCHW":
            out = te.compute(out_shape, lambda n, c, oh, ow: acc[n, c, oh, ow] / n_valid(oh, ow),
                             name="pool_avg")
        else:
            out = te.compute(out_shape, lambda n, oh, ow, c: acc[n, oh, ow, c] / n_valid(oh, ow),
                             name="pool_avg")
        suffix += "_exclude_pad"
    return te.operator("avg_pool2d" + suffix, inputs=[data], outputs=[out])


# -- normalisation -----------------------------------------------------------------------------
def softmax(M: int, N: int, dtype: str = "float32"):
    """y[i, :] = softmax(x[i, :]), numerically stable (the row maximum is subtracted)."""
    _check_sizes("softmax", M=M, N=N)
    dtype = _check_dtype("softmax", dtype)
    x = te.placeholder((M, N), dtype, name="x")
    k = te.reduce_axis(N, "k")
    rowmax = te.compute((M,), lambda i: te.max(x[i, k], axis=k), name="rowmax")
    e = te.compute((M, N), lambda i, j: te.exp(x[i, j] - rowmax[i]), name="exp")
    k2 = te.reduce_axis(N, "k")
    rowsum = te.compute((M,), lambda i: te.sum(e[i, k2], axis=k2), name="rowsum")
    y = te.compute((M, N), lambda i, j: e[i, j] / rowsum[i], name="softmax")
    return te.operator("softmax", inputs=[x], outputs=[y])


def layer_norm(M: int, N: int, eps: float = 1e-5, dtype: str = "float32"):
    """y = (x - mean) / sqrt(var + eps) * gamma + beta over the last axis (biased variance)."""
    _check_sizes("layer_norm", M=M, N=N)
    dtype = _check_dtype("layer_norm", dtype)
    if not isinstance(eps, (int, float, np.floating)) or isinstance(eps, bool) or not eps >= 0:
        raise ValueError(f"layer_norm: eps must be a non-negative number, got {eps!r}")
    eps = float(eps)
    inv_n = 1.0 / N
    x = te.placeholder((M, N), dtype, name="x")
    gamma = te.placeholder((N,), dtype, name="gamma")
    beta = te.placeholder((N,), dtype, name="beta")
    k = te.reduce_axis(N, "k")
    x_sum = te.compute((M,), lambda i: te.sum(x[i, k], axis=k), name="x_sum")
    mean = te.compute((M,), lambda i: x_sum[i] * inv_n, name="mean")
    k2 = te.reduce_axis(N, "k")

    def sq(i):
        d = x[i, k2] - mean[i]
        return te.sum(d * d, axis=k2)

    sq_sum = te.compute((M,), sq, name="sq_sum")
    y = te.compute(
        (M, N),
        lambda i, j: (x[i, j] - mean[i]) / te.sqrt(sq_sum[i] * inv_n + eps) * gamma[j] + beta[j],
        name="layer_norm")
    return te.operator("layer_norm", inputs=[x, gamma, beta], outputs=[y])


# -- generic elementwise -----------------------------------------------------------------------
def elementwise(shapes, fn, name: str = "elementwise", dtype: str = "float32"):
    """out = fn(x0, x1, ...) with numpy broadcasting of the input shapes.

    `fn` receives one te expression per input, already indexed at the output point, and
    returns a te expression; the result is cast to `dtype` if needed.
    """
    if not callable(fn):
        raise ValueError(f"{name}: fn must be a callable taking one expression per input")
    dtype = _check_dtype(name, dtype)
    try:
        shapes = [tuple(s) for s in shapes]
    except TypeError:
        raise ValueError(f"{name}: shapes must be a list of shapes, got {shapes!r}") from None
    if not shapes:
        raise ValueError(f"{name}: needs at least one input shape")
    for pos, shape in enumerate(shapes):
        for d in shape:
            if not _is_int(d) or int(d) <= 0:
                raise ValueError(f"{name}: input {pos} shape {shape} must hold positive integers")
    shapes = [tuple(int(d) for d in s) for s in shapes]
    try:
        out_shape = tuple(int(d) for d in np.broadcast_shapes(*shapes))
    except ValueError:
        raise ValueError(f"{name}: input shapes {shapes} do not broadcast together") from None
    if any(not s for s in shapes):
        # A 0-d input would need a Load without indices, which the numpy oracle cannot read.
        raise ValueError(f"{name}: every input needs at least one dimension (use shape (1,) "
                         f"for a scalar), got shapes {shapes}")
    inputs = [te.placeholder(s, dtype, name=f"x{pos}") for pos, s in enumerate(shapes)]
    D = len(out_shape)

    def body(*idx):
        args = []
        for t in inputs:
            lead = D - t.ndim
            args.append(t[tuple(0 if t.shape[j] == 1 else idx[lead + j] for j in range(t.ndim))])
        return fn(*args)

    out = te.compute(out_shape, _with_arity(D, body), name=name, dtype=dtype)
    return te.operator(name, inputs=inputs, outputs=[out])


LIBRARY = {
    "matmul": matmul,
    "batch_matmul": batch_matmul,
    "dense": dense,
    "conv2d": conv2d,
    "depthwise_conv2d": depthwise_conv2d,
    "pool2d": pool2d,
    "softmax": softmax,
    "layer_norm": layer_norm,
}
