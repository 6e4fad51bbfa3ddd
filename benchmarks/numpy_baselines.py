"""Numpy baselines run op by op, as a numpy user would write them, for the benchmarks."""
from __future__ import annotations

import math

LN_EPS = 1e-5

# -- numpy baselines ----------------------------------------------------------------------------
# Each takes the operator's inputs (op.random_inputs order) and returns the output array. Where
# there are several reasonable numpy formulations, all are listed, each is checked against our
# kernel, and the fastest one measured in this run is the reported baseline.

def _np():
    import numpy as np
    return np


def _erf():
    """A vectorised erf: scipy.special.erf when scipy is importable, else numpy over math.erf."""
    np = _np()
    try:
        from scipy.special import erf
        return erf, "scipy.special.erf"
    except ImportError:
        vec = np.vectorize(math.erf, otypes=[np.float32])
        return (lambda x: vec(x).astype(x.dtype, copy=False)), "numpy.vectorize(math.erf)"


ERF = None  # set by the benchmark's main() so --help does not import scipy


def np_activation(y, activation):
    np = _np()
    if activation is None:
        return y
    if activation == "relu":
        return np.maximum(y, 0.0)
    if activation == "gelu":
        return 0.5 * y * (1.0 + ERF(y * (1.0 / math.sqrt(2.0))))
    raise ValueError(activation)


def np_matmul(a, b):
    return a @ b


def np_batch_matmul(a, b):
    return _np().matmul(a, b)


def np_dense(activation):
    def run(x, w, b):
        return np_activation(x @ w.T + b, activation)
    return run


def _out(size, k, stride, pad):
    return (size + 2 * pad - k) // stride + 1


def _windows(p, R, S, stride, axes):
    """Sliding windows of the padded array p over `axes`, strided: (..., OH, OW, ..., R, S)."""
    from numpy.lib.stride_tricks import sliding_window_view
    win = sliding_window_view(p, (R, S), axis=axes)
    index = [slice(None)] * win.ndim
    index[axes[0]] = slice(None, None, stride)
    index[axes[1]] = slice(None, None, stride)
    return win[tuple(index)]


def _pad_hw(x, pad, layout, value=0.0):
    np = _np()
    if pad == 0:
        return x
    widths = [(0, 0)] * 4
    hw = (2, 3) if layout == "NCHW" else (1, 2)
    widths[hw[0]] = widths[hw[1]] = (pad, pad)
    return np.pad(x, widths, constant_values=value)


def np_conv2d(layout, method, stride, pad, activation):
    np = _np()

    def run(x, w, b):
        if layout == "NCHW":
            N, C, H, W = x.shape
            K, _, R, S = w.shape
            OH, OW = _out(H, R, stride, pad), _out(W, S, stride, pad)
            win = _windows(_pad_hw(x, pad, layout), R, S, stride, (2, 3))  # N C OH OW R S
            if method == "swv_tensordot":
                y = np.tensordot(win, w, axes=((1, 4, 5), (1, 2, 3))).transpose(0, 3, 1, 2)
            else:  # im2col: contiguous (N, C*R*S, OH*OW) columns, then one GEMM per image
                cols = np.ascontiguousarray(win.transpose(0, 1, 4, 5, 2, 3))
                y = np.matmul(w.reshape(K, C * R * S), cols.reshape(N, C * R * S, OH * OW))
                y = y.reshape(N, K, OH, OW)
            y = y + b[:, None, None]
        else:
            N, H, W, C = x.shape
            R, S, _, K = w.shape
            OH, OW = _out(H, R, stride, pad), _out(W, S, stride, pad)
            win = _windows(_pad_hw(x, pad, layout), R, S, stride, (1, 2))  # N OH OW C R S
            if method == "swv_tensordot":
                y = np.tensordot(win, w, axes=((3, 4, 5), (2, 0, 1)))
            else:  # im2col: (N*OH*OW, R*S*C) rows against the (R*S*C, K) weight
                cols = win.transpose(0, 1, 2, 4, 5, 3).reshape(N * OH * OW, R * S * C)
                y = (cols @ w.reshape(R * S * C, K)).reshape(N, OH, OW, K)
            y = y + b
        return np_activation(y, activation)
    return run


def np_depthwise_nchw(method, stride, pad):
    np = _np()

    def run(x, w):
        N, C, H, W = x.shape
        _, _, R, S = w.shape
        OH, OW = _out(H, R, stride, pad), _out(W, S, stride, pad)
        p = _pad_hw(x, pad, "NCHW")
        if method == "swv_einsum":
            win = _windows(p, R, S, stride, (2, 3))
            return np.einsum("nchwrs,crs->nchw", win, w[:, 0], optimize=True)
        out = np.zeros((N, C, OH, OW), dtype=x.dtype)  # shifted slices, one multiply-add per tap
        for r in range(R):
            for s in range(S):
                tap = p[:, :, r:r + stride * (OH - 1) + 1:stride, s:s + stride * (OW - 1) + 1:stride]
                out += tap * w[:, 0, r, s][:, None, None]
        return out
    return run


def np_pool_nchw(pool_type, method, kernel, stride, pad):
    np = _np()
    R = S = kernel

    def run(x):
        N, C, H, W = x.shape
        OH, OW = _out(H, R, stride, pad), _out(W, S, stride, pad)
        p = _pad_hw(x, pad, "NCHW", -np.inf if pool_type == "max" else 0.0)
        if method.startswith("swv"):
            win = _windows(p, R, S, stride, (2, 3))
            return win.max(axis=(-2, -1)) if pool_type == "max" else win.mean(axis=(-2, -1))
        out = None  # shifted slices, combined tap by tap
        for r in range(R):
            for s in range(S):
                tap = p[:, :, r:r + stride * (OH - 1) + 1:stride, s:s + stride * (OW - 1) + 1:stride]
                if out is None:
                    out = tap.copy()
                elif pool_type == "max":
                    np.maximum(out, tap, out=out)
                else:
                    out += tap
        return out if pool_type == "max" else out * np.asarray(1.0 / (R * S), dtype=x.dtype)
    return run


def np_softmax(x):
    np = _np()
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def np_layer_norm(x, gamma, beta):
    np = _np()
    mean = x.mean(axis=1, keepdims=True)
    var = x.var(axis=1, keepdims=True)
    return (x - mean) / np.sqrt(var + LN_EPS) * gamma + beta


def np_tanh_mul(a, b):
    return _np().tanh(a * b) + 1.0


