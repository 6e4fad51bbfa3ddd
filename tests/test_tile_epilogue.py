"""Fused epilogues applied to a micro-kernel's tile in registers (schedules/tile_epilogue.py)."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codegen import build
from codegen.interpret import python_outer_product
from codegen.simd import outer_product_kernel
from codegen.simd_finish import check_tile_epilogue
from helpers import assert_matches, avx2_cpu
from schedules import ops, te
from schedules.loopnest import For, If, MicroKernel
from schedules.sketch import MICRO_KC, MICRO_MC, MICRO_NC, MICRO_PARTS, MICRO_ROWS, MICRO_VECS

RELAXED = dict(deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


def _walk(stmts):
    for s in stmts:
        yield s
        if isinstance(s, (For, If)):
            yield from _walk(s.body)


def _micro(op, stage, rows=4, vecs=1, lanes=8, mc=24, kc=64, nc=256, pm=1, pn=1, order="nk", transposed=False):
    """A micro-kernel config; `transposed` applies where the space offers swapped tiles."""
    space = op.space(avx2_cpu())
    knobs = {f"{stage}.kernel": "micro", f"{stage}.mk_rows": rows, f"{stage}.mk_vecs": vecs,
             f"{stage}.mk_lanes": lanes, f"{stage}.mc": mc, f"{stage}.kc": kc, f"{stage}.nc": nc,
             f"{stage}.parts_m": pm, f"{stage}.parts_n": pn, f"{stage}.mk_order": order}
    if f"{stage}.mk_transposed" in {k.name for k in space.knobs}:
        knobs[f"{stage}.mk_transposed"] = transposed
    return space.default().replace(**knobs)


def _full_tile_calls(kernel):
    return [s for s in _walk(kernel.loopnest.body) if isinstance(s, MicroKernel) and s.c.role != "local"]


def _epilogue_op(M, N, K, relu6=True):
    """A user operator whose epilogue uses every step kind: a per-column shift subtracted from
    a constant side (rsub), a per-row scale, a clamp to [0, 6] and a constant offset."""
    A = te.placeholder((M, K), "float32", name="A")
    B = te.placeholder((K, N), "float32", name="B")
    shift = te.placeholder((N,), "float32", name="shift")
    scale = te.placeholder((M,), "float32", name="scale")
    k = te.reduce_axis(K, "k")
    C = te.compute((M, N), lambda i, j: te.sum(A[i, k] * B[k, j], axis=k), name="C")
    if relu6:
        Y = te.compute((M, N), lambda i, j: te.minimum(te.maximum((shift[j] - C[i, j]) * scale[i], 0.0), 6.0) - 0.5,
                       name="Y")
    else:
        Y = te.compute((M, N), lambda i, j: C[i, j] * 0.5 + shift[j], name="Y")
    return te.operator("matmul_epilogue_steps", inputs=[A, B, shift, scale], outputs=[Y]), "C"


def test_bias_and_relu_run_in_registers_with_the_right_program():
    conv = ops.conv2d(1, 3, 9, 9, 16, 3, 3, stride=2, padding=1, bias=True, activation="relu")
    calls = _full_tile_calls(build(conv, avx2_cpu(), _micro(conv, "conv2d"), jit=False))
    assert calls and all(c.epilogue == (("add", "row", 0, 1), ("max", "const", 0.0)) for c in calls)
    assert [b.name for b, _ in calls[0].epilogue_operands] == ["bias"]
    dense = ops.dense(20, 40, 30, bias=True)
    calls = _full_tile_calls(build(dense, avx2_cpu(), _micro(dense, "matmul"), jit=False))
    assert calls and all(c.epilogue == (("add", "col", 0),) for c in calls)
    op, stage = _epilogue_op(20, 40, 30)
    calls = _full_tile_calls(build(op, avx2_cpu(), _micro(op, stage), jit=False))
    assert calls[0].epilogue == (("rsub", "col", 0), ("mul", "row", 1, 1), ("max", "const", 0.0),
                                 ("min", "const", 6.0), ("sub", "const", 0.5))
    assert [b.name for b, _ in calls[0].epilogue_operands] == ["shift", "scale"]


@pytest.mark.parametrize("make", [
    lambda: (ops.dense(20, 40, 30, bias=True, activation="gelu"), "matmul", {}),           # a gelu
    lambda: (ops.matmul(20, 40, 30), "matmul", {}),                                         # no epilogue
])
def test_epilogues_the_tile_cannot_apply_keep_the_block_pass(make):
    op, stage, extra = make()
    kernel = build(op, avx2_cpu(), _micro(op, stage, **extra), jit=False)
    assert all(c.epilogue is None for c in _full_tile_calls(kernel))
    inputs = op.random_inputs(2)
    assert_matches(op, kernel(*inputs), op.reference(*inputs))


def test_swapped_tiles_store_their_columns_transposed_into_the_output():
    """A swapped conv tile (pixels on the rows, filters on the lanes) applies bias and relu in
    registers and writes each filter's run of pixels straight into the NCHW output."""
    conv = ops.conv2d(1, 16, 7, 7, 24, 3, 3, padding=1, bias=True, activation="relu")
    for kc in (64, 512):
        kernel = build(conv, avx2_cpu(), _micro(conv, "conv2d", rows=7, vecs=1, kc=kc, transposed=True), jit=False)
        calls = _full_tile_calls(kernel)
        assert calls and all(c.epilogue == (("add", "col", 0), ("max", "const", 0.0)) for c in calls)
        assert all(c.transposed_out.role == "output" and c.transposed_ld.value == 49 for c in calls)
        inputs = conv.random_inputs(4)
        ref = conv.reference(*inputs)
        out = np.full_like(ref, np.nan)
        kernel(*inputs, out=out)
        assert_matches(conv, out, ref, f"kc {kc}")


