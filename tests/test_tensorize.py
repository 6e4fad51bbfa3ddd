"""Tensorized contractions: detection, and the micro-kernel schedule against the reference for
every knob value (tile shapes, vector widths, cache blocks, parallel parts), remainders included."""
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from codegen import build
from helpers import assert_matches, avx2_cpu
from schedules import lower, ops, te
from schedules.contraction import expand_inlined, find_contraction
from schedules.errors import ScheduleError
from schedules.loopnest import For, If, MicroKernel
from schedules.schedule import Schedule
from schedules.sketch import (DEEP_KC_FROM, MICRO_KC, MICRO_KC_DEEP, MICRO_MC, MICRO_NC, MICRO_PARTS,
                              MICRO_ROWS, MICRO_VECS)

RELAXED = dict(deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


def _contraction(op, stage):
    sch = Schedule(op, avx2_cpu())
    for s in sch.stage_list:
        if not s.is_reduction and not op.is_output(s.tensor):
            s.compute_inline()
    st_ = sch[stage]
    return st_, find_contraction(st_.axis, st_.reduce_axis, expand_inlined(sch, st_), st_.tensor.dtype)


def test_contractions_are_found_with_their_row_and_column_axes():
    _, con = _contraction(ops.matmul(8, 16, 4), "matmul")
    assert (con.batch, con.m, con.n) == ((), (0,), (1,))
    _, con = _contraction(ops.dense(8, 16, 4, activation="gelu"), "matmul")
    assert (con.batch, con.m, con.n) == ((), (0,), (1,))
    _, con = _contraction(ops.batch_matmul(3, 8, 16, 4), "batch_matmul")
    assert (con.batch, con.m, con.n) == ((0,), (1,), (2,))
    # NCHW at batch 1: filters are rows, output pixels columns.
    _, con = _contraction(ops.conv2d(1, 4, 6, 6, 8, 3, 3, padding=1), "conv2d")
    assert (con.unit, con.m, con.n) == ((0,), (1,), (2, 3))
    # NHWC: pixels (of every image) are rows, filters columns.
    _, con = _contraction(ops.conv2d(2, 4, 6, 6, 8, 3, 3, layout="NHWC"), "conv2d")
    assert (con.m, con.n) == ((0, 1, 2), (3,))
    # NCHW batches: the images are a batch axis that only the pixels read, the same filters
    # for each.
    _, con = _contraction(ops.conv2d(2, 4, 6, 6, 8, 3, 3, padding=1), "conv2d")
    assert (con.batch, con.m, con.n) == ((0,), (1,), (2, 3))
    _, con = _contraction(ops.conv2d(3, 4, 6, 6, 8, 1, 1, bias=True, activation="relu"), "conv2d")
    assert (con.batch, con.m, con.n) == ((0,), (1,), (2, 3))


def test_non_contractions_are_not_tensorized():
    assert _contraction(ops.depthwise_conv2d(1, 4, 6, 6, 3, 3), "depthwise_conv2d")[1] is None
    # A batch of depthwise convs: images and channels are batch axes, and no axis is a column.
    assert _contraction(ops.depthwise_conv2d(2, 4, 6, 6, 3, 3), "depthwise_conv2d")[1] is None
    # Only the leading axis may be a batch axis that one operand ignores: here two axes lead
    # that B alone reads, before A's rows.
    A = te.placeholder((4, 5), "float32", name="A")
    B = te.placeholder((2, 3, 6, 5), "float32", name="B")
    k = te.reduce_axis(5, "k")
    two = te.compute((2, 3, 4, 6), lambda b, c, i, j: te.sum(A[i, k] * B[b, c, j, k], axis=k), name="C")
    assert _contraction(te.operator("two_leading", [A, B], [two]), "C")[1] is None
    sm = ops.softmax(4, 16)
    for s in sm.stages:
        if s.reduce_axes:
            assert _contraction(sm, s.name)[1] is None
    A = te.placeholder((8, 8), "float32", name="A")
    k = te.reduce_axis(8, "k")
    rowmax = te.compute((8, 8), lambda i, j: te.max(A[i, k] * A[k, j], axis=k), name="C")
    assert _contraction(te.operator("maxplus", [A], [rowmax]), "C")[1] is None
    assert "matmul.kernel" not in {k.name for k in ops.softmax(4, 16).space(avx2_cpu()).knobs}


def _micro(op, stage, rows, vecs, lanes, mc, kc, nc, pm, pn, order="nk", transposed=False, in_place=False):
    """The micro-kernel config with these knobs; `transposed` applies where the space has
    that choice (rows that fill vectors better than the columns), `in_place` where it offers
    B read in place (a B that changes with the batch)."""
    space = op.space(avx2_cpu())
    names = {k.name for k in space.knobs}
    swap = {f"{stage}.mk_transposed": transposed} if f"{stage}.mk_transposed" in names else {}
    if f"{stage}.mk_b_in_place" in names:
        swap[f"{stage}.mk_b_in_place"] = in_place
    return space.default().replace(**{f"{stage}.kernel": "micro", f"{stage}.mk_rows": rows, f"{stage}.mk_vecs": vecs,
                                      f"{stage}.mk_order": order,
                                      f"{stage}.mk_lanes": lanes, f"{stage}.mc": mc, f"{stage}.kc": kc,
                                      f"{stage}.nc": nc, f"{stage}.parts_m": pm, f"{stage}.parts_n": pn}, **swap)


knob_values = st.tuples(st.sampled_from(MICRO_ROWS), st.sampled_from(MICRO_VECS), st.sampled_from((8, 4)),
                        st.sampled_from(MICRO_MC), st.sampled_from(MICRO_KC), st.sampled_from(MICRO_NC),
                        st.sampled_from(MICRO_PARTS), st.sampled_from(MICRO_PARTS), st.sampled_from(("nk", "kn")),
                        st.booleans(), st.booleans())


def _ops(draw):
    kind = draw(st.sampled_from(["matmul", "dense", "batch_matmul", "conv_nchw", "conv_nhwc", "user"]))
    d = lambda lo, hi: draw(st.integers(lo, hi))  # noqa: E731
    # Depths around the smallest kc (64) so several k blocks, and their last one, get checked.
    depth = lambda: draw(st.sampled_from([1, 7, 64, 65, 129, 200]))  # noqa: E731
    if kind == "matmul":
        return ops.matmul(d(1, 30), d(1, 40), depth()), "matmul"
    if kind == "dense":
        act = draw(st.sampled_from([None, "relu", "gelu"]))
        return ops.dense(d(1, 20), d(1, 40), depth(), bias=draw(st.booleans()), activation=act), "matmul"
    if kind == "batch_matmul":  # N a multiple of 32 too, where every tile's columns are whole (B in place)
        return ops.batch_matmul(d(1, 3), d(1, 14), draw(st.sampled_from([d(1, 30), 32, 48, 64])), depth()), \
            "batch_matmul"
    if kind == "conv_nchw":
        size = draw(st.sampled_from([1, 3]))
        return ops.conv2d(d(1, 3), d(1, 9), d(3, 8), d(3, 8), d(1, 9), size, size, stride=d(1, 2),
                          padding=d(0, 1), bias=True, activation="relu"), "conv2d"
    if kind == "conv_nhwc":
        return ops.conv2d(d(1, 2), d(1, 5), d(3, 7), d(3, 7), d(1, 20), 2, 3, padding=1,
                          layout="NHWC"), "conv2d"
    # A user operator: both operands transposed, and two outputs (the sum and an epilogue).
    M, N, K = d(1, 20), d(1, 30), depth()
    A = te.placeholder((K, M), "float32", name="At")
    B = te.placeholder((N, K), "float32", name="Bt")
    k = te.reduce_axis(K, "k")
    C = te.compute((M, N), lambda i, j: te.sum(A[k, i] * B[j, k], axis=k), name="C")
    Y = te.compute((M, N), lambda i, j: te.tanh(C[i, j]) * 2.0, name="Y")
    return te.operator("tt_matmul_tanh", inputs=[A, B], outputs=[C, Y]), "C"


@settings(max_examples=100, **RELAXED)
@given(data=st.data(), knobs=knob_values)
def test_every_micro_kernel_knob_value_matches_the_reference(data, knobs):
    """Interpreted: the exact generated source, run without a compile, so many configs fit."""
    op, stage = _ops(data.draw)
    assume(f"{stage}.mk_rows" in {k.name for k in op.space(avx2_cpu()).knobs})  # M or N of 1: no tile
    cfg = _micro(op, stage, *knobs)
    inputs = op.random_inputs(3)
    kernel = build(op, avx2_cpu(), cfg, jit=False)
    assert any(isinstance(s, MicroKernel) for s in _walk(kernel.loopnest.body))
    assert_matches(op, kernel(*inputs), op.reference(*inputs), f"with config {cfg.to_json()}")


def _walk(stmts):
    for s in stmts:
        yield s
        if isinstance(s, (For, If)):
            yield from _walk(s.body)


@pytest.mark.parametrize("rows,vecs,lanes,order", [(6, 2, 8, "nk"), (4, 3, 4, "kn"), (8, 1, 8, "kn")])
def test_compiled_micro_kernels_match_the_reference(rows, vecs, lanes, order):
    """Compiled with Numba; runtime knobs (blocks, parts) change without a recompile."""
    op = ops.dense(37, 45, 70, bias=True, activation="gelu")
    inputs = op.random_inputs(4)
    ref = op.reference(*inputs)
    sources = set()
    for mc, kc, nc, pm, pn in [(24, 64, 256, 1, 1), (48, 64, 256, 2, 2), (96, 512, 4096, 16, 1),
                               (24, 128, 512, 1, 16)]:
        kernel = build(op, avx2_cpu(), _micro(op, "matmul", rows, vecs, lanes, mc, kc, nc, pm, pn, order))
        sources.add(kernel.source)
        assert_matches(op, kernel(*inputs), ref, f"tile {rows}x{vecs}x{lanes}, blocks {mc, kc, nc}, parts {pm, pn}")
    assert len(sources) == 1


def test_default_matmul_schedule_is_the_micro_kernel_and_the_tiled_one_remains():
    op = ops.matmul(64, 64, 64)
    cfg = op.space(avx2_cpu()).default()
    assert cfg["matmul.kernel"] == "micro"
    assert "microkernel" in lower(op.space(avx2_cpu()).apply(cfg)).dump()
    tiled = lower(op.space(avx2_cpu()).apply(cfg.replace(**{"matmul.kernel": "tiled"}))).dump()
    assert "microkernel" not in tiled
    # Too narrow for a vector tile: the default stays on the tiled loops.
    assert ops.matmul(64, 3, 64).space(avx2_cpu()).default()["matmul.kernel"] == "tiled"


def test_tensorize_on_a_non_contraction_names_the_stage():
    op = ops.softmax(4, 16)
    red = next(s for s in op.stages if s.reduce_axes)
    sch = Schedule(op, avx2_cpu())
    for s in sch.stage_list:
        if not s.is_reduction and not op.is_output(s.tensor):
            s.compute_inline()
    sch[red].tensorize(6, 2, 8)
    with pytest.raises(ScheduleError, match=f"tensorize on stage {red.name}"):
        lower(sch)
    with pytest.raises(ScheduleError, match="lanes must be 4, 8 or 16"):
        sch[red].tensorize(6, 2, 5)
    with pytest.raises(ScheduleError, match="mc must be a positive int"):
        sch[red].tensorize(6, 2, 8, mc=0)


def _check_both_ways(op, config, seed, source_check, what):
    """Build interpreted and compiled; check each source with source_check and the results
    against the reference."""
    inputs = op.random_inputs(seed)
    ref = op.reference(*inputs)
    for jit in (False, True):
        kernel = build(op, avx2_cpu(), config, jit=jit)
        assert source_check(kernel.source), f"{what}, jit={jit}"
        assert_matches(op, kernel(*inputs), ref, f"{what}, jit={jit}")


@pytest.mark.parametrize("stride,padding,vecs,lanes", [(1, 1, 1, 4), (1, 0, 2, 4), (1, 1, 1, 8), (2, 1, 1, 4)])
def test_conv_panels_within_an_output_row_pack_by_vector_copy(stride, padding, vecs, lanes):
    # Output rows of 9-20 pixels against panels of 4-8: some panels stay inside one row (the
    # fast path, a vector copy: every other value at stride 2), others cross into the next
    # row or are ragged.
    op = ops.conv2d(1, 3, 5, 20, 7, 3, 3, stride=stride, padding=padding, bias=True, activation="relu")
    config = _micro(op, "conv2d", 4, vecs, lanes, 24, 64, 256, 1, 2)
    copy = f"vcopy_{vecs * lanes}_s2(" if stride == 2 else f"vcopy_{vecs * lanes}("
    _check_both_ways(op, config, 3, lambda src: copy in src, f"stride {stride}, panel {vecs}x{lanes}")


@pytest.mark.parametrize("width,vecs,lanes,stride", [(5, 2, 8, 1), (7, 3, 8, 1), (20, 2, 8, 1), (9, 2, 8, 2),
                                                       (20, 2, 8, 2), (7, 3, 4, 3)])
def test_conv_panels_across_output_rows_copy_runs_within_rows(width, vecs, lanes, stride):
    # Panels of 16-24 pixels over output rows of 5-20: whole panels cross rows (all of them
    # when rows are narrower than a panel). Each run within a row is one masked vector copy,
    # of every other value at stride 2; no table of lane positions is made.
    op = ops.conv2d(1, 4, 6 * stride, width * stride, 5, 3, 3, stride=stride, padding=1, bias=True,
                    activation="relu")
    config = _micro(op, "conv2d", 4, vecs, lanes, 24, 64, 256, 1, 2)
    out_width = (width * stride + 2 - 3) // stride + 1
    runs = f"vcopy_{min(vecs * lanes, out_width)}" + (f"_s{stride}" if stride > 1 else "") + "_m("
    _check_both_ways(op, config, 4, lambda src: runs in src and "_lanes = np.empty" not in src,
                     f"width {width}, panel {vecs}x{lanes}")


def _innermost_loop_of(source: str, marker: str) -> list:
    """The lines of the innermost `for` loop around each line containing marker."""
    lines = source.splitlines()
    loops = []
    for n, line in enumerate(lines):
        if marker in line:
            start = max(k for k in range(n) if lines[k].lstrip().startswith("for "))
            loops.append(lines[start:n + 1])
    return loops


def _enclosing_loops(lines: list, n: int) -> list:
    """The `for` lines enclosing line n of Python source, innermost first."""
    out, indent = [], len(lines[n]) - len(lines[n].lstrip())
    for line in reversed(lines[:n]):
        here = len(line) - len(line.lstrip())
        if line.strip() and here < indent:
            indent = here
            if line.lstrip().startswith("for "):
                out.append(line.strip())
    return out


@pytest.mark.parametrize("width", [5, 12, 20])
def test_conv_epilogues_step_along_output_rows_after_the_block(width):
    # Flattened output columns (oh, ow): an epilogue the tile cannot apply in registers (a
    # gelu) decodes (oh, ow) once per run within an output row, not with a div and a mod per
    # point (which kept it scalar), and it runs after the block's micro-kernel calls, not
    # between them.
    op = ops.conv2d(1, 4, 6, width, 13, 3, 3, padding=1, bias=True, activation="gelu")
    config = _micro(op, "conv2d", 4, 2, 8, 24, 64, 256, 1, 2)
    kernel = build(op, avx2_cpu(), config, jit=False)
    stores = _innermost_loop_of(kernel.source, "epilogue[np.uint64(conv2d_n), np.uint64(conv2d_k")
    assert stores
    for loop in stores:
        assert not any("%" in line or "//" in line for line in loop[1:]), "\n".join(loop)
    lines = kernel.source.splitlines()
    finals = [n for n, line in enumerate(lines)
              if line.lstrip().startswith("epilogue[") and line.rstrip().endswith("= epilogue_v")]
    assert finals
    for n in finals:
        assert "for conv2d_ib" in " ".join(_enclosing_loops(lines, n))
        assert "for conv2d_jp" not in " ".join(_enclosing_loops(lines, n)), "epilogue inside the tile loop"
    inputs = op.random_inputs(6)
    assert_matches(op, kernel(*inputs), op.reference(*inputs), f"width {width}")


@pytest.mark.parametrize("rows,vecs,lanes", [(8, 1, 8), (4, 2, 8), (8, 3, 8)])
def test_dense_panels_pack_by_register_transposes(rows, vecs, lanes):
    # W is (N, K): its panels are rows contiguous along k, packed 8x8 at a time; K = 37 leaves
    # a k tail (and a second k block at kc 64 would too), N and M leave ragged panels.
    op = ops.dense(19, 45, 37, bias=True, activation="gelu")
    config = _micro(op, "matmul", rows, vecs, lanes, 24, 64, 256, 1, 2)
    _check_both_ways(op, config, 4, lambda src: "vcopy_t" in src, f"tile {rows}x{vecs}x{lanes}")


@pytest.mark.parametrize("channels,size,kc", [(3, 3, 64), (9, 3, 64), (5, 1, 64), (16, 3, 128)])
def test_conv_weight_panels_pack_by_register_transposes(channels, size, kc):
    # Conv NCHW's W[k, c, r, s] is contiguous along the flattened reduce axes (c, r, s), so its
    # 8-row panels are transposed 8x8 at a time like dense's; depths of 27, 81, 5 and 144
    # leave k tails and, at kc 64, k blocks that start inside a (c, r, s) row.
    op = ops.conv2d(1, channels, 6, 7, 19, size, size, padding=size // 2, bias=True, activation="relu")
    config = _micro(op, "conv2d", 8, 1, 8, 24, kc, 256, 2, 1)
    _check_both_ways(op, config, 7, lambda src: "vcopy_t" in src, f"C={channels} {size}x{size} kc={kc}")


def test_rows_that_fill_vectors_better_than_columns_offer_the_transposed_kernel():
    # 49 pixels fill 7 of 8 lanes in their last vector; 32 filters fill every lane.
    small = ops.conv2d(1, 16, 7, 7, 32, 3, 3, padding=1, bias=True, activation="relu")
    space = small.space(avx2_cpu())
    assert space.default()["conv2d.mk_transposed"] is True
    st_, con = _contraction(small, "conv2d")
    swapped = con.swapped()
    assert (swapped.m, swapped.n, swapped.a, swapped.b) == (con.n, con.m, con.b, con.a)
    # Columns that fill whole vectors keep the space (and its version) as it was, unless
    # they are a conv's sliding window of pixels (below).
    for op in (ops.matmul(64, 64, 64), ops.conv2d(1, 16, 8, 8, 20, 1, 1)):
        assert not any(k.name.endswith("mk_transposed") for k in op.space(avx2_cpu()).knobs)


@pytest.mark.parametrize("make,offered", [
    (lambda: ops.conv2d(1, 16, 8, 8, 24, 3, 3, padding=1, bias=True, activation="relu"), True),
    (lambda: ops.conv2d(1, 16, 10, 10, 24, 3, 3, dilation=2, bias=True), True),
    (lambda: ops.conv2d(1, 16, 8, 8, 24, 1, 3, padding=(0, 1)), True),
    (lambda: ops.conv2d(1, 16, 16, 16, 24, 3, 3, stride=2, padding=1), True),
    (lambda: ops.conv2d(1, 3, 23, 23, 16, 7, 7, stride=2, padding=3, bias=True, activation="relu"), True),
    (lambda: ops.conv2d(1, 16, 8, 8, 24, 1, 1, bias=True), False),
    (lambda: ops.conv2d(1, 16, 15, 15, 24, 1, 1, stride=2), False),
])
def test_windows_offer_lanes_along_the_filters_by_default(make, offered):
    """64 pixels fill 8-lane vectors as well as 24 filters do; a window's pixels, at any
    stride, are still worth putting on the rows, where they are read unpacked instead of
    copied once per tap or gathered strided. 1x1 convs, whose pixels are no window, keep
    their spaces."""
    space = make().space(avx2_cpu())
    assert ("conv2d.mk_transposed" in {k.name for k in space.knobs}) == offered
    if offered:
        assert space.default()["conv2d.mk_transposed"] is True


@pytest.mark.parametrize("make,stage", [
    (lambda: ops.conv2d(1, 16, 7, 7, 40, 3, 3, padding=1, bias=True, activation="relu"), "conv2d"),
    (lambda: ops.conv2d(3, 16, 7, 7, 40, 3, 3, padding=1, bias=True, activation="relu"), "conv2d"),
    (lambda: ops.dense(37, 9, 70, bias=True, activation="gelu"), "matmul"),
])
def test_compiled_transposed_micro_kernels_match_the_reference(make, stage):
    """The tile accumulates in a (rows, columns)-swapped scratch, and the epilogue writes the
    stage's layout from it; bound weights are packed on the other side."""
    op = make()
    cfg = _micro(op, stage, 6, 2, 8, 24, 64, 256, 2, 1, "kn", True)
    kernel = build(op, avx2_cpu(), cfg)
    tiles = [s for s in _walk(kernel.loopnest.body) if isinstance(s, MicroKernel)]
    # Whole tiles go to the swapped scratch, ragged ones through the local tile buffer.
    assert {s.c.name.split("_")[-1] for s in tiles} == {"t", "ctile"}
    assert all(s.c.role == "temp" for s in tiles if s.c.name.endswith("acc_t"))
    inputs = op.random_inputs(6)
    ref = op.reference(*inputs)
    assert_matches(op, kernel(*inputs), ref, "transposed")
    constant = build(op, avx2_cpu(), cfg, constants=("weight",))
    names = [t.name for t in op.inputs]
    bound = constant.bind(weight=inputs[names.index("weight")])
    assert_matches(op, bound(*(a for n, a in zip(names, inputs) if n != "weight")), ref, "transposed, bound")


def _direct_conv(draw):
    """A conv whose filters fill 8-lane vectors better than its pixels: the transposed plan,
    which reads pixels unpacked from the (padded) input."""
    d = lambda lo, hi: draw(st.integers(lo, hi))  # noqa: E731
    size = draw(st.sampled_from([1, 2, 3]))
    return ops.conv2d(d(1, 2), draw(st.sampled_from([1, 3, 8, 17])), d(5, 9), d(5, 9), draw(st.sampled_from([8, 16, 24])),
                      size, size,
                      stride=d(1, 2), padding=d(0, 1), dilation=d(1, 2), bias=draw(st.booleans()),
                      activation=draw(st.sampled_from([None, "relu"])))


@settings(max_examples=60, **RELAXED)
@given(data=st.data(), knobs=knob_values)
def test_transposed_convs_read_pixels_unpacked_and_match_the_reference(data, knobs):
    """Interpreted: tap offsets tabled per part and pixel offsets per tile, for every tile
    shape, k block (tables read from a k block's start), edge tile and parallel split."""
    op = _direct_conv(data.draw)
    assume("conv2d.mk_transposed" in {k.name for k in op.space(avx2_cpu()).knobs})
    cfg = _micro(op, "conv2d", *knobs[:-2], True)
    inputs = op.random_inputs(5)
    kernel = build(op, avx2_cpu(), cfg, jit=False)
    tiles = [s for s in _walk(kernel.loopnest.body) if isinstance(s, MicroKernel)]
    assert tiles and all(s.direct and s.a.name in ("data", "data_pad") for s in tiles)
    assert "_apack" not in kernel.source
    assert_matches(op, kernel(*inputs), op.reference(*inputs), f"with config {cfg.to_json()}")


@settings(max_examples=60, **RELAXED)
@given(data=st.data(), knobs=knob_values)
def test_tiles_skip_the_row_taps_that_read_padding(data, knobs):
    """Interpreted, weights bound: a swapped tile runs only the k range of the row taps that
    read an image row for one of its pixels (the row tap leads the reduction), across k
    blocks, edge tiles and both epilogue paths; scratch starts as NaN, so a tile that skipped
    its first taps and then added to its scratch shows up."""
    op = _direct_conv(data.draw)
    assume("conv2d.mk_transposed" in {k.name for k in op.space(avx2_cpu()).knobs})
    cfg = _micro(op, "conv2d", *knobs[:-2], True)
    inputs = op.random_inputs(6)
    kernel = build(op, avx2_cpu(), cfg, jit=False, constants=("weight",))
    assert "conv2d_k_lo" not in kernel.source or "data_pad" in kernel.source
    assert_matches(op, kernel(*inputs), op.reference(*inputs), f"with config {cfg.to_json()}")


@pytest.mark.parametrize("channels,kc", [(16, 512), (16, 64), (32, 64)])
def test_border_tiles_run_fewer_taps(monkeypatch, channels, kc):
    """7x7 conv at 7-row tiles (one output row each): the top and bottom rows skip the row
    tap that reads padding, a third of the reduction, block by block; a block holding none
    of a tile's taps is skipped unless it is the last (which finishes the tile). With 32
    channels the top row's taps start past the first 64-wide block, so its first call must
    overwrite its scratch, not add to it (scratch starts as NaN here)."""
    import codegen.interpret as interpret
    calls = []
    plain = interpret.python_outer_product

    def recording(rows, vecs, lanes, accumulate, direct=False, **options):
        kernel = plain(rows, vecs, lanes, accumulate, direct, **options)

        def run(*args):
            calls.append((args[4], args[10]))  # a direct call's first k and k count
            return kernel(*args)
        return run
    monkeypatch.setattr(interpret, "python_outer_product", recording)
    op = ops.conv2d(1, channels, 7, 7, 16, 3, 3, padding=1, bias=True, activation="relu")
    cfg = _micro(op, "conv2d", 7, 1, 8, 24, kc, 256, 1, 1, "kn", True)
    kernel = build(op, avx2_cpu(), cfg, jit=False, constants=("weight", "bias"))
    inputs = op.random_inputs(1)
    assert_matches(op, kernel(*inputs), op.reference(*inputs))
    depth, per_tap = channels * 9, channels * 3
    want = []
    for lo, hi in [(per_tap, depth)] + [(0, depth)] * 5 + [(0, 2 * per_tap)]:  # output rows 0..6
        for p0 in range(0, depth, kc):
            start, end = max(p0, lo), min(p0 + kc, depth, hi)
            if end > start or p0 + kc >= depth:
                want.append((start, max(0, end - start)))
    assert sorted(calls) == sorted(want * 2)  # 2 column panels of 8 filters


@pytest.mark.parametrize("size,skips", [(14, True), (40, False)])
def test_taps_are_skipped_where_padding_is_a_real_share_of_them(size, skips):
    """14 output rows of a 3x3 conv read padding in 2 of 42 (row, tap) pairs (4.8%): skipped;
    40 rows in 2 of 120 (1.7%): the reduction keeps its order, channels outermost."""
    op = ops.conv2d(1, 8, size, size, 16, 3, 3, padding=1, bias=True, activation="relu")
    cfg = _micro(op, "conv2d", 8, 1, 8, 24, 64, 256, 1, 1, "kn", True)
    source = build(op, avx2_cpu(), cfg, jit=False, constants=("weight", "bias")).source
    assert ("conv2d_k_lo" in source) is skips


@pytest.mark.parametrize("rows,kc", [(7, 64), (8, 512)])
def test_compiled_tiles_skipping_padding_taps_match_the_reference(rows, kc):
    """Compiled: 7-row tiles (one output row each) over several k blocks, and 8-row tiles that
    cross output rows, skipping the union of their rows' padding taps, in one block."""
    op = ops.conv2d(1, 24, 7, 7, 24, 3, 3, padding=1, bias=True, activation="relu")
    cfg = _micro(op, "conv2d", rows, 1, 8, 24, kc, 256, 2, 1, "kn", True)
    kernel = build(op, avx2_cpu(), cfg, constants=("weight", "bias"))
    assert "conv2d_k_lo" in kernel.source
    inputs = op.random_inputs(4)
    reference = op.reference(*inputs)
    out = np.full_like(reference, np.nan)
    kernel(*inputs, out=out)
    assert_matches(op, out, reference)


def test_tiles_whose_taps_all_read_padding_finish_with_the_epilogue_alone():
    """A padded 1x1 conv: the output's border rows read only padding, so their tiles skip
    every block but the last, which runs no tap, overwrites the NaN-filled scratch tile with
    zeros and applies the bias."""
    op = ops.conv2d(1, 80, 5, 5, 16, 1, 1, padding=1, bias=True)
    cfg = _micro(op, "conv2d", 7, 1, 8, 24, 64, 256, 1, 1, "kn", True)
    kernel = build(op, avx2_cpu(), cfg, jit=False, constants=("weight", "bias"))
    assert "conv2d_k_lo" in kernel.source
    inputs = op.random_inputs(2)
    assert_matches(op, kernel(*inputs), op.reference(*inputs))


@pytest.mark.parametrize("size,stride,padding,rows", [(7, 1, 1, 8), (11, 2, 0, 6), (9, 1, 0, 4), (7, 1, 1, 7)])
def test_compiled_unpacked_pixels_match_the_reference(size, stride, padding, rows):
    # 7x7 and 5x5 outputs against 4-8 row tiles: tiles cross output rows and end ragged.
    op = ops.conv2d(1, 5, size, size, 16, 3, 3, stride=stride, padding=padding, bias=True, activation="relu")
    cfg = _micro(op, "conv2d", rows, 2, 8, 24, 64, 256, 2, 1, "nk", True)
    _check_both_ways(op, cfg, 8, lambda src: "_direct(" in src and "ktab" in src, f"stride {stride}")


def test_packing_stays_where_the_rows_operand_is_a_bound_weight_or_not_affine():
    from schedules.expr import Binary, Const, Load, Var
    from schedules.loopnest import Buffer
    from schedules.direct_reads import direct_offsets as _direct_offsets
    # Swapped dense: the rows are the weight's, packed once at bind time instead.
    op = ops.dense(37, 9, 70, bias=True)
    cfg = _micro(op, "matmul", 6, 2, 8, 24, 64, 256, 2, 1, "kn", True)
    tiles = [s for s in _walk(build(op, avx2_cpu(), cfg, jit=False, constants=("weight",)).loopnest.body)
             if isinstance(s, MicroKernel)]
    assert tiles and not any(s.direct for s in tiles)
    # A load whose address is not affine in a row axis cannot be tabled.
    i, k = Var("i", 8, "axis"), Var("k", 4, "reduce")
    buf = Buffer("x", (8, 4), "float32", "global", "input")
    wrapped = Load(buf, (Binary("mod", Binary("add", i, Const(1, "int64")), Const(8, "int64")), k))
    assert _direct_offsets(wrapped, [i], (0,), [k]) is None
    row, tap = _direct_offsets(Load(buf, (i, k)), [i], (0,), [k])
    assert (str(row), str(tap)) != ("", "")


@pytest.mark.parametrize("size,offered", [(7, True), (14, True), (8, False), (28, False)])
def test_pixels_in_rows_of_seven_may_tile_seven_rows(size, offered):
    # 49 or 196 pixels split into whole 7-row tiles; 8 rows would leave a ragged tile.
    op = ops.conv2d(1, 16, size, size, 32, 3, 3, padding=1, bias=True, activation="relu")
    space = op.space(avx2_cpu())
    assert (7 in space["conv2d.mk_rows"].choices) == offered
    assert (space.default()["conv2d.mk_rows"] == 7) == offered


@pytest.mark.parametrize("depth,deep", [(DEEP_KC_FROM - 1, False), (DEEP_KC_FROM, True), (3072, True)])
def test_deep_k_blocks_are_offered_only_for_long_reductions(depth, deep):
    op = ops.dense(9, 20, depth, bias=True, activation="relu")
    choices = op.space(avx2_cpu())["matmul.kc"].choices
    assert set(MICRO_KC) <= set(choices)
    assert bool(set(MICRO_KC_DEEP) & set(choices)) == deep
    inputs = op.random_inputs(8)
    ref = op.reference(*inputs)
    for kc in [c for c in choices if c >= 512]:
        cfg = _micro(op, "matmul", 4, 2, 8, 24, kc, 256, 1, 2)
        assert_matches(op, build(op, avx2_cpu(), cfg, jit=False)(*inputs), ref, f"kc {kc}")


@pytest.mark.parametrize("width,transposed,parts_m,split", [
    (30, True, 2, "rows"), (13, True, 4, "rows"), (30, True, 1, "channels"), (30, False, 2, "channels")])
def test_a_conv_reading_pixels_unpacked_pads_its_input_split_as_its_tiles_split_pixels(width, transposed,
                                                                                       parts_m, split):
    """Swapped conv tiles read their pixels unpacked from the padded copy. Where they split the
    pixels between threads (parts_m 2 or more), the copy is split over its 9 padded image rows,
    however narrow; where they split filters (parts_m 1), and for packed pixels, over the 6
    channels. parts_m is a runtime knob: one compiled kernel makes the choice at run time.
    Either way every margin is filled (the interpreter starts scratch as NaN)."""
    op = ops.conv2d(1, 6, 7, width, 16, 3, 3, padding=1, bias=True, activation="relu")
    config = _micro(op, "conv2d", 4, 1, 8, 24, 64, 256, parts_m, 1, transposed=transposed)
    assert config["conv2d.mk_transposed"] is transposed
    kernel = build(op, avx2_cpu(), config, jit=False)
    pad_step = next(k for k, (_, e) in enumerate(kernel.steps) if e is not None)
    assert kernel.steps[pad_step][1] == {"rows": 9, "channels": 6}[split]
    other = build(op, avx2_cpu(), config.replace(**{"conv2d.parts_m": 3 - min(parts_m, 2)}), jit=False)
    assert other.source == kernel.source
    if transposed:
        assert other.steps[pad_step][1] == {"rows": 6, "channels": 9}[split]
    inputs = op.random_inputs(3)
    assert_matches(op, kernel(*inputs), op.reference(*inputs))
    assert_matches(op, other(*inputs), op.reference(*inputs))


def test_batch_matmuls_read_b_in_place_where_every_tile_is_whole():
    """mk_b_in_place: a per-batch B that is row-major along the columns is read where it lies
    (the micro-kernel's ldb = B's row length, no B panel packed); where the columns do not
    split into whole tiles it is packed as before. Compiled, both match the reference."""
    for N, vecs, expect in ((64, 2, True), (40, 2, False)):
        op = ops.batch_matmul(3, 13, N, 70)
        cfg = _micro(op, "batch_matmul", 6, vecs, 8, 24, 64, 256, 2, 2, "kn", in_place=True)
        kernel = build(op, avx2_cpu(), cfg)
        calls = [s for s in _walk(kernel.loopnest.body) if isinstance(s, MicroKernel)]
        assert calls and all((c.ldb is not None) == expect for c in calls), N
        if expect:
            assert all(c.b.name == "B" and c.ldb.value == N for c in calls)
            assert "bpack" not in kernel.loopnest.dump()
        inputs = op.random_inputs(8)
        assert_matches(op, kernel(*inputs), op.reference(*inputs), f"N {N}")
    # No knob where B is the same for every batch (weights), read transposed (Q @ K^T as
    # q[n, i, k] * k[n, j, k]), or N fits no tile width.
    q = te.placeholder((2, 12, 40), "float32", name="Q")
    keys = te.placeholder((2, 64, 40), "float32", name="K")
    r = te.reduce_axis(40, "r")
    scores = te.compute((2, 12, 64), lambda n, i, j: te.sum(q[n, i, r] * keys[n, j, r], axis=r), name="S")
    for op in (ops.matmul(16, 32, 8), ops.dense(16, 32, 8), ops.conv2d(2, 4, 6, 6, 8, 1, 1),
               te.operator("qk", inputs=[q, keys], outputs=[scores]), ops.batch_matmul(2, 12, 33, 40)):
        assert not any(k.name.endswith("mk_b_in_place") for k in op.space(avx2_cpu()).knobs), op.name


def test_the_intrinsic_reads_b_rows_ldb_apart():
    from numba import njit

    from codegen.interpret import python_outer_product
    from codegen.simd import outer_product_kernel
    rows, vecs, lanes, kc, ldb, ldc = 4, 2, 8, 9, 37, 20
    rng = np.random.default_rng(0)
    a = rng.standard_normal(kc * rows).astype(np.float32)
    b = rng.standard_normal(5 + kc * ldb).astype(np.float32)
    mk = outer_product_kernel(rows, vecs, lanes, False, b_strided=True)

    @njit
    def call(c):
        mk(a, 0, b, 5, c, 1, ldc, kc, ldb)
    c = np.full(1 + rows * ldc, np.nan, np.float32)
    call(c)
    want = np.full_like(c, np.nan)
    python_outer_product(rows, vecs, lanes, False, b_strided=True)(a, 0, b, 5, want, 1, ldc, kc, ldb)
    block = np.stack([b[5 + k * ldb:5 + k * ldb + vecs * lanes] for k in range(kc)])
    tile = a.reshape(kc, rows).T.astype(np.float64) @ block
    got = c[1:].reshape(rows, ldc)[:, :vecs * lanes]
    np.testing.assert_allclose(got, tile, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(c, want, rtol=1e-5, atol=1e-5, equal_nan=True)


def test_the_cost_model_sees_b_read_in_place_stepping_a_row_per_k():
    """Features: a B read in place walks B's rows (ldb apart) along the micro-kernel's k loop,
    not a packed panel's unit steps."""
    from costmodel.features import _lowered, _Walker
    op = ops.batch_matmul(2, 12, 64, 40)
    strides = {}
    for flag in (False, True):
        sch = op.space(avx2_cpu()).apply(_micro(op, "batch_matmul", 4, 2, 8, 24, 64, 256, 1, 1, in_place=flag))
        walker = _Walker({id(p): v for p, v in sch.params}, 1)
        walker.run(_lowered(sch).body)
        reads = [(coeffs, stack) for buf, coeffs, write, stack in walker.accesses
                 if buf.name == ("B" if flag else "batch_matmul_bpack") and not write and stack
                 and stack[-1][0].name == "mk_k"]  # the full-tile and the edge-tile calls
        strides[flag] = {coeffs[id(stack[-1][0])] for coeffs, stack in reads}
    assert strides == {False: {1}, True: {64}}
