"""Window planes: which windows get the plane layout, its padded-copy geometry, and plane
kernels against the reference (fused and unfused epilogues, float64, every border)."""
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from codegen import build
from helpers import assert_matches
from schedules import lower, ops, te
from schedules.contraction import expand_inlined
from schedules.errors import ScheduleError
from schedules.loopnest import Allocate, For, Store, VectorCopy
from schedules.window_plane import MAX_PLANE_POINTS, plane_layout
from test_window import RELAXED, _conv1d, _stage, _walk


def _layout(op, stage):
    window, sch = _stage(op, stage)
    return plane_layout(window.axis, window.reduce_axis, expand_inlined(sch, window).source)


def _planes(op, stage, **knobs):
    space = op.space("cpu")
    return space.validate(dict(space.default()) | {f"{stage}.kernel": "window", f"{stage}.win_layout": "planes"}
                          | knobs)


def _residual_depthwise(C=3, H=5, W=6, dtype="float32"):
    """A user operator: 3x3 depthwise convolution, then a residual read at each output point,
    so the epilogue reads (h, w) and cannot run in the flat loop."""
    x = te.placeholder((C, H, W), dtype, name="x")
    wt = te.placeholder((C, 3, 3), dtype, name="wt")
    res = te.placeholder((C, H, W), dtype, name="res")
    r, s = te.reduce_axis(3, "r"), te.reduce_axis(3, "s")
    y = te.compute((C, H, W), lambda c, h, w: te.sum(x[c, h + r - 1, w + s - 1] * wt[c, r, s], axis=(r, s)),
                   name="y")
    z = te.compute((C, H, W), lambda c, h, w: y[c, h, w] + res[c, h, w], name="z")
    return te.operator("depthwise_residual", [x, wt, res], [z])


def test_unit_stride_windows_get_a_plane_layout_and_strided_ones_do_not():
    layout = _layout(ops.depthwise_conv2d(1, 4, 9, 7, 3, 3, padding=1), "depthwise_conv2d")
    assert (layout.row_lo, layout.row_hi, layout.col_lo, layout.col_hi) == (-1, 1, -1, 1)
    assert (layout.height, layout.width) == (11, 9)
    # The last point's last tap reads width - cols past the padded plane.
    assert layout.padded_size == 11 * 9 + 2 and layout.flat_size == 9 * 9
    dilated = _layout(ops.depthwise_conv2d(1, 4, 9, 9, 3, 2, padding=(2, 0), dilation=(2, 3)), "depthwise_conv2d")
    assert (dilated.row_lo, dilated.row_hi, dilated.col_lo, dilated.col_hi) == (-2, 2, 0, 3)
    assert _layout(ops.pool2d(1, 3, 8, 8, 3, 1, padding=1), "pool_max").default == -np.inf
    # Strided windows, NHWC (the plane's rows would be pixels, its columns channels) and
    # planes too large for the caches keep the row layout only.
    for op, stage in [(ops.depthwise_conv2d(1, 4, 9, 9, 3, 3, stride=2, padding=1), "depthwise_conv2d"),
                      (ops.pool2d(1, 3, 8, 8, 3, 2, padding=1), "pool_max"),
                      (ops.depthwise_conv2d(1, 4, 9, 9, 3, 3, padding=1, layout="NHWC"), "depthwise_conv2d"),
                      (ops.depthwise_conv2d(1, 2, 200, 200, 3, 3, padding=1), "depthwise_conv2d")]:
        assert _layout(op, stage) is None
        assert not any(k.name.endswith("win_layout") for k in op.space("cpu").knobs)
    assert 2 * 202 * 202 > MAX_PLANE_POINTS


def test_narrow_rows_default_to_planes_and_wide_rows_to_rows():
    narrow = ops.depthwise_conv2d(1, 8, 14, 14, 3, 3, padding=1, bias=True, activation="relu")
    wide = ops.depthwise_conv2d(1, 8, 14, 80, 3, 3, padding=0)  # 'same' padding defaults to flat
    assert narrow.space("cpu").default()["depthwise_conv2d.win_layout"] == "planes"
    assert wide.space("cpu").default()["depthwise_conv2d.win_layout"] == "rows"


def test_a_fused_epilogue_runs_in_the_flat_loop_and_rows_go_out_as_masked_copies():
    op = ops.depthwise_conv2d(1, 3, 6, 5, 3, 3, padding=1, bias=True, activation="relu")
    nest = lower(op.space("cpu").apply(_planes(op, "depthwise_conv2d")))
    stmts = list(_walk(nest.body))
    filled = [s for s in stmts if isinstance(s, Allocate) and s.fill is not None]
    assert len(filled) == 1 and filled[0].buffer.shape == (8 * 7 + 2,)
    flat = [s for s in stmts if isinstance(s, For) and s.kind == "vectorized"]
    assert len(flat) == 1 and flat[0].extent.value == 6 * 7
    copies = [s for s in stmts if isinstance(s, VectorCopy)]
    assert [(c.count, c.length.value) for c in copies] == [(5, 5), (5, 5)]  # rows in, rows out
    assert not any(isinstance(s, Store) and s.buffer.role == "output" for s in stmts)