def test_transposed_targets_need_contiguous_rows():
    from schedules.bounds import interval
    from schedules.expr import Var
    from schedules.loopnest import Buffer
    from schedules.tile_epilogue import transposed_target
    n, f, y, x = (Var(name, extent) for name, extent in (("n", 2), ("f", 8), ("y", 5), ("x", 6)))
    i, j = Var("i", None, "index"), Var("j", None, "index")
    nchw = Buffer("out", (2, 8, 5, 6), "float32", "global", "output")
    offset, ld = transposed_target(nchw, (n, f, y, x), (2, 3), (1,), i, j)
    assert ld == 30
    # Batch 1, tile starting at pixel 13 (y 2, x 1) and filter 3: out[1, 3, 2, 1].
    at = {id(n): (1, 1), id(i): (13, 13), id(j): (3, 3)}
    assert interval(offset, at) == (np.ravel_multi_index((1, 3, 2, 1), nchw.shape),) * 2
    assert transposed_target(nchw, (n, f, y, x), (3, 2), (1,), i, j) is None  # rows flattened x-major
    nhwc = Buffer("out", (2, 5, 6, 8), "float32", "global", "output")
    assert transposed_target(nhwc, (n, y, x, f), (1, 2), (3,), i, j) is None  # pixels 8 apart


def _shortcut_op(read):
    """C = A @ B, then Z = C + R[read(i, j)]: a shortcut read like the output or otherwise."""
    A = te.placeholder((12, 20), "float32", name="A")
    B = te.placeholder((20, 16), "float32", name="B")
    k = te.reduce_axis(20, "k")
    C = te.compute((12, 16), lambda i, j: te.sum(A[i, k] * B[k, j], axis=k), name="C")
    shape = (16, 12) if read == "transposed" else (12, 32) if read == "strided" else (12, 16)
    R = te.placeholder(shape, "float32", name="R")
    at = {"transposed": lambda i, j: R[j, i], "strided": lambda i, j: R[i, j * 2]}.get(read, lambda i, j: R[i, j])
    Z = te.compute((12, 16), lambda i, j: C[i, j] + at(i, j), name="Z")
    return te.operator(f"shortcut_{read}", [A, B, R], [Z])


def test_a_stage_stored_beside_its_epilogue_keeps_the_block_pass():
    A = te.placeholder((12, 20), "float32", name="A")
    B = te.placeholder((20, 16), "float32", name="B")
    k = te.reduce_axis(20, "k")
    C = te.compute((12, 16), lambda i, j: te.sum(A[i, k] * B[k, j], axis=k), name="C")
    Y = te.compute((12, 16), lambda i, j: te.maximum(C[i, j], 0.0), name="Y")
    # A shortcut that is not laid out like the tile (read transposed, or every other column).
    for op in (te.operator("both", [A, B], [C, Y]), _shortcut_op("transposed"), _shortcut_op("strided")):
        kernel = build(op, avx2_cpu(), _micro(op, "C"), jit=False)
        assert all(c.epilogue is None for c in _full_tile_calls(kernel)), op.name
        inputs = op.random_inputs(1)
        assert_matches(op, kernel(*inputs), op.reference(*inputs), op.name)


