"""Direct sliding-window kernels: which stages qualify, and the window schedule against the
reference for depthwise convolutions, pooling and a user operator, borders included."""
import math
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from codegen import build
from helpers import assert_matches
from schedules import lower, ops, te
from schedules.contraction import expand_inlined
from schedules.errors import ScheduleError
from schedules.loopnest import For
from schedules.schedule import Schedule
from schedules.sketch import WINDOW_BLOCKS
from schedules.target import as_target
from schedules.window import MAX_TAPS, interior, is_window

RELAXED = dict(deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


def _stage(op, name):
    sch = Schedule(op, as_target("cpu"))
    for s in sch.stage_list:
        if not s.is_reduction and not op.is_output(s.tensor):
            s.compute_inline()
    return sch[name], sch


def _window(op, name):
    st_, sch = _stage(op, name)
    return is_window(st_.axis, st_.reduce_axis, expand_inlined(sch, st_))


def _conv1d(L=11, K=3, stride=1, dilation=1, pad=1, flip=False):
    """A user-written 1-D convolution over two channels with a tanh epilogue."""
    x = te.placeholder((2, L), "float32", name="x")
    w = te.placeholder((2, K), "float32", name="w")
    r = te.reduce_axis(K, "r")
    out_len = (L + 2 * pad - dilation * (K - 1) - 1) // stride + 1

    def at(c, t):
        pos = (L - 1 - t * stride) if flip else t * stride
        return x[c, pos + r * dilation - pad] * w[c, r]
    y = te.compute((2, out_len), lambda c, t: te.sum(at(c, t), axis=r), name="y")
    z = te.compute((2, out_len), lambda c, t: te.tanh(y[c, t]), name="z")
    return te.operator("conv1d_tanh", [x, w], [z])


def test_windows_are_found_and_other_reductions_are_not():
    assert _window(ops.depthwise_conv2d(1, 4, 9, 9, 3, 3, padding=1), "depthwise_conv2d")
    assert _window(ops.depthwise_conv2d(1, 4, 9, 9, 3, 3, padding=1, layout="NHWC"), "depthwise_conv2d")
    assert _window(ops.pool2d(1, 3, 8, 8, 3, 2, padding=1), "pool_max")
    assert _window(ops.pool2d(1, 3, 8, 8, 2, pool_type="avg"), "pool_sum")
    assert _window(_conv1d(stride=2, dilation=2), "y")
    # Contractions, row reductions and windows read backwards are not.
    assert not _window(ops.matmul(8, 8, 8), "matmul")
    assert not _window(ops.softmax(4, 16), "rowmax")
    assert not _window(ops.layer_norm(4, 16), "x_sum")
    assert not _window(_conv1d(flip=True), "y")
    # More taps than MAX_TAPS would unroll into a huge body.
    side = math.isqrt(MAX_TAPS) + 1
    assert not _window(ops.depthwise_conv2d(1, 2, 12, 12, side, side, padding=1), "depthwise_conv2d")


def test_the_interior_is_where_every_tap_reads_in_bounds():
    op = ops.depthwise_conv2d(1, 2, 10, 10, 3, 3, stride=2, padding=2, dilation=2)
    st_, sch = _stage(op, "depthwise_conv2d")
    lo, hi = interior(st_.axis, st_.reduce_axis, expand_inlined(sch, st_).source)
    # iw = 2*ow + 2*rs - 2 must lie in [0, 9] for rs in 0..2: ow in [1, 3].
    assert (lo, hi) == (1, 4)


def test_the_window_kernel_is_the_default_and_needs_no_padded_copy():
    op = ops.depthwise_conv2d(1, 8, 14, 14, 3, 3, padding=1, bias=True, activation="relu")
    space = op.space("cpu")
    assert space.default()["depthwise_conv2d.kernel"] == "window"
    nest = lower(space.apply(space.validate(dict(space.default()) | rows_layout(space, "depthwise_conv2d"))))
    assert nest.temps == ()  # no padded scratch copy of the input
    loops = [s for s in _walk(nest.body) if isinstance(s, For)]
    assert [s.kind for s in loops if s.kind == "vectorized"] == ["vectorized"]
    # The tiled schedule stays available, and it does read a padded copy.
    tiled = dict(space.default()) | {"depthwise_conv2d.kernel": "tiled"}
    assert lower(space.apply(space.validate(tiled))).temps


def rows_layout(space, stage) -> dict:
    """The knob that keeps a window on its row layout, where the space has the plane choice."""
    knob = f"{stage}.win_layout"
    return {knob: "rows"} if any(k.name == knob for k in space.knobs) else {}


def _walk(stmts):
    for s in stmts:
        yield s
        yield from _walk(getattr(s, "body", ()))


@st.composite
def window_ops(draw):
    kind = draw(st.sampled_from(["depthwise", "max_pool", "avg_pool", "avg_pool_valid", "conv1d"]))
    layout = draw(st.sampled_from(["NCHW", "NHWC"]))
    H, W = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    R, S = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride, dilation = draw(st.integers(1, 3)), draw(st.integers(1, 2))
    if kind == "conv1d":
        L = draw(st.integers(3, 17))
        pad = draw(st.integers(0, 2))
        assume((L + 2 * pad - dilation * 2 - 1) // stride + 1 >= 2)
        return _conv1d(L, 3, stride, dilation, pad), "y"
    if kind == "depthwise":
        pad = draw(st.integers(0, 2))
        mult = draw(st.integers(1, 2))
        act = draw(st.sampled_from([None, "relu", "gelu"]))
        try:
            op = ops.depthwise_conv2d(1, 3, H, W, R, S, stride, pad, dilation, mult, layout, True, act)
        except ValueError:
            assume(False)
        return op, "depthwise_conv2d"
    pad = draw(st.integers(0, max(0, min(R, S) - 1)))
    try:
        op = ops.pool2d(1, 3, H, W, (R, S), stride, pad, "max" if kind == "max_pool" else "avg", layout,
                        count_include_pad=kind != "avg_pool_valid")
    except ValueError:
        assume(False)
    return op, "pool_max" if kind == "max_pool" else "pool_sum"


@settings(max_examples=120, **RELAXED)
@given(case=window_ops(), block=st.sampled_from(WINDOW_BLOCKS), seed=st.integers(0, 3))
def test_window_kernels_match_the_reference_at_every_border(case, block, seed):
    op, stage = case
    space = op.space("cpu")
    knob = f"{stage}.kernel"
    assume(any(k.name == knob for k in space.knobs))  # a 1-wide output row has no window kernel
    config = space.validate(dict(space.default()) | {knob: "window", f"{stage}.win_block": block}
                            | rows_layout(space, stage))
    kernel = build(op, "cpu", config, jit=False)
    args = op.random_inputs(seed)
    assert_matches(op, kernel(*args), op.reference(*args), f"config {config.to_json()}")


def test_out_of_bounds_taps_are_selected_away_not_multiplied():
    # Output row 0 reads rows -1 (padding) and 2; the clamped load of row -1 reads row 0. An
    # infinite row 0 must not leak in, as inf * 0 = nan would with a multiplied mask.
    op = ops.depthwise_conv2d(1, 2, 6, 6, 2, 1, padding=(1, 0), dilation=(3, 1))
    x, w = op.random_inputs(0)
    x[:, :, 0, :] = np.inf
    got = build(op, "cpu", jit=False)(x, w)
    ref = op.reference(x, w)
    assert np.isfinite(ref[:, :, 0]).all()
    assert_matches(op, got, ref)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_compiled_window_kernels_share_one_compile_across_blocks(layout):
    op = ops.depthwise_conv2d(1, 16, 20, 21, 3, 3, padding=1, layout=layout, bias=True, activation="relu")
    space = op.space("cpu")
    args = op.random_inputs(1)
    sources = set()
    for block in (16, 256):
        config = space.validate(dict(space.default()) | {"depthwise_conv2d.win_block": block}
                                | rows_layout(space, "depthwise_conv2d"))
        kernel = build(op, "cpu", config)
        sources.add(kernel.source)
        assert_matches(op, kernel(*args), op.reference(*args), f"block {block}")
    assert len(sources) == 1


def test_window_kernel_on_a_non_window_stage_names_the_stage():
    op = ops.softmax(4, 16)
    sch = Schedule(op, as_target("cpu"))
    with pytest.raises(ScheduleError, match="rowmax"):
        sch["rowmax"].window_kernel(16)
        lower(sch)
    with pytest.raises(ScheduleError, match="block"):
        sch["rowmax"].window_kernel(0)


@settings(max_examples=40, **RELAXED)
@given(W=st.integers(14, 45), pad=st.integers(0, 2), stride=st.integers(1, 2),
       kind=st.sampled_from(["depthwise", "max_pool"]), block=st.sampled_from(WINDOW_BLOCKS),
       seed=st.integers(0, 3))
def test_rows_of_a_vector_or_more_run_in_whole_vectors_and_match_the_reference(W, pad, stride, kind,
                                                                              block, seed):
    if kind == "depthwise":
        op, stage = ops.depthwise_conv2d(1, 2, 3, W, 3, 3, stride, pad, bias=True, activation="relu"), \
            "depthwise_conv2d"
    else:
        op, stage = ops.pool2d(1, 2, 3, W, (3, 3), stride, min(pad, 1), "max"), "pool_max"
    space = op.space("cpu")
    config = space.validate(dict(space.default()) | {f"{stage}.kernel": "window", f"{stage}.win_block": block}
                            | rows_layout(space, stage))
    kernel = build(op, "cpu", config, jit=False)
    args = op.random_inputs(seed)
    assert_matches(op, kernel(*args), op.reference(*args), f"config {config.to_json()}")
    window, sch = _stage(op, stage)
    lo, hi = interior(window.axis, window.reduce_axis, expand_inlined(sch, window).source)
    chunks = re.search(rf"for {stage}_chunk in range\((.*)\):", kernel.source).group(1)
    if hi - lo >= 16:  # whole vectors, then one vector ending the row if points are left
        assert chunks == ("1" if (hi - lo) % 16 == 0 else "2")
    else:
        assert "win_block" in chunks
