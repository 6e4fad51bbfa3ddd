"""Tier 2: schedule primitives, templates, packing and user-written multi-stage operators."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from codegen import build
from helpers import assert_matches, configs
from schedules import (Config, ScheduleError, Schedule, lower, ops, register_template, te,
                       unregister_template)


def user_matmul(name, M=13, N=11, K=7, epilogue=None):
    A = te.placeholder((M, K), name="A")
    B = te.placeholder((K, N), name="B")
    k = te.reduce_axis(K, name="k")
    C = te.compute((M, N), lambda i, j: te.sum(A[i, k] * B[k, j], axis=k), name="C")
    outs = [C]
    if epilogue:
        outs = [te.compute((M, N), lambda i, j: epilogue(C[i, j]), name="Y")]
    return te.operator(name, [A, B], outs)


@pytest.fixture
def template():
    names = []

    def register(name, mode="replace"):
        names.append(name)
        return register_template(name, mode=mode)
    yield register
    for n in names:
        unregister_template(n)


def run_both(op, config=None):
    inputs = op.random_inputs(0)
    ref = op.reference(*inputs)
    assert_matches(op, build(op, "cpu", config, jit=False)(*inputs), ref, "(interpreted)")
    return inputs, ref


def test_template_with_all_loop_primitives_and_uneven_splits(template):
    @template("tmpl_mm")
    def schedule(sch: Schedule):
        C = sch["C"]
        i, j = C.axis
        (k,) = C.reduce_axis
        ti = sch.knob("ti", [2, 3, 4])
        tj = sch.knob("tj", [4, 5])
        io, ii = C.split(i, ti)
        jo, ji = C.split(j, tj)
        ko, ki = C.split(k, sch.knob("tk", [2, 3], runtime=True))
        C.reorder(io, jo, ko, ii, ki, ji)
        C.parallel(C.fuse(io, jo))
        C.cache_write("local")
        C.unroll(ii)
        C.vectorize(ji)
    op = user_matmul("tmpl_mm")
    space = op.space("cpu")
    assert [k.name for k in space.knobs] == ["ti", "tj", "tk"] and space.origin.startswith("template")
    for ti in (2, 3, 4):
        for tj in (4, 5):
            run_both(op, Config({"ti": ti, "tj": tj, "tk": 3}))
    inputs, ref = run_both(op, Config({"ti": 3, "tj": 5, "tk": 2}))
    assert_matches(op, build(op, "cpu", Config({"ti": 3, "tj": 5, "tk": 2}))(*inputs), ref)


def test_extend_template_adds_knobs_to_the_generated_space(template):
    @template("ext_mm", mode="extend")
    def schedule(sch):
        sch.knob("note", ["a", "b"])
    op = user_matmul("ext_mm")
    names = [k.name for k in op.space("cpu").knobs]
    assert "note" in names and "C.order" in names
    run_both(op, op.space("cpu").default().replace(note="b"))


def test_pack_transforms_an_input_layout(template):
    @template("packed_mm", mode="extend")
    def schedule(sch):
        if sch.knob("pack_B", [True, False]):
            sch.pack(sch.op.inputs[1], axis=1, factor=4)
    op = user_matmul("packed_mm", M=9, N=10, K=6)   # N=10 is not a multiple of 4
    cfg = op.space("cpu").default()
    assert cfg["pack_B"] is True
    nest = lower(op.space("cpu").apply(cfg))
    assert any(b.name == "B_packed" and b.shape == (3, 6, 4) for b in nest.temps)
    inputs, ref = run_both(op, cfg)
    assert_matches(op, build(op, "cpu", cfg)(*inputs), ref)


@pytest.mark.parametrize("apply,match", [
    (lambda C: C.parallel(C.reduce_axis[0]), "reduction loop"),
    (lambda C: C.vectorize(C.axis[0]), "not the innermost"),
    (lambda C: C.split(C.axis[0], 0), "factor must be positive"),
    (lambda C: C.fuse(C.axis[0], C.reduce_axis[0]), "cannot fuse spatial and reduce"),
    (lambda C: C.compute_inline(), "cannot be inlined"),
    (lambda C: C.parallel(C.axis[1]), "only the outermost loop"),
    (lambda C: C.split(te.reduce_axis(3), 2), "not a current loop"),
])
def test_illegal_schedules_raise_schedule_error_before_codegen(template, apply, match):
    @template("bad_mm")
    def schedule(sch):
        apply(sch["C"])
    op = user_matmul("bad_mm")
    with pytest.raises(ScheduleError, match=match):
        build(op, "cpu", Config({}), jit=False)


def test_output_cannot_be_inlined(template):
    @template("inline_out")
    def schedule(sch):
        sch["Y"].compute_inline()
    with pytest.raises(ScheduleError, match="output"):
        user_matmul("inline_out", epilogue=lambda c: c * 2.0).space("cpu")


def test_softmax_written_stage_by_stage_builds_with_no_extra_code():
    x = te.placeholder((6, 19), name="x")
    k1, k2 = te.reduce_axis(19, name="k1"), te.reduce_axis(19, name="k2")
    mx = te.compute((6,), lambda i: te.max(x[i, k1], axis=k1), name="mx")
    ex = te.compute((6, 19), lambda i, j: te.exp(x[i, j] - mx[i]), name="ex")
    sm = te.compute((6,), lambda i: te.sum(ex[i, k2], axis=k2), name="sm")
    y = te.compute((6, 19), lambda i, j: ex[i, j] / sm[i], name="y")
    op = te.operator("my_softmax", [x], [y])
    inputs, ref = run_both(op)
    e = np.exp(inputs[0] - inputs[0].max(1, keepdims=True))
    np.testing.assert_allclose(ref, e / e.sum(1, keepdims=True), rtol=1e-5)
    nest = lower(op.space("cpu").apply(op.space("cpu").default()))
    assert not nest.temps  # row statistics live in registers, nothing is materialized
    assert_matches(op, build(op, "cpu")(*inputs), ref)


def test_matmul_with_gelu_epilogue_is_fused_and_correct():
    op = user_matmul("mm_gelu", epilogue=lambda c: 0.5 * c * (1.0 + te.erf(c * 0.7071067811865476)))
    nest = lower(op.space("cpu").apply(op.space("cpu").default()))
    assert not nest.temps  # C stays in the local accumulator tile
    inputs, ref = run_both(op)
    assert_matches(op, build(op, "cpu")(*inputs), ref)


def test_multi_output_and_chained_reductions():
    A = te.placeholder((5, 6), name="A")
    B = te.placeholder((6, 4), name="B")
    D = te.placeholder((4, 3), name="D")
    k = te.reduce_axis(6, name="k")
    k2 = te.reduce_axis(4, name="k2")
    C = te.compute((5, 4), lambda i, j: te.sum(A[i, k] * B[k, j], axis=k), name="C")
    R = te.compute((5, 4), lambda i, j: te.maximum(C[i, j], 0.0), name="R")
    E = te.compute((5, 3), lambda i, j: te.sum(R[i, k2] * D[k2, j], axis=k2), name="E")
    op = te.operator("mlp2", [A, B, D], [E, C])
    space = op.space("cpu")

    @settings(max_examples=10, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
    @given(configs(space))
    def check(cfg):
        run_both(op, cfg)
    check()
    a, b, d = op.random_inputs(0)
    e, c = build(op, "cpu")(a, b, d)
    np.testing.assert_allclose(c, a @ b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(e, np.maximum(a @ b, 0) @ d, rtol=1e-4, atol=1e-5)


def test_loopnest_dump_is_readable():
    dump = lower(ops.softmax(4, 8).space("cpu").apply(ops.softmax(4, 8).space("cpu").default())).dump()
    assert "for " in dump and "parallel(" in dump and "softmax[" in dump