def test_shortcuts_laid_out_like_the_tile_are_added_in_registers():
    """A residual input of the output's shape is read as a block (kind "tile") at the tile's
    first point, its rows one output row apart: a dense layer's (M, N) rows, a 1x1 conv's
    filters (a whole H*W plane apart), and per image of a batch."""
    op = _shortcut_op("plain")
    calls = _full_tile_calls(build(op, avx2_cpu(), _micro(op, "C"), jit=False))
    assert calls and all(c.epilogue == (("add", "tile", 0, 16),) for c in calls)
    dense = ops.dense(20, 40, 30, bias=True, activation="relu", residual=True)
    calls = _full_tile_calls(build(dense, avx2_cpu(), _micro(dense, "matmul"), jit=False))
    assert calls and all(c.epilogue == (("add", "col", 0), ("add", "tile", 1, 40), ("max", "const", 0.0))
                         for c in calls)
    assert [b.name for b, _ in calls[0].epilogue_operands] == ["bias", "skip"]
    conv = ops.conv2d(2, 8, 5, 6, 24, 1, 1, bias=True, activation="relu", residual=True)
    kernel = build(conv, avx2_cpu(), _micro(conv, "conv2d", rows=4, vecs=1, lanes=8), jit=False)
    calls = _full_tile_calls(kernel)
    assert calls and all(c.epilogue == (("add", "row", 0, 1), ("add", "tile", 1, 30), ("max", "const", 0.0))
                         for c in calls)
    inputs = conv.random_inputs(6)
    ref = conv.reference(*inputs)
    out = np.full_like(ref, np.nan)
    kernel(*inputs, out=out)
    assert_matches(conv, out, ref)


