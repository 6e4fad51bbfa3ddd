"""Winograd F(m x m, 3x3): the transform intrinsics against numpy, and the probe kernel against
the operator's reference (odd sizes, channel counts off the tile widths, with and without the
relu), and the rows the probe applies to."""
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from winograd_kernel import WinogradConv  # noqa: E402
from winograd_probe import applies  # noqa: E402

from codegen.winograd_simd import TRANSFORMS, input_tile, output_run  # noqa: E402
from schedules import ops  # noqa: E402


def _reference(x, weight, bias, relu):
    op = ops.conv2d(N=1, C=x.shape[0], H=x.shape[1], W=x.shape[2], K=weight.shape[0], R=3, S=3, padding=1,
                    bias=True, activation="relu" if relu else None)
    return op.reference(x[None], weight, bias)[0]


# Shapes for both tile sizes: ragged edges (scalar output tiles), runs of 4 tiles with the last
# run overlapping the one before (12 wide at m=2), whole runs (16 wide at m=4), channels past
# the 16-wide vectors, K past the 32-wide panels.
@pytest.mark.parametrize("C,H,W,K,relu", [(3, 5, 7, 5, True), (16, 8, 12, 40, False), (1, 1, 1, 1, True),
                                          (33, 6, 3, 33, False), (17, 8, 16, 32, True)])
@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("by_tiles", [False, True])
def test_matches_the_reference(C, H, W, K, relu, m, by_tiles):
    rng = np.random.default_rng(C * 100 + H)
    x = rng.standard_normal((C, H, W), dtype=np.float32)
    weight = rng.standard_normal((K, C, 3, 3), dtype=np.float32)
    bias = rng.standard_normal(K, dtype=np.float32)
    got = WinogradConv(weight, bias, H, W, relu=relu, m=m, by_tiles=by_tiles)(x)
    want = _reference(x, weight, bias, relu)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))
    if not relu:
        assert (got < 0).any()   # the relu really is off


@settings(deadline=None, max_examples=25)
@given(st.integers(0, 2**32 - 1), st.floats(1e-3, 1e3), st.sampled_from([2, 4]))
def test_any_input_matches_the_reference(seed, scale, m):
    # one compiled kernel (odd height and width, K off the 32-wide panels), many inputs and weights
    rng = np.random.default_rng(seed)
    C, H, W, K = 7, 9, 5, 35
    x = (rng.standard_normal((C, H, W)) * scale).astype(np.float32)
    weight = rng.standard_normal((K, C, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(K).astype(np.float32)
    kernel = WinogradConv(weight, bias, H, W, m=m)   # compiled once per shape and m, whatever the weights
    want = _reference(x, weight, bias, True)
    np.testing.assert_allclose(kernel(x), want, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(want).max())))


@pytest.mark.parametrize("m", sorted(TRANSFORMS))
def test_transforms_are_the_winograd_identity(m):
    # one tile by the transforms alone equals the direct m x m output: A^T [(G g G^T) * (B^T d B)] A
    bt, g_t, at = TRANSFORMS[m]
    rng = np.random.default_rng(3)
    d, g = rng.standard_normal((m + 2, m + 2)), rng.standard_normal((3, 3))
    tile = at @ ((g_t @ g @ g_t.T) * (bt @ d @ bt.T)) @ at.T
    direct = np.array([[np.sum(d[i:i + 3, j:j + 3] * g) for j in range(m)] for i in range(m)])
    np.testing.assert_allclose(tile, direct, atol=1e-12)


def test_refuses_other_filters_and_wrong_outputs():
    with pytest.raises(ValueError, match="3x3"):
        WinogradConv(np.ones((4, 2, 5, 5), np.float32), np.zeros(4, np.float32), 8, 8)
    with pytest.raises(ValueError, match="m in"):
        WinogradConv(np.ones((4, 2, 3, 3), np.float32), np.zeros(4, np.float32), 8, 8, m=3)
    kernel = WinogradConv(np.ones((5, 3, 3, 3), np.float32), np.zeros(5, np.float32), 5, 7)
    with pytest.raises(ValueError, match="out must be"):
        kernel(np.ones((3, 5, 7), np.float32), out=np.empty((5, 7, 5), np.float32))


