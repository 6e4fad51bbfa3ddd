"""Constant inputs (weights) packed once: build(constants=...) and Kernel.bind."""
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from codegen import build
from helpers import assert_matches, avx2_cpu
from schedules import lower, ops
from schedules.errors import ScheduleError
from test_tensorize import RELAXED, _micro, _ops, knob_values


def _bind_each(op, inputs, constants):
    names = [t.name for t in op.inputs]
    fixed = {n: a for n, a in zip(names, inputs) if n in constants}
    free = [a for n, a in zip(names, inputs) if n not in constants]
    return fixed, free


@settings(max_examples=60, **RELAXED)
@given(data=st.data(), knobs=knob_values)
def test_bound_kernels_with_either_operand_prepacked_match_the_reference(data, knobs):
    """Interpreted, so many configs fit: each operand of the micro-kernel, or every input,
    as constants; the bound kernel and the unbound one both match the reference."""
    op, stage = _ops(data.draw)
    assume(f"{stage}.mk_rows" in {k.name for k in op.space(avx2_cpu()).knobs})
    names = [t.name for t in op.inputs]
    constants = data.draw(st.sampled_from([names[:1], names[1:2], names]))
    cfg = _micro(op, stage, *knobs)
    kernel = build(op, avx2_cpu(), cfg, jit=False, constants=constants)
    inputs = op.random_inputs(5)
    ref = op.reference(*inputs)
    what = f"with config {cfg.to_json()}, constants {constants}"
    assert_matches(op, kernel(*inputs), ref, what)
    fixed, free = _bind_each(op, inputs, constants)
    bound = kernel.bind(**fixed)
    assert len(bound.packed) == len(kernel.loopnest.prepacked)
    assert_matches(op, bound(*free), ref, what)
    assert_matches(op, bound(*free), ref, what + ", second call")


@pytest.mark.parametrize("make,constants,side", [
    (lambda: ops.dense(33, 50, 70, bias=True, activation="gelu"), ("weight", "bias"), "bpacked"),
    # 1x1: filters on the rows, so the weights are the A side.
    (lambda: ops.conv2d(1, 7, 9, 9, 20, 1, 1, bias=True, activation="relu"), ("weight",), "apacked"),
    # A batch of images: the weights, which read no image axis, packed once for all of them.
    (lambda: ops.conv2d(3, 7, 9, 9, 20, 1, 1, bias=True, activation="relu"), ("weight",), "apacked"),
    (lambda: ops.conv2d(2, 7, 9, 9, 20, 3, 3, padding=1, bias=True, activation="relu"), ("weight",), "bpacked"),
    # Windows, at any stride: filters on the vector lanes by default, so the weights are the B side.
    (lambda: ops.conv2d(1, 7, 9, 9, 20, 3, 3, stride=2, padding=1, bias=True, activation="relu"), ("weight",),
     "bpacked"),
    (lambda: ops.conv2d(1, 7, 9, 9, 20, 3, 3, padding=1, bias=True, activation="relu"), ("weight",), "bpacked"),
    (lambda: ops.matmul(40, 24, 130), ("A",), "apacked"),
])
def test_compiled_bound_kernels_pack_their_weights_once(make, constants, side):
    op = make()
    kernel = build(op, "cpu", constants=constants)
    assert [b.name.endswith(side) for _, b in kernel.loopnest.prepacked] == [True]
    inputs = op.random_inputs(2)
    ref = op.reference(*inputs)
    fixed, free = _bind_each(op, inputs, constants)
    bound = kernel.bind(**fixed)
    assert_matches(op, bound(*free), ref)
    # The packed operand was read once, at bind: changing the array afterwards changes nothing.
    packed_input = kernel.loopnest.prepacked[0][0]
    fixed[packed_input][...] = 0
    assert_matches(op, bound(*free), ref)


def test_an_unbound_kernel_built_with_constants_packs_on_every_call():
    op = ops.matmul(17, 20, 66)
    kernel = build(op, "cpu", constants=("B",))
    a, b = op.random_inputs(0)
    assert_matches(op, kernel(a, b), a @ b)
    b2 = b * -2
    assert_matches(op, kernel(a, b2), a @ b2)


def test_binding_names_and_counts_are_checked():
    op = ops.dense(8, 16, 32, bias=True)
    kernel = build(op, "cpu", constants=("weight",))
    x, w, bias = op.random_inputs(0)
    with pytest.raises(ValueError, match=r"no input 'W' to bind \(inputs: x, weight, bias\)"):
        kernel.bind(W=w)
    with pytest.raises(ValueError, match=r"input weight expects shape \(16, 32\)"):
        kernel.bind(weight=w.T.copy())
    bound = kernel.bind(weight=w)
    with pytest.raises(ValueError, match=r"with weight bound takes 2 inputs \(x, bias\), got 3"):
        bound(x, w, bias)
    assert_matches(op, bound(x, bias), op.reference(x, w, bias))
    both = bound.bind(bias=bias)  # binding more later keeps what was packed
    assert both.packed == bound.packed
    assert_matches(op, both(x), op.reference(x, w, bias))
    w2 = w * -3  # binding the packed input anew packs it again
    again = both.bind(weight=w2)
    assert_matches(op, again(x), op.reference(x, w2, bias))


def test_constants_must_be_inputs_of_the_operator():
    op = ops.matmul(8, 8, 8)
    sch = op.space("cpu").apply(op.space("cpu").default())
    with pytest.raises(ScheduleError, match=r"constants \['W'\] are not inputs of operator matmul"):
        lower(sch, ("W",))


def test_a_tiled_or_window_kernel_has_nothing_to_prepack_and_binds_anyway():
    op = ops.depthwise_conv2d(1, 4, 8, 8, 3, 3, padding=1, bias=True)
    kernel = build(op, "cpu", constants=("weight", "bias"))
    assert kernel.loopnest.prepacked == ()
    x, w, b = op.random_inputs(0)
    bound = kernel.bind(weight=w, bias=b)
    assert bound.packed == () and np.allclose(bound(x), op.reference(x, w, b), atol=1e-5)