def _shapes(draw):
    kind = draw(st.sampled_from(["conv", "dense", "steps", "affine"]))
    d = lambda lo, hi: draw(st.integers(lo, hi))  # noqa: E731
    depth = draw(st.sampled_from([1, 7, 64, 65, 129, 200]))  # several k blocks, and the last one
    residual = draw(st.booleans())  # a shortcut of the output's shape, added as a block
    if kind == "conv":
        size = draw(st.sampled_from([1, 3]))
        stride, padding = d(1, 2), d(0, 1)
        op = ops.conv2d(d(1, 2), max(1, depth // (size * size)), d(3, 9), d(3, 9), d(1, 20), size, size,
                        stride=stride, padding=padding, bias=True,
                        activation=draw(st.sampled_from([None, "relu"])), residual=residual)
        return op, "conv2d"
    if kind == "dense":
        return ops.dense(d(1, 20), d(1, 40), depth, bias=True,
                         activation=draw(st.sampled_from([None, "relu"])), residual=residual), "matmul"
    return _epilogue_op(d(1, 20), d(1, 40), depth, relu6=kind == "steps")


knob_values = st.tuples(st.sampled_from(MICRO_ROWS), st.sampled_from(MICRO_VECS), st.sampled_from((8, 4)),
                        st.sampled_from(MICRO_MC), st.sampled_from(MICRO_KC), st.sampled_from(MICRO_NC),
                        st.sampled_from(MICRO_PARTS), st.sampled_from(MICRO_PARTS), st.sampled_from(("nk", "kn")))


@settings(max_examples=120, **RELAXED)
@given(data=st.data(), knobs=knob_values)
def test_tiles_finished_in_registers_match_the_reference(data, knobs):
    """Interpreted: full tiles apply the program on the last k block only (swapped ones storing
    it transposed), edge tiles finish point by point, and the output holds no value from
    before the call."""
    op, stage = _shapes(data.draw)
    space = op.space(avx2_cpu())
    if f"{stage}.mk_rows" not in {k.name for k in space.knobs}:
        return  # M or N of 1: no tile
    rows = data.draw(st.sampled_from(space[f"{stage}.mk_rows"].choices))  # 7 where offered
    cfg = _micro(op, stage, rows, *knobs[1:], transposed=data.draw(st.booleans()))
    kernel = build(op, avx2_cpu(), cfg, jit=False)
    inputs = op.random_inputs(5)
    ref = op.reference(*inputs)
    out = np.full_like(ref, np.nan)
    kernel(*inputs, out=out)
    assert_matches(op, out, ref, f"with config {cfg.to_json()}")


@pytest.mark.parametrize("make,rows,vecs,lanes", [
    (lambda: (ops.conv2d(1, 3, 23, 23, 20, 7, 7, stride=2, padding=3, bias=True, activation="relu"), "conv2d"),
     4, 2, 8),
    (lambda: (ops.conv2d(1, 24, 9, 9, 21, 1, 1, bias=True), "conv2d"), 6, 1, 8),
    (lambda: (ops.dense(37, 45, 130, bias=True, activation="relu"), "matmul"), 8, 2, 4),
    (lambda: _epilogue_op(19, 35, 70), 6, 2, 8),
    (lambda: (ops.conv2d(1, 9, 14, 14, 40, 3, 3, padding=1, bias=True, activation="relu"), "conv2d"), 7, 2, 8),
    (lambda: (ops.conv2d(1, 8, 11, 9, 20, 3, 3, padding=1, bias=True), "conv2d"), 6, 1, 8),
    (lambda: (ops.conv2d(1, 8, 9, 9, 20, 3, 3, padding=1), "conv2d"), 8, 1, 4),
    (lambda: (ops.dense(37, 45, 130, bias=True, activation="relu", residual=True), "matmul"), 6, 2, 8),
    (lambda: (ops.conv2d(2, 20, 7, 9, 27, 1, 1, bias=True, activation="relu", residual=True), "conv2d"), 4, 1, 8),
])
def test_compiled_tile_epilogues_match_the_reference(make, rows, vecs, lanes):
    """Compiled with Numba, over k blocks of 64 (the program runs on the last one only) and
    a single k block, with edge tiles on both sides; convs with swapped tiles where their
    space offers them (the three 3x3 'same' ones: stored transposed, one with no epilogue at
    all); and a dense layer and a batch-2 1x1 conv adding a shortcut block in registers."""
    op, stage = make()
    inputs = op.random_inputs(7)
    ref = op.reference(*inputs)
    for kc in (64, 512):
        kernel = build(op, avx2_cpu(), _micro(op, stage, rows, vecs, lanes, kc=kc, pn=2, transposed=True))
        calls = _full_tile_calls(kernel)
        assert calls and all(c.epilogue is not None for c in calls)
        swapped = kernel.config.get(f"{stage}.mk_transposed", False)
        assert all((c.transposed_out is not None) == swapped for c in calls)
        out = np.full_like(ref, np.nan)
        kernel(*inputs, out=out)
        assert_matches(op, out, ref, f"kc {kc}")


def _panels(rows, cols, kc, seed):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(kc * rows).astype(np.float32), rng.standard_normal(kc * cols).astype(np.float32))