def test_probe_takes_only_stride_one_pad_one_3x3_rows():
    base = {"N": 1, "C": 64, "H": 56, "W": 56, "K": 64, "R": 3, "S": 3, "padding": 1, "bias": True,
            "activation": "relu"}
    assert applies({"op": "conv2d", "params": base})
    assert not applies({"op": "conv2d", "params": {**base, "stride": 2}})
    assert not applies({"op": "conv2d", "params": {**base, "R": 1, "S": 1, "padding": 0}})
    assert not applies({"op": "depthwise_conv2d", "params": base})
    assert not applies({"op": "conv2d", "params": {**base, "bias": False}})


def test_auto_split_takes_tiles_for_wide_images_and_planes_for_deep_layers():
    wide = WinogradConv(np.ones((5, 3, 3, 3), np.float32), np.zeros(5, np.float32), 5, 7)
    deep = WinogradConv(np.ones((33, 33, 3, 3), np.float32), np.zeros(33, np.float32), 6, 3)
    assert wide.by_tiles and not deep.by_tiles
    x = np.ones((33, 6, 3), np.float32)
    np.testing.assert_allclose(deep(x), WinogradConv(np.ones((33, 33, 3, 3), np.float32),
                                                     np.zeros(33, np.float32), 6, 3, by_tiles=True)(x), rtol=1e-6)


_transform_kernels: dict = {}


def _transform_kernels_for(m: int, run: int, relu: bool):
    """njit wrappers of the two intrinsics, compiled once per (m, run, relu)."""
    key = (m, run, relu)
    if key not in _transform_kernels:
        from numba import njit
        tile, out = input_tile(m, 16), output_run(m, run, relu)

        @njit
        def forward(v, xt, row, col):
            tile(v, 0, 16, xt, 0, row, col)

        @njit
        def backward(mf, plane, y, width, bias):
            out(mf, 0, plane, y, 0, width, bias)
        _transform_kernels[key] = (forward, backward)
    return _transform_kernels[key]


@settings(deadline=None, max_examples=20)
@given(st.sampled_from([2, 4]), st.sampled_from([4, 8]), st.booleans(), st.integers(0, 2**32 - 1))
def test_transform_intrinsics_match_numpy(m, run, relu, seed):
    # B^T d B on 16 channels at once, and A^T M A + bias (relu) on `run` tiles stored as rows
    bt, _, at = TRANSFORMS[m]
    alpha = m + 2
    rng = np.random.default_rng(seed)
    forward, backward = _transform_kernels_for(m, run, relu)
    d = rng.standard_normal((alpha, alpha, 16)).astype(np.float32)     # patch rows, columns, channels
    v = np.full(alpha * alpha * 16, np.nan, np.float32)
    forward(v, d.reshape(-1), alpha * 16, 16)
    want = np.einsum("ai,ijc,bj->abc", bt, d.astype(np.float64), bt).reshape(alpha * alpha, 16)
    np.testing.assert_allclose(v.reshape(alpha * alpha, 16), want, rtol=1e-5, atol=1e-4)
    mf = rng.standard_normal((alpha * alpha, run)).astype(np.float32)  # plane, tile
    width = m * run + 3
    y = np.full((m, width), np.nan, np.float32)
    bias = np.float32(rng.standard_normal())
    backward(mf.reshape(-1), run, y.reshape(-1), width, bias)
    tiles = np.einsum("ai,ijt,bj->tab", at, mf.reshape(alpha, alpha, run).astype(np.float64), at) + bias
    expect = np.concatenate([tiles[t] for t in range(run)], axis=1)    # m rows, tile after tile
    np.testing.assert_allclose(y[:, :m * run], np.maximum(expect, 0) if relu else expect, rtol=1e-5, atol=1e-4)
    assert np.isnan(y[:, m * run:]).all()   # nothing written past the run
