"""Windows computed in place (window_flat): which windows get the flat layout, what its loop
nest holds, and flat kernels against the reference at every border, with masked row ends,
fused and unfused epilogues, dilations, pools and float64. The compiled flat kernels are
checked beside the plane ones in test_window_plane.py."""
import numpy as np
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from codegen import build
from helpers import assert_matches
from schedules import lower, ops
from schedules.contraction import expand_inlined
from schedules.expr import Select, walk
from schedules.loopnest import Allocate, For, Store, VectorCopy
from schedules.window_flat import flat_geometry
from schedules.window_plane import plane_layout
from test_window import RELAXED, _conv1d, _stage, _walk
from test_window_plane import _residual_depthwise


def _geometry(op, stage):
    window, sch = _stage(op, stage)
    layout = plane_layout(window.axis, window.reduce_axis, expand_inlined(sch, window).source)
    return None if layout is None else flat_geometry(layout)


def _flat(op, stage, **knobs):
    space = op.space("cpu")
    return space.validate(dict(space.default()) | {f"{stage}.kernel": "window", f"{stage}.win_layout": "flat"}
                          | knobs)


def test_same_padded_windows_get_the_flat_layout_and_others_do_not():
    # Rows [r0, r1) and columns [c0, c1) whose taps all stay inside the input.
    assert _geometry(ops.depthwise_conv2d(1, 4, 9, 7, 3, 3, padding=1), "depthwise_conv2d") == (1, 8, 1, 6)
    assert _geometry(ops.depthwise_conv2d(1, 2, 9, 9, 5, 3, padding=(2, 1)), "depthwise_conv2d") == (2, 7, 1, 8)
    assert _geometry(ops.depthwise_conv2d(1, 2, 9, 11, 3, 3, padding=2, dilation=2),
                     "depthwise_conv2d") == (2, 7, 2, 9)
    assert _geometry(ops.pool2d(1, 3, 8, 8, 3, 1, padding=1), "pool_max") == (1, 7, 1, 7)
    # Rows of another length (valid padding), strides, and a plane with no inner row keep
    # the other layouts, and their spaces offer no flat value.
    for op, stage in [(ops.depthwise_conv2d(1, 4, 9, 9, 3, 3, padding=0), "depthwise_conv2d"),
                      (ops.depthwise_conv2d(1, 4, 2, 9, 3, 3, padding=1), "depthwise_conv2d"),
                      (ops.depthwise_conv2d(1, 4, 9, 9, 3, 3, stride=2, padding=1), "depthwise_conv2d")]:
        assert _geometry(op, stage) is None
        assert all("flat" not in k.choices for k in op.space("cpu").knobs if k.name.endswith("win_layout"))


def test_rows_at_least_32_wide_default_to_flat_and_narrower_ones_to_planes():
    def default(W):
        op = ops.depthwise_conv2d(1, 8, 14, W, 3, 3, padding=1, bias=True, activation="relu")
        return op.space("cpu").default()["depthwise_conv2d.win_layout"]
    assert (default(14), default(31), default(32), default(112)) == ("planes", "planes", "flat", "flat")


def test_the_flat_loop_reads_and_writes_in_place_and_masks_only_shifted_columns():
    op = ops.depthwise_conv2d(1, 3, 6, 20, 3, 3, padding=1, bias=True, activation="relu")
    nest = lower(op.space("cpu").apply(_flat(op, "depthwise_conv2d")))
    stmts = list(_walk(nest.body))
    assert not any(isinstance(s, VectorCopy) for s in stmts)  # no copy in or out
    assert [(v.shape, b.name) for v, b in nest.views] == [((360,), "data"), ((360,), "epilogue")]
    masks = [s for s in stmts if isinstance(s, Allocate)]
    assert sorted(a.buffer.dtype for a in masks) == ["bool", "bool"]  # column shifts -1 and +1
    assert all(a.buffer.shape == (4 * 20,) for a in masks)  # the rows [1, 5)
    flat = [s for s in stmts if isinstance(s, For) and s.kind == "vectorized"
            and any(isinstance(t, Store) and t.buffer is nest.views[1][0] for t in _walk(s.body))]
    assert len(flat) == 1
    selects = [e for t in _walk(flat[0].body) if hasattr(t, "value") for e in walk(t.value)
               if isinstance(e, Select)]
    assert len(selects) == 6  # the 6 taps at column shifts -1 and +1; the middle column is plain


