"""Padded copies of windowed inputs: every element of the copy is the input's inside its margins
and the read's default in them, whichever way the pad step is split between threads."""
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from codegen import build
from helpers import assert_matches, avx2_cpu
from schedules import ops

RELAXED = dict(deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


def _config(op, micro: bool, parts_m: int):
    space = op.space(avx2_cpu())
    config = space.default()
    if "conv2d.kernel" not in config:  # too small a contraction for the micro-kernel
        return config
    config = config.replace(**{"conv2d.kernel": "micro" if micro else "tiled"})
    if micro:
        config = config.replace(**{"conv2d.parts_m": parts_m, "conv2d.mk_rows": 4, "conv2d.mk_vecs": 1,
                                   "conv2d.mk_lanes": 8})
    return config


def _padded_copy_after_a_call(kernel, op, inputs):
    """The kernel run on scratch that starts as NaN; returns (output, the padded copy or None
    where there is none: an input smaller than its margins is read through guards)."""
    temps = [np.full(tuple(b.shape), np.nan, dtype=b.dtype) for b in kernel.loopnest.temps]
    pads = [k for k, b in enumerate(kernel.loopnest.temps) if b.name.endswith("_pad")]
    out = np.empty(op.outputs[0].shape, op.outputs[0].dtype)
    kernel._run((*op.check_inputs(inputs), out, *temps), 0)
    return out, (temps[pads[0]] if pads else None)


def _expected(x, op, layout: str, pad: int):
    axes = (2, 3) if layout == "NCHW" else (1, 2)
    widths = [(pad, pad) if d in axes else (0, 0) for d in range(x.ndim)]
    return np.pad(x, widths)


@settings(max_examples=40, **RELAXED)
@given(layout=st.sampled_from(["NCHW", "NHWC"]), channels=st.integers(1, 5), height=st.integers(1, 6),
       width=st.integers(1, 19), size=st.sampled_from([1, 3, 5]), extra=st.integers(0, 1),
       micro=st.booleans(), parts_m=st.sampled_from([1, 2, 4]))
def test_the_padded_copy_is_the_input_inside_margins_of_zeros(layout, channels, height, width, size, extra,
                                                              micro, parts_m):
    pad = max(1, size // 2 + extra)
    op = ops.conv2d(1, channels, height, width, 8, size, size, padding=pad, layout=layout)
    config = _config(op, micro, parts_m)
    kernel = build(op, avx2_cpu(), config, jit=False)
    inputs = op.random_inputs(1)
    out, padded = _padded_copy_after_a_call(kernel, op, inputs)
    assume(padded is not None)
    expected = _expected(inputs[0], op, layout, pad)
    assert padded.shape == expected.shape
    np.testing.assert_array_equal(padded, expected)
    assert_matches(op, out, op.reference(*inputs), f"config {config.to_json()}")


@pytest.mark.parametrize("layout,width,parts_m", [("NCHW", 13, 2), ("NCHW", 16, 1), ("NHWC", 9, 2)])
def test_compiled_pad_steps_copy_whole_and_ragged_lines(layout, width, parts_m):
    """Compiled: lines of 13 (masked vector copies), 16 (whole vectors), and NHWC's lines of 5
    channels, split over rows (parts_m 2) or channels (parts_m 1)."""
    op = ops.conv2d(1, 5, 6, width, 8, 3, 3, padding=1, layout=layout, bias=True, activation="relu")
    kernel = build(op, avx2_cpu(), _config(op, True, parts_m))
    inputs = op.random_inputs(2)
    out, padded = _padded_copy_after_a_call(kernel, op, inputs)
    np.testing.assert_array_equal(padded, _expected(inputs[0], op, layout, 1))
    assert_matches(op, out, op.reference(*inputs))


@pytest.mark.parametrize("parts_m,extent", [(1, 6), (2, 9)])
def test_a_schedule_with_fixed_parts_pads_as_its_tiles_split_with_no_runtime_choice(parts_m, extent):
    """tensorize with plain ints: the split is decided when lowering, with no branch."""
    from schedules import lower
    from schedules.loopnest import For, If
    from schedules.schedule import Schedule
    op = ops.conv2d(1, 6, 7, 13, 16, 3, 3, padding=1)
    sch = Schedule(op, avx2_cpu())
    sch["conv2d"].tensorize(4, 1, 8, parts_m=parts_m, transposed=True, direct=True)
    nest = lower(sch)
    pad = next(s for s in nest.body if isinstance(s, For) and s.kind == "parallel")
    assert pad.extent.value == extent
    assert not any(isinstance(s, If) for s in pad.body)