@pytest.mark.parametrize("accumulate", [True, False, "runtime"])
def test_the_intrinsic_applies_the_program_only_when_asked(accumulate):
    from numba import njit
    program = (("add", "row", 0, 2), ("mul", "col", 1), ("rsub", "const", 1.5), ("max", "const", -0.25),
               ("min", "const", 3.0), ("sub", "col", 1))
    rows, vecs, lanes, kc, ldc = 3, 2, 8, 5, 20
    cols = vecs * lanes
    a, b = _panels(rows, cols, kc, 0)
    rowx = np.arange(10, dtype=np.float32) * 0.1
    colx = np.linspace(-1, 1, 40).astype(np.float32)
    flag = () if accumulate != "runtime" else (True,)
    for mk, apply in ((outer_product_kernel(rows, vecs, lanes, accumulate, epilogue=program), True),
                      (outer_product_kernel(rows, vecs, lanes, accumulate, epilogue=program), False)):
        @njit
        def call(c, apply):
            mk(a, 0, b, 0, c, 2, ldc, kc, *flag, apply, rowx, 1, colx, 3)
        c = np.full(4 * ldc, 0.5, np.float32)
        want = c.copy()
        python_outer_product(rows, vecs, lanes, accumulate, epilogue=program)(
            a, 0, b, 0, want, 2, ldc, kc, *flag, apply, rowx, 1, colx, 3)
        call(c, apply)
        np.testing.assert_allclose(c, want, rtol=1e-5, atol=1e-5)
        tile = (a.reshape(kc, rows).T.astype(np.float64) @ b.reshape(kc, cols)).astype(np.float32)
        plain = tile + (0.5 if accumulate is not False else 0.0)
        got = want.reshape(-1)[2:2 + rows * ldc].reshape(rows, ldc)[:, :cols]
        if apply:
            x = (plain + rowx[1 + 2 * np.arange(rows)][:, None]) * colx[3:3 + cols]
            x = np.minimum(np.maximum(1.5 - x, -0.25), 3.0) - colx[3:3 + cols]
            np.testing.assert_allclose(got, x, rtol=1e-5, atol=1e-5)
        else:
            np.testing.assert_allclose(got, plain, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rows,vecs,lanes,accumulate", [
    (7, 1, 16, "runtime"), (8, 2, 8, "runtime"), (3, 2, 8, True), (6, 1, 4, False), (1, 1, 8, "runtime"),
    (8, 1, 4, True),
])
def test_the_intrinsic_stores_a_finished_tile_transposed(rows, vecs, lanes, accumulate):
    """transposed_out: with `apply` the tile (plus C's old values when accumulating) goes
    through the program into D column by column, each column a run of D, touching nothing
    else of D or C; without it the tile goes to C as usual."""
    from numba import njit
    program = (("add", "col", 0), ("max", "const", 0.0), ("mul", "row", 1, 1))
    kc, ldc, ldd, d_off = 5, 40, 11, 2
    cols = vecs * lanes
    a, b = _panels(rows, cols, kc, rows * 10 + vecs)
    rng = np.random.default_rng(lanes)
    colx, rowx = rng.standard_normal(40).astype(np.float32), rng.standard_normal(12).astype(np.float32)
    mk = outer_product_kernel(rows, vecs, lanes, accumulate, epilogue=program, transposed_out=True)
    tile = (a.reshape(kc, rows).T.astype(np.float64) @ b.reshape(kc, cols)).astype(np.float32)
    for flag in ((True,), (False,)) if accumulate == "runtime" else ((),):
        for apply in (True, False):
            @njit
            def call(c, d):
                mk(a, 0, b, 0, c, 3, ldc, kc, *flag, apply, d, d_off, ldd, colx, 5, rowx, 2)
            c = rng.standard_normal(rows * ldc + 8).astype(np.float32)
            d = np.full(ldd * cols + 8, np.nan, np.float32)
            c0 = c.copy()
            call(c, d)
            old = np.stack([c0[3 + i * ldc:3 + i * ldc + cols] for i in range(rows)])
            value = tile + old if accumulate is True or (flag and flag[0]) else tile
            where = d_off + np.arange(rows)[:, None] + ldd * np.arange(cols)[None, :]
            if apply:
                want = np.maximum(value + colx[5:5 + cols], 0.0) * rowx[2:2 + rows][:, None]
                np.testing.assert_allclose(d[where], want, rtol=1e-5, atol=1e-5)
                untouched = np.ones(d.size, bool)
                untouched[where.ravel()] = False
                assert np.isnan(d[untouched]).all()
                np.testing.assert_array_equal(c, c0)
            else:
                assert np.isnan(d).all()
                got = np.stack([c[3 + i * ldc:3 + i * ldc + cols] for i in range(rows)])
                np.testing.assert_allclose(got, value, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("accumulate", [True, "runtime"])
def test_the_intrinsic_reads_a_shortcut_block_only_when_it_applies(accumulate):
    """A "tile" operand is read at its offset plus ld per tile row plus the column, on the
    call that applies the program; a call that does not apply it stores the plain values
    (a NaN shortcut must not reach them). Whether the loads are skipped there, rather than
    made and discarded, is not visible in the values: that is a speed matter."""
    from numba import njit
    program = (("add", "col", 0), ("add", "tile", 1, 19), ("max", "const", 0.0))
    rows, vecs, lanes, kc, ldc = 5, 2, 8, 6, 21
    cols = vecs * lanes
    a, b = _panels(rows, cols, kc, 3)
    colx = np.linspace(-1, 1, 24).astype(np.float32)
    skip = np.random.default_rng(1).standard_normal(4 + 19 * rows + cols).astype(np.float32)
    flag = () if accumulate != "runtime" else (True,)
    mk = outer_product_kernel(rows, vecs, lanes, accumulate, epilogue=program)

    @njit
    def call(c, apply, shortcut):
        mk(a, 0, b, 0, c, 1, ldc, kc, *flag, apply, colx, 2, shortcut, 4)
    tile = (a.reshape(kc, rows).T.astype(np.float64) @ b.reshape(kc, cols)).astype(np.float32)
    for apply in (True, False):
        c = np.full(rows * ldc + 2, 0.25, np.float32)
        want = c.copy()
        shortcut = skip if apply else np.full_like(skip, np.nan)
        python_outer_product(rows, vecs, lanes, accumulate, epilogue=program)(
            a, 0, b, 0, want, 1, ldc, kc, *flag, apply, colx, 2, shortcut, 4)
        call(c, apply, shortcut)
        np.testing.assert_allclose(c, want, rtol=1e-5, atol=1e-5)
        got = c[1:1 + rows * ldc].reshape(rows, ldc)[:, :cols]
        plain = tile + np.float32(0.25)
        if apply:
            block = np.stack([skip[4 + 19 * i:4 + 19 * i + cols] for i in range(rows)])
            np.testing.assert_allclose(got, np.maximum(plain + colx[2:2 + cols] + block, 0), rtol=1e-5, atol=1e-5)
        else:
            np.testing.assert_allclose(got, plain, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bad", [(("add", "row", 0),), (("pow", "const", 2.0),), (("add", "col", 1),),
                                 (("add", "const", 1),), (("add", "tile", 0),), (("add", "tile", 0, -3),)])