def test_flat_on_a_valid_window_names_the_stage_and_the_fix():
    op = ops.depthwise_conv2d(1, 2, 9, 9, 3, 3, padding=0)
    space = op.space("cpu")
    sch = space.apply(space.default())
    sch["depthwise_conv2d"].window_kernel(16, flat=True)
    with pytest.raises(Exception, match="depthwise_conv2d.*'same' padding.*row layout"):
        lower(sch)
    with pytest.raises(Exception, match="planes or flat"):
        sch["depthwise_conv2d"].window_kernel(16, planes=True, flat=True)


@st.composite
def same_windows(draw):
    """'Same'-padded unit-stride windows of every kind and size (the flat layout's domain),
    with fused and unfused epilogues."""
    kind = draw(st.sampled_from(["depthwise", "max_pool", "avg_pool", "avg_pool_valid", "residual", "conv1d"]))
    H, W = draw(st.integers(1, 9)), draw(st.integers(1, 40))
    if kind == "residual":
        return _residual_depthwise(2, H, W, draw(st.sampled_from(["float32", "float64"]))), "y"
    if kind == "conv1d":
        return _conv1d(W + 3, 3, 1, 1, 1), "y"
    R, S = draw(st.sampled_from([1, 3, 5])), draw(st.sampled_from([1, 3, 5]))
    if kind == "depthwise":
        dilation = draw(st.integers(1, 2))
        act = draw(st.sampled_from([None, "relu", "gelu"]))
        dtype = draw(st.sampled_from(["float32", "float64"]))
        try:
            return ops.depthwise_conv2d(1, 3, H, W, R, S, 1, (dilation * (R - 1) // 2, dilation * (S - 1) // 2),
                                        dilation, draw(st.integers(1, 2)), "NCHW", True, act, dtype), \
                "depthwise_conv2d"
        except ValueError:
            assume(False)
    try:
        op = ops.pool2d(1, 3, H, W, (R, S), 1, ((R - 1) // 2, (S - 1) // 2), "max" if kind == "max_pool" else "avg",
                        count_include_pad=kind != "avg_pool_valid")
    except ValueError:
        assume(False)
    return op, "pool_max" if kind == "max_pool" else "pool_sum"


@settings(max_examples=150, **RELAXED)
@given(case=same_windows(), seed=st.integers(0, 3))
@example(case=(ops.depthwise_conv2d(1, 3, 5, 17, 3, 3, padding=1, bias=True, activation="relu"),
               "depthwise_conv2d"), seed=0)
@example(case=(_residual_depthwise(2, 4, 18), "y"), seed=1)
def test_flat_kernels_match_the_reference_at_every_border(case, seed):
    op, stage = case
    knob = next((k for k in op.space("cpu").knobs if k.name == f"{stage}.win_layout"), None)
    assume(knob is not None and "flat" in knob.choices)
    config = _flat(op, stage)
    args = op.random_inputs(seed)
    kernel = build(op, "cpu", config, jit=False)
    assert_matches(op, kernel(*args), op.reference(*args), f"config {config.to_json()}")


def test_every_border_point_is_written():
    """Each output point is written by the flat loop or a border loop: an output buffer
    filled with NaN beforehand holds none after the call (a missed corner would keep one)."""
    op = ops.depthwise_conv2d(1, 3, 6, 19, 5, 3, padding=(2, 1), bias=True)
    kernel = build(op, "cpu", _flat(op, "depthwise_conv2d"), jit=False)
    args = op.random_inputs(0)
    out = np.full(op.outputs[0].shape, np.nan, np.float32)
    kernel(*args, out=out)
    assert not np.isnan(out).any()
    assert_matches(op, out, op.reference(*args))


def test_an_integer_window_in_place_matches_the_reference():
    """Masked reads select an integer default for an int32 input."""
    from schedules import te
    x = te.placeholder((2, 5, 9), "int32", name="x")
    r, s = te.reduce_axis(3, "r"), te.reduce_axis(3, "s")
    y = te.compute((2, 5, 9), lambda c, h, w: te.sum(x[c, h + r - 1, w + s - 1], axis=(r, s)), name="y")
    op = te.operator("box_sum_int", [x], [y])
    args = op.random_inputs(0)
    for jit in (False, True):
        got = build(op, "cpu", _flat(op, "y"), jit=jit)(*args)
        assert got.dtype == np.int32 and np.array_equal(got, op.reference(*args))