def test_an_epilogue_reading_each_point_runs_while_copying_out():
    op = _residual_depthwise()
    nest = lower(op.space("cpu").apply(_planes(op, "y")))
    loops = [s for s in _walk(nest.body) if isinstance(s, For) and s.kind == "vectorized"]
    assert len(loops) == 2  # the flat loop, then the copy-out loop storing the output
    assert any(isinstance(s, Store) and s.buffer.role == "output" for s in _walk(loops[1].body))
    args = op.random_inputs(2)
    assert_matches(op, build(op, "cpu", _planes(op, "y"), jit=False)(*args), op.reference(*args))


def test_planes_on_a_strided_window_name_the_stage():
    op = ops.depthwise_conv2d(1, 2, 9, 9, 3, 3, stride=2, padding=1)
    space = op.space("cpu")
    sch = space.apply(space.default())
    sch["depthwise_conv2d"].window_kernel(16, planes=True)
    with pytest.raises(ScheduleError, match="depthwise_conv2d.*row layout"):
        lower(sch)


@st.composite
def plane_ops(draw):
    """Unit-stride windows of every kind, size, padding and dilation (the plane layout's
    domain), with fused and unfused epilogues."""
    kind = draw(st.sampled_from(["depthwise", "max_pool", "avg_pool", "avg_pool_valid", "residual", "conv1d"]))
    H, W = draw(st.integers(1, 9)), draw(st.integers(1, 20))
    R, S = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    dilation = draw(st.integers(1, 2))
    if kind == "residual":
        return _residual_depthwise(2, H, W, draw(st.sampled_from(["float32", "float64"]))), "y"
    if kind == "conv1d":
        pad = draw(st.integers(0, 2))
        assume(W + 3 + 2 * pad - dilation * 2 >= 2)
        return _conv1d(W + 3, 3, 1, dilation, pad), "y"
    if kind == "depthwise":
        act = draw(st.sampled_from([None, "relu", "gelu"]))
        dtype = draw(st.sampled_from(["float32", "float64"]))
        try:
            op = ops.depthwise_conv2d(1, 3, H, W, R, S, 1, draw(st.integers(0, 2)), dilation,
                                      draw(st.integers(1, 2)), "NCHW", True, act, dtype)
        except ValueError:
            assume(False)
        return op, "depthwise_conv2d"
    pad = draw(st.integers(0, max(0, min(R, S) - 1)))
    try:
        op = ops.pool2d(1, 3, H, W, (R, S), 1, pad, "max" if kind == "max_pool" else "avg",
                        count_include_pad=kind != "avg_pool_valid")
    except ValueError:
        assume(False)
    return op, "pool_max" if kind == "max_pool" else "pool_sum"


@settings(max_examples=120, **RELAXED)
@given(case=plane_ops(), seed=st.integers(0, 3))
def test_plane_kernels_match_the_reference_at_every_border(case, seed):
    op, stage = case
    space = op.space("cpu")
    assume(any(k.name == f"{stage}.win_layout" for k in space.knobs))  # a 1-wide row has no window
    config = _planes(op, stage)
    args = op.random_inputs(seed)
    kernel = build(op, "cpu", config, jit=False)
    assert_matches(op, kernel(*args), op.reference(*args), f"config {config.to_json()}")


@pytest.mark.parametrize("layout", ["planes", "flat"])
@pytest.mark.parametrize("case", ["depthwise_relu", "max_pool", "avg_pool_valid", "float64", "residual",
                                  "wide_dilated"])
def test_compiled_plane_kernels_match_the_reference(case, layout):
    op, stage = {
        "depthwise_relu": (ops.depthwise_conv2d(1, 5, 7, 13, 3, 3, padding=1, bias=True, activation="relu"),
                           "depthwise_conv2d"),
        "wide_dilated": (ops.depthwise_conv2d(1, 4, 8, 37, 3, 5, padding=(2, 4), dilation=2, bias=True,
                                              activation="relu"), "depthwise_conv2d"),
        "max_pool": (ops.pool2d(1, 3, 9, 10, 3, 1, padding=1), "pool_max"),
        "avg_pool_valid": (ops.pool2d(1, 3, 9, 10, 3, 1, padding=1, pool_type="avg", count_include_pad=False),
                           "pool_sum"),
        "float64": (ops.depthwise_conv2d(1, 4, 6, 6, 5, 3, padding=(2, 1), dtype="float64"), "depthwise_conv2d"),
        "residual": (_residual_depthwise(4, 6, 19), "y"),
    }[case]
    kernel = build(op, "cpu", _planes(op, stage, **{f"{stage}.win_layout": layout}))
    for seed in range(2):  # a second call reuses each thread's padded copy or column masks
        args = op.random_inputs(seed)
        assert_matches(op, kernel(*args), op.reference(*args), case)
