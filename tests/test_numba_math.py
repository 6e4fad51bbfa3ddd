"""The vectorizable float32 math functions against float64 references."""
import math

import numpy as np
import pytest
from numba import njit

from codegen.numba_math import erf_f32, exp_f32, exp_nonpos_f32, sigmoid_f32, tanh_f32


@njit(cache=False)
def _apply(which, x, out):
    for i in range(x.shape[0]):
        v = x[i]
        if which == 0:
            out[i] = exp_f32(v)
        elif which == 1:
            out[i] = tanh_f32(v)
        elif which == 2:
            out[i] = sigmoid_f32(v)
        elif which == 4:
            out[i] = exp_nonpos_f32(v)
        else:
            out[i] = erf_f32(v)


GRID = np.concatenate([np.linspace(-90, 90, 20001), np.linspace(-1, 1, 20001),
                       np.geomspace(1e-8, 1, 2001), -np.geomspace(1e-8, 1, 2001)]).astype(np.float32)


def _run(which, x):
    out = np.empty_like(x)
    _apply(which, x, out)
    return out.astype(np.float64)


def test_exp_is_within_three_ulp_and_one_near_zero():
    x = GRID[np.abs(GRID) < 87]
    ref = np.exp(x.astype(np.float64))
    rel = np.abs(_run(0, x) - ref) / ref / np.finfo(np.float32).eps
    assert rel.max() < 3.0
    # Softmax and the activations live here; only the folded ln2 split loses accuracy beyond.
    assert rel[np.abs(x) < 20].max() < 1.1


def test_exp_saturates_below_float32_overflow():
    x = np.array([88.0, 88.37, 88.5, 89.0, 1e30], np.float32)
    got = _run(0, x)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got[:2], np.exp(x[:2].astype(np.float64)), rtol=4e-7)
    assert np.all(got[2:] == got[1])


def test_exp_of_a_nonpositive_argument_is_exp_without_the_overflow_clamp():
    # Every float32 from -100 to 0 (about 1.1e9 values) would take minutes; every 97th
    # bit pattern covers each binade, the subnormal-result range below -87.3 included.
    bits = np.arange(np.float32(0).view(np.int32), np.float32(100).view(np.int32), 97, dtype=np.int32)
    x = -bits.view(np.float32)
    assert np.array_equal(_run(4, x), _run(0, x))


@pytest.mark.parametrize("which,fn,tol", [
    (1, np.tanh, 4e-7),
    (2, lambda v: 1 / (1 + np.exp(-v)), 4e-7),
    (3, np.vectorize(math.erf), 4e-7),
])
def test_tanh_sigmoid_erf_accuracy(which, fn, tol):
    x = GRID.astype(np.float64)
    ref = fn(x)
    got = _run(which, GRID)
    err = np.abs(got - ref) / np.maximum(np.abs(ref), 1.0)  # relative above 1, absolute below
    small = np.abs(x) < 0.25
    assert err.max() < tol
    # near zero, relative accuracy matters (tanh(x) ~ x, erf(x) ~ 1.13 x)
    if which in (1, 3):
        rel = np.abs(got[small] - ref[small]) / np.maximum(np.abs(ref[small]), 1e-30)
        assert rel.max() < 1e-6


def test_extremes_saturate_without_nan():
    x = np.array([-1e30, -100, 100, 1e30, 0.0], np.float32)
    assert np.all(np.isfinite(_run(1, x))) and list(_run(1, x)[:4]) == [-1, -1, 1, 1]
    assert np.all(np.isfinite(_run(2, x)))
    assert list(_run(3, x)[:4]) == [-1, -1, 1, 1]
    assert _run(0, np.array([-200.0], np.float32))[0] < 1e-37
