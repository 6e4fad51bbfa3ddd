"""Independent numpy implementations of the library operators, for checking op.reference."""
from __future__ import annotations

import math

import numpy as np

# -- independent numpy implementations (float64 throughout) -------------------------------------
_erf = np.vectorize(math.erf, otypes=[np.float64])


def np_activation(x, activation):
    if activation is None:
        return x
    if activation == "relu":
        return np.maximum(x, 0.0)
    if activation == "gelu":
        return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))
    if activation == "sigmoid":
        return 1.0 / (1.0 + np.exp(-x))
    if activation == "tanh":
        return np.tanh(x)
    raise AssertionError(activation)


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def np_conv2d_nchw(data, weight, stride, padding, dilation):
    """data (N, C, H, W), weight (K, C, R, S): explicit zero pad, then one einsum per tap."""
    (sh, sw), (ph, pw), (dh, dw) = pair(stride), pair(padding), pair(dilation)
    N, C, H, W = data.shape
    K, _, R, S = weight.shape
    OH = (H + 2 * ph - dh * (R - 1) - 1) // sh + 1
    OW = (W + 2 * pw - dw * (S - 1) - 1) // sw + 1
    padded = np.pad(data.astype(np.float64), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    out = np.zeros((N, K, OH, OW))
    for r in range(R):
        for s in range(S):
            win = padded[:, :, r * dh: r * dh + sh * (OH - 1) + 1: sh,
                         s * dw: s * dw + sw * (OW - 1) + 1: sw]
            out += np.einsum("nchw,kc->nkhw", win, weight[:, :, r, s].astype(np.float64))
    return out


def np_conv2d(data, weight, bias, stride, padding, dilation, layout, activation):
    if layout == "NHWC":
        out = np_conv2d_nchw(data.transpose(0, 3, 1, 2), weight.transpose(3, 2, 0, 1),
                             stride, padding, dilation).transpose(0, 2, 3, 1)
        if bias is not None:
            out = out + bias.astype(np.float64)
    else:
        out = np_conv2d_nchw(data, weight, stride, padding, dilation)
        if bias is not None:
            out = out + bias.astype(np.float64)[None, :, None, None]
    return np_activation(out, activation)


def np_depthwise_nchw(data, weight, stride, padding, dilation, multiplier):
    """data (N, C, H, W), weight (C*m, 1, R, S): channel k reads input channel k // m."""
    (sh, sw), (ph, pw), (dh, dw) = pair(stride), pair(padding), pair(dilation)
    N, C, H, W = data.shape
    KC, _, R, S = weight.shape
    assert KC == C * multiplier
    OH = (H + 2 * ph - dh * (R - 1) - 1) // sh + 1
    OW = (W + 2 * pw - dw * (S - 1) - 1) // sw + 1
    padded = np.pad(data.astype(np.float64), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    src = np.repeat(padded, multiplier, axis=1)  # (N, C*m, ...)
    out = np.zeros((N, KC, OH, OW))
    for r in range(R):
        for s in range(S):
            win = src[:, :, r * dh: r * dh + sh * (OH - 1) + 1: sh,
                      s * dw: s * dw + sw * (OW - 1) + 1: sw]
            out += win * weight[None, :, 0, r, s, None, None].astype(np.float64)
    return out


def np_depthwise(data, weight, bias, stride, padding, dilation, multiplier, layout, activation):
    if layout == "NHWC":
        R, S, C, m = weight.shape
        w = weight.transpose(2, 3, 0, 1).reshape(C * m, 1, R, S)
        out = np_depthwise_nchw(data.transpose(0, 3, 1, 2), w, stride, padding, dilation,
                                multiplier).transpose(0, 2, 3, 1)
        if bias is not None:
            out = out + bias.astype(np.float64)
    else:
        out = np_depthwise_nchw(data, weight, stride, padding, dilation, multiplier)
        if bias is not None:
            out = out + bias.astype(np.float64)[None, :, None, None]
    return np_activation(out, activation)


def np_pool2d_nchw(data, kernel, stride, padding, pool_type, count_include_pad):
    R, S = pair(kernel)
    sh, sw = pair(kernel if stride is None else stride)
    ph, pw = pair(padding)
    N, C, H, W = data.shape
    OH = (H + 2 * ph - R) // sh + 1
    OW = (W + 2 * pw - S) // sw + 1
    fill = -np.inf if pool_type == "max" else 0.0
    padded = np.pad(data.astype(np.float64), ((0, 0), (0, 0), (ph, ph), (pw, pw)),
                    constant_values=fill)
    ones = np.pad(np.ones((H, W)), ((ph, ph), (pw, pw)))
    windows, counts = [], np.zeros((OH, OW))
    for r in range(R):
        for s in range(S):
            windows.append(padded[:, :, r: r + sh * (OH - 1) + 1: sh, s: s + sw * (OW - 1) + 1: sw])
            counts += ones[r: r + sh * (OH - 1) + 1: sh, s: s + sw * (OW - 1) + 1: sw]
    stack = np.stack(windows)
    if pool_type == "max":
        return stack.max(axis=0)
    total = stack.sum(axis=0)
    return total / (R * S) if count_include_pad else total / counts


def np_pool2d(data, kernel, stride, padding, pool_type, layout, count_include_pad):
    if layout == "NHWC":
        return np_pool2d_nchw(data.transpose(0, 3, 1, 2), kernel, stride, padding, pool_type,
                              count_include_pad).transpose(0, 2, 3, 1)
    return np_pool2d_nchw(data, kernel, stride, padding, pool_type, count_include_pad)


def np_softmax(x):
    x = x.astype(np.float64)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def np_layer_norm(x, gamma, beta, eps):
    x = x.astype(np.float64)
    mean = x.mean(axis=1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma.astype(np.float64) + beta.astype(np.float64)