def test_malformed_programs_are_refused(bad):
    with pytest.raises(ValueError):
        check_tile_epilogue(bad)


def test_the_option_keeps_the_block_pass(monkeypatch):
    op = ops.dense(20, 40, 30, bias=True, activation="relu")
    cfg = _micro(op, "matmul")
    monkeypatch.setenv("AUTOSCHED_TILE_EPILOGUE", "0")
    kernel = build(op, avx2_cpu(), cfg, jit=False)
    assert all(c.epilogue is None for c in _full_tile_calls(kernel))
    inputs = op.random_inputs(3)
    assert_matches(op, kernel(*inputs), op.reference(*inputs))
    monkeypatch.setenv("AUTOSCHED_TILE_EPILOGUE", "1")
    assert all(c.epilogue for c in _full_tile_calls(build(op, avx2_cpu(), cfg, jit=False)))


@pytest.mark.parametrize("suite", ["bert-residual.yaml", "resnet50-bottleneck-residual.yaml"])
def test_the_shipped_residual_suites_add_their_shortcut_in_registers(suite):
    """At their default schedules, every full tile of these suites' layers reads the shortcut
    as a block, so the benchmark times the in-register path it reports."""
    from pathlib import Path

    from tuner.commands import make_operator, read_suite
    entries, _ = read_suite(str(Path(__file__).resolve().parent.parent / "benchmarks" / "suites" / suite))
    assert entries
    for name, params, _ in entries:
        op = make_operator(name, params)
        calls = _full_tile_calls(build(op, avx2_cpu(), op.space(avx2_cpu()).default(), jit=False))
        assert calls and all(any(step[1] == "tile" for step in c.epilogue) for c in calls), op.name


def test_run_steps_of_flattened_groups():
    """A group is one evenly strided run only when each outer axis steps over the whole of the
    inner ones: (y, x) of an H x W plane at stride 1, not with a gap or transposed."""
    from schedules.expr import Var
    from schedules.tile_epilogue import _run_step
    axes = (Var("y", 3), Var("x", 4))
    assert _run_step([4, 1], axes, (0, 1)) == 1
    assert _run_step([8, 2], axes, (0, 1)) == 2
    assert _run_step([0, 0], axes, (0, 1)) == 0  # broadcast along the group
    assert _run_step([5, 1], axes, (0, 1)) is None  # a gap between rows
    assert _run_step([1, 3], axes, (0, 1)) is None  # transposed
    assert _run_step([], axes, ()) is None
