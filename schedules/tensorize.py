"""Lowering of a tensorized contraction: parallel parts, cache blocks, packed panels, micro-kernel
calls, remainder tiles and fused epilogues on each finished tile."""
from __future__ import annotations

from dataclasses import dataclass

from .bounds import affine_coefficient as _coefficient
from .contraction import find_contraction
from .direct_reads import MIN_SKIPPED_TAPS, direct_offsets, flat_index, plain_load, row_taps
from .errors import ScheduleError
from .expr import Binary, Const, Load, Select, Var, substitute, walk
from .loopnest import (Allocate, Assign, Buffer, For, If, MicroKernel, Store, TransposeCopy, VectorCopy,
                       add, ceildiv, floordiv, is_const, maximum, minimum, mod, mul, sub)
from .options import skip_padding_taps, tile_epilogue
from .tile_epilogue import plan_tile_epilogue, transposed_target


# Strided panel rows up to this stride are copied by vector loads and shuffles (a stride-s
# copy loads s vectors per output vector); wider ones go value by value.
MAX_COPY_STRIDE = 4


@dataclass(frozen=True, eq=False)
class MicroKernelPlan:
    rows: int
    vecs: int
    lanes: int
    mc: object        # Exprs: constants or runtime Params
    kc: object
    nc: object
    parts_m: object
    parts_n: object
    order: str = "nk"   # "nk": column blocks outside k blocks; "kn": k blocks outermost
    # Rows and columns exchanged (Contraction.swapped): the vector lanes run along the
    # output's rows, which fill whole vectors where its columns do not (conv 512x7x7's 49
    # pixels against its 512 channels).
    transposed: bool = False
    # A read unpacked, through row and k offset tables, where it is an affine load (a
    # convolution's pixels from its padded input): no per-call im2col packing.
    direct: bool = False
    # B read where it lies, not packed, where it is a row-major load along the columns and
    # every tile's columns are whole: an operand that changes with the batch (a batch
    # matmul's per-head B) is otherwise packed on every call.
    b_in_place: bool = False

    @property
    def cols(self) -> int:
        return self.vecs * self.lanes


def _and(*conds):
    out = conds[0]
    for c in conds[1:]:
        out = Binary("and", out, c)
    return out


class _Names:
    def __init__(self, lowering, stage: str):
        self.lowering, self.stage = lowering, stage

    def var(self, base: str, kind: str = "loop") -> Var:
        return Var(self.lowering.unique(f"{self.stage}_{base}"), None, kind)


def _decode(flat, axes, positions) -> list:
    """Assignments giving each axis (at `positions`, row-major) its value from a flat index."""
    out = []
    rest = flat
    for k, d in enumerate(reversed(positions)):
        ext = axes[d].extent
        if k == len(positions) - 1:
            out.append(Assign(axes[d], rest))
        else:
            out.append(Assign(axes[d], mod(rest, ext)))
            rest = floordiv(rest, ext)
    return out


def _load_stride(value, var) -> int:
    """The elements a plain load's address moves per step of var when var is only in its
    last index (a positive coefficient), else 0."""
    if not plain_load(value):
        return 0
    *outer, last = value.indices
    step = _coefficient(last, var)
    return step if step and step > 0 and all(_coefficient(i, var) == 0 for i in outer) else 0


def _row_runs(seg, off, start, count, extent, seg_lo, seg_hi):
    """The runs of `count` flat positions from `start` that stay within one row of an
    innermost axis of `extent`: the assignment of `off` (start's place in its row), the run
    count, and the assignments giving run `seg` its offsets [seg_lo, seg_hi) from start.
    Each run is decoded once and then stepped."""
    ext = Const(extent, "int64")
    bounds = [Assign(seg_lo, maximum(Const(0, "int64"), sub(mul(seg, ext), off))),
              Assign(seg_hi, minimum(count, sub(mul(add(seg, 1), ext), off)))]
    return Assign(off, mod(start, ext)), ceildiv(add(off, count), ext), bounds


def _k_inner(expr, reduce_axes) -> bool:
    """Whether the operand's innermost index moves with the innermost reduce axis, so its
    packing loop should walk k innermost (contiguous reads)."""
    loads = [n for n in walk(expr) if isinstance(n, Load) and n.indices]
    if not loads:
        return True
    last = {id(v) for v in walk(loads[0].indices[-1]) if isinstance(v, Var)}
    return any(id(r) in last for r in reduce_axes[-1:])


def emit_microkernel(low, st, tail) -> list:
    """Statements computing anchor stage `st` on its micro-kernel; `tail(value)` stores a
    final point and runs the stage's epilogues (the stage axes must be assigned)."""
    plan: MicroKernelPlan = st.microkernel
    body = low.body[id(st)]
    con = find_contraction(st.axis, st.reduce_axis, body, st.tensor.dtype)
    if con is None:
        raise ScheduleError(
            f"tensorize on stage {st.name} of {low.op.name}: the stage is not a float32 sum of a "
            f"product whose factors split the output axes into rows and columns, laid out "
            f"batch, rows, columns; keep it on the tiled schedule")
    if plan.transposed:
        con = con.swapped()
    R, C, lanes = plan.rows, plan.cols, plan.lanes
    axes, raxes = st.axis, st.reduce_axis
    a_value = low._resolve(con.a, {})
    taps = (row_taps(low, a_value, axes, con.m, raxes)
            if plan.transposed and plan.direct and _constant_input(low, con.b) is not None
            and _constant_input(low, con.a) is None and skip_padding_taps() else None)
    if taps is not None and taps.padding_share < MIN_SKIPPED_TAPS:
        taps = None
    if taps is not None:
        # The row tap leads the reduction, so the taps that fall in the padding above or
        # below a tile's image rows are one range of k that the tile skips.
        raxes = (raxes[taps.position],) + tuple(r for q, r in enumerate(raxes) if q != taps.position)
    Bt, Mt, Nt = con.extents(axes)
    Kt = 1
    for r in raxes:
        Kt *= r.extent
    nm = _Names(low, st.name)
    if plan.transposed:
        # The tile lands in a (batch, M, N) scratch in the swapped contraction's own order;
        # the epilogue then writes every point to the stage's layout.
        cbuf = Buffer(low.unique(f"{st.name}_acc_t"), (Bt * Mt * Nt,), st.tensor.dtype, "global", "temp")
        low.temps.append(cbuf)
    else:
        cbuf = _accumulator(low, st)
    fdt = st.tensor.dtype
    zero = Const(0.0, fdt)

    # Block sizes: rows of A blocks are whole panels, columns of B blocks whole panels.
    pro = []

    def hoist(base, value):
        if is_const(value):
            return value
        v = nm.var(base, "extent")
        pro.append(Assign(v, value))
        return v
    mpan, npan = ceildiv(Mt, R), ceildiv(Nt, C)
    mc = hoist("mc", mul(maximum(floordiv(plan.mc, R), Const(1, "int64")), R))
    nc = hoist("nc", mul(maximum(floordiv(plan.nc, C), Const(1, "int64")), C))
    kc_value = minimum(plan.kc, Kt)
    kc = hoist("kc", kc_value)
    pm = hoist("pm", minimum(plan.parts_m, mpan))
    pn = hoist("pn", minimum(plan.parts_n, npan))
    mstep = hoist("mstep", mul(ceildiv(mpan, pm), R))
    nstep = hoist("nstep", mul(ceildiv(npan, pn), C))
    parts = hoist("parts", mul(mul(Bt, pm), pn))

    t = nm.var("part")
    bidx, pmi, pni = nm.var("b", "index"), nm.var("pm_i", "index"), nm.var("pn_i", "index")
    m_lo, m_hi, n_lo, n_hi = (nm.var(x, "index") for x in ("m_lo", "m_hi", "n_lo", "n_hi"))
    part_head = [
        Assign(bidx, floordiv(t, mul(pm, pn))),
        Assign(pmi, mod(floordiv(t, pn), pm)),
        Assign(pni, mod(t, pn)),
        Assign(m_lo, mul(pmi, mstep)), Assign(m_hi, minimum(add(m_lo, mstep), Mt)),
        Assign(n_lo, mul(pni, nstep)), Assign(n_hi, minimum(add(n_lo, nstep), Nt)),
    ]
    batch_assign = _decode(bidx, axes, list(con.batch)) if con.batch else []
    unit_assign = [Assign(axes[d], Const(0, "int64")) for d in con.unit]
    # "kn" packs the part's whole row range once per k block and reuses it for every column
    # block (small M, as in transformer dense layers); "nk" packs one mc block at a time.
    a_outer = plan.order == "kn"
    apack = Buffer(low.unique(f"{st.name}_apack"), (mul(mstep if a_outer else mc, kc),), fdt, "local", "local")
    bpack = Buffer(low.unique(f"{st.name}_bpack"), (mul(nc, kc),), fdt, "local", "local")
    ctile = Buffer(low.unique(f"{st.name}_ctile"), (R * C,), fdt, "local", "local")

    j0, ncur, jpan = nm.var("j0", "index"), nm.var("ncur", "index"), nm.var("jpan", "index")
    p0, kcur, i0 = nm.var("p0", "index"), nm.var("kcur", "index"), nm.var("i0", "index")
    mcur, ipan = nm.var("mcur", "index"), nm.var("ipan", "index")
    jb, pb, ib = nm.var("jb"), nm.var("pb"), nm.var("ib")
    kk, jp, jj, ip, ii = nm.var("kk"), nm.var("jp"), nm.var("jj"), nm.var("ip"), nm.var("ii")
    kflat, mflat, nflat = nm.var("k", "index"), nm.var("m", "index"), nm.var("n", "index")

    k_assign = [Assign(kflat, add(p0, kk))] + _decode(kflat, raxes, list(range(len(raxes))))

    def pack(buf, expr, width, panels, cur, lo, flat, group, panel, lane, base=None):
        """buf[base + panel*kcur*width + kk*width + lane] = operand at (lo + panel*width + lane,
        p0 + kk); zero past cur.

        The lane loop is innermost (contiguous stores). An operand contiguous along k is read
        as `width` parallel row streams, one panel at a time; one contiguous along the lanes
        is read row by row across all panels, since striding down a column defeats the
        hardware prefetcher (measured 2.5x slower on a 768x3072 B). Whole panels skip the
        bounds select so their copy loops stay branch-free."""
        value = low._resolve(expr, {})
        panel_off = mul(mul(panel, kcur), width) if base is None else add(base, mul(mul(panel, kcur), width))
        row_off = add(panel_off, mul(kk, width))
        idx = add(row_off, lane)
        at = [Assign(flat, add(add(lo, mul(panel, width)), lane))] + _decode(flat, axes, list(group))
        whole = Binary("le", mul(add(panel, 1), width), cur)
        ragged = Binary("gt", mul(add(panel, 1), width), cur)
        guarded = Select(Binary("lt", flat, add(lo, cur)), value, zero)

        def lanes(v, fast=False):
            stride = _load_stride(v, axes[group[-1]]) if fast else 0
            if stride and stride <= MAX_COPY_STRIDE:
                # A run of the operand (every stride-th value: a strided conv's pixels): one
                # vector copy, no per-value indexing (the innermost axis holds the panel's
                # first position here).
                return VectorCopy(buf, row_off, v.tensor, flat_index(v), width, stride)
            if fast:  # the panel lies in one row of the innermost axis: no div/mod per lane
                at_lane = [Assign(axes[group[-1]], add(row_base, lane))]
                return For(lane, Const(width, "int64"), "serial", tuple(at_lane) + (Store(buf, (idx,), v),))
            return For(lane, Const(width, "int64"), "serial", tuple(at) + (Store(buf, (idx,), v),))

        # A flattened group of axes (conv's oh, ow) costs a div and a mod per packed value;
        # a whole panel that does not cross a row of the innermost axis decodes once instead.
        # A single axis never crosses: every whole panel takes that path.
        inner_ext = axes[group[-1]].extent if len(group) > 1 else 0
        in_row = None
        row_base = nm.var(f"{flat.name}_row", "index")
        first = add(lo, mul(panel, width))
        base_at = [Assign(flat, first)] + _decode(flat, axes, list(group)) + \
            [Assign(row_base, axes[group[-1]])]
        if len(group) == 1:
            in_row, crossing = whole, None
        elif inner_ext > width:
            in_row = _and(whole, Binary("le", add(mod(first, inner_ext), width), Const(inner_ext, "int64")))
            crossing = _and(whole, Binary("gt", add(mod(first, inner_ext), width), Const(inner_ext, "int64")))
        if _k_inner(expr, raxes):
            def rows(v, fast=False):
                return For(kk, kcur, "serial", tuple(k_assign) + (lanes(v, fast),))

            def table_rows():
                """A whole panel across rows of the innermost axis: each lane's position is
                decoded once per panel into a small table, which every k step reads instead
                of dividing (conv 256x14x14 3x3, whose 24-wide panels all cross 14-wide rows)."""
                tab = Buffer(low.unique(f"{st.name}_{flat.name}_lanes"), (len(group), width), "int64",
                             "local", "local")
                fill = For(lane, Const(width, "int64"), "serial", tuple(at) + tuple(
                    Store(tab, (Const(g, "int64"), lane), axes[d]) for g, d in enumerate(group)))
                read = tuple(Assign(axes[d], Load(tab, (Const(g, "int64"), lane))) for g, d in enumerate(group))
                step = For(lane, Const(width, "int64"), "serial", read + (Store(buf, (idx,), value),))
                return (Allocate(tab), fill, For(kk, kcur, "serial", tuple(k_assign) + (step,)))
            def run_rows():
                """A whole panel across rows of the innermost axis whose values are runs along
                it (a conv's pixels, every stride-th value): one masked vector copy per run of
                the panel within a row, each run's position decoded once per panel."""
                off, seg = nm.var(f"{flat.name}_off", "index"), nm.var("seg")
                seg_lo, seg_hi = nm.var("seg_lo", "index"), nm.var("seg_hi", "index")
                at_off, count, bounds = _row_runs(seg, off, first, Const(width, "int64"), inner_ext,
                                                  seg_lo, seg_hi)
                head = bounds + [Assign(flat, add(first, seg_lo))] + _decode(flat, axes, list(group))
                copy = VectorCopy(buf, add(row_off, seg_lo), value.tensor, flat_index(value),
                                  min(width, inner_ext), run_stride, sub(seg_hi, seg_lo))
                return (at_off, For(seg, count, "serial", tuple(head) + (
                    For(kk, kcur, "serial", tuple(k_assign) + (copy,)),)))
            run_stride = _load_stride(value, axes[group[-1]]) if len(group) > 1 else 0
            across = run_rows if 0 < run_stride <= MAX_COPY_STRIDE else table_rows
            if in_row is None:
                cases = (If(whole, across()),)
            else:
                fast_rows = (_transposed_rows(value, axes[group[-1]], buf, width, panel_off, rows)
                             if len(group) == 1 else None) or [rows(value, True)]
                cases = (If(in_row, tuple(base_at) + tuple(fast_rows)),) + \
                    ((If(crossing, across()),) if crossing is not None else ())
            return For(panel, panels, "serial", cases + (If(ragged, (rows(guarded),)),))
        if in_row is None:
            cases = (If(whole, (lanes(value),)),)
        else:
            cases = (If(in_row, tuple(base_at) + (lanes(value, True),)),) + \
                ((If(crossing, (lanes(value),)),) if crossing is not None else ())
        per_panel = For(panel, panels, "serial", cases + (If(ragged, (lanes(guarded),)),))
        return For(kk, kcur, "serial", tuple(k_assign) + (per_panel,))

    def _transposed_rows(value, lane_axis, buf, width, panel_off, rows):
        """For an operand contiguous along the flattened reduce axes whose lanes are rows at a
        constant stride (dense's W[j, k], matmul's A[i, k], conv NCHW's W[k, c, r, s]):
        statements packing the whole panel with 8x8 register transposes, then the k % 8 tail
        row by row (`rows` builds the row-by-row loop). None if the operand is not such a
        load or the panel is not a multiple of 8 wide."""
        if width % 8 or not plain_load(value):
            return None
        offset = flat_index(value)
        ld = _coefficient(offset, lane_axis)
        stride = 1
        for r in reversed(raxes):
            if _coefficient(offset, r) != stride:
                return None
            stride *= r.extent
        if not ld or ld < 0:
            return None
        kc8 = mul(floordiv(kcur, Const(8, "int64")), Const(8, "int64"))
        start = [Assign(kflat, p0)] + _decode(kflat, raxes, list(range(len(raxes))))
        copy = TransposeCopy(buf, panel_off, value.tensor, offset, ld, kc8, width)
        kt = nm.var("kt")
        tail_body = rows(value, True).body  # the row-by-row loop's body, run for the tail only
        return start + [copy, For(kt, sub(kcur, kc8), "serial", (Assign(kk, add(kc8, kt)),) + tail_body)]

    pack_b = (pack(bpack, con.b, C, jpan, ncur, j0, nflat, con.n, jp, jj),)
    apan = nm.var("apan", "index")
    unpacked = (direct_offsets(a_value, axes, con.m, raxes)
                if plan.direct and _constant_input(low, con.a) is None else None)
    direct_setup, row_table = (), None
    if unpacked is None:
        pack_a = (pack(apack, con.a, R, apan if a_outer else ipan, sub(m_hi, m_lo) if a_outer else mcur,
                       m_lo if a_outer else i0, mflat, con.m, ip, ii),)
    else:
        # No packing: each tap's offset is tabled once per part, and each tile's row offsets
        # once per tile. Rows past the block's end repeat its last row; they land in the
        # edge tile's scratch, which is never read there.
        row_off, k_off = unpacked
        ktab = Buffer(low.unique(f"{st.name}_ktab"), (Kt,), "int64", "local", "local")
        rtab = Buffer(low.unique(f"{st.name}_rtab"), (R,), "int64", "local", "local")
        kpos, stride = Const(0, "int64"), 1
        for r in reversed(raxes):
            kpos = add(kpos, mul(r, Const(stride, "int64")))
            stride *= r.extent
        fill = Store(ktab, (kpos,), k_off)
        for r in reversed(raxes):
            fill = For(r, Const(r.extent, "int64"), "serial", (fill,))
        direct_setup = (Allocate(ktab), Allocate(rtab), fill)
        pack_a = ()

        def row_table(i):
            last_row = sub(add(i0, mcur), Const(1, "int64"))
            at = [Assign(mflat, minimum(add(i, ii), last_row))] + _decode(mflat, axes, list(con.m))
            return (For(ii, Const(R, "int64"), "serial", tuple(at) + (Store(rtab, (ii,), row_off),)),)

    # One tile: rows i.., columns j.. of this batch's (Mt, Nt) slab.
    i, j = nm.var("i", "index"), nm.var("j", "index")
    slab = mul(bidx, Mt * Nt)
    a_panel = add(floordiv(sub(i0, m_lo), R), ip) if a_outer else ip
    a_off, b_off = mul(mul(a_panel, kcur), R), mul(mul(jp, kcur), C)

    # A constant operand (a layer's weights) is packed once, whole, by a loop of its own: k
    # block by k block, each holding every panel of the operand, so a tile's panel is found
    # from its global position. Blocks and parts start on whole panels, so i0 / R and j0 / C
    # are exact. One that reads no batch axis (a conv's weights over a batch of images) is
    # the same for every batch.
    setup = []
    batch_vars = {id(axes[d]) for d in con.batch}
    for side, expr, width, extent, flat, group, panel, lane in (
            ("a", con.a, R, Mt, mflat, con.m, ip, ii), ("b", con.b, C, Nt, nflat, con.n, jp, jj)):
        per_batch = any(isinstance(v, Var) and id(v) in batch_vars for v in walk(expr))
        name = _constant_input(low, expr) if not per_batch else None
        if name is None:
            continue
        panels = -(-extent // width)
        full = Buffer(low.unique(f"{st.name}_{side}packed"), (Kt * panels * width,), fdt, "global", "temp")
        low.temps.append(full)
        low.prepacked.append((name, full))
        base = mul(p0, Const(panels * width, "int64"))
        filled = pack(full, expr, width, Const(panels, "int64"), Const(extent, "int64"), Const(0, "int64"),
                      flat, group, panel, lane, base)
        kb = nm.var(f"{side}pb")
        setup += [Assign(kc, kc_value)] if isinstance(kc, Var) else []
        setup.append(For(kb, ceildiv(Const(Kt, "int64"), kc), "parallel", tuple(
            [Assign(ax, Const(0, "int64")) for ax in (axes[d] for d in list(con.batch) + list(con.unit))]
            + [Assign(p0, mul(kb, kc)), Assign(kcur, minimum(kc, sub(Const(Kt, "int64"), p0))), filled])))
        if side == "a":
            apack, pack_a = full, ()
            a_off = add(base, mul(mul(add(floordiv(i0, Const(R, "int64")), ip), kcur), R))
        else:
            bpack, pack_b = full, ()
            b_off = add(base, mul(mul(add(floordiv(j0, Const(C, "int64")), jp), kcur), C))
    low.setup.extend(setup)
    in_place = _b_in_place(low, plan, con, axes, raxes, Nt) if pack_b else None
    b_stride = {}
    if in_place is not None:
        # Each tile reads its kc x C block of B where it lies, rows ldb apart: j is a whole
        # number of C-wide panels and Nt a multiple of C, so no read runs past B's columns.
        b_buf, b_flat, ldb = in_place
        bpack, pack_b = b_buf, ()
        b_off = substitute(b_flat, {axes[con.n[0]]: j, raxes[0]: p0})
        b_stride = dict(ldb=Const(ldb, "int64"))
    later = Binary("gt", pb, Const(0, "int64"))
    last = Binary("ge", add(p0, kcur), Const(Kt, "int64"))
    not_last = Binary("lt", add(p0, kcur), Const(Kt, "int64"))
    full = _and(Binary("le", add(i, R), add(i0, mcur)), Binary("le", add(j, C), add(j0, ncur)))
    partial = _and(Binary("or", Binary("gt", add(i, R), add(i0, mcur)),
                          Binary("gt", add(j, C), add(j0, ncur))))
    c_off = add(slab, add(mul(i, Nt), j))

    # The tile's k range within this k block: all of it, or (row taps skipped) the part of
    # [k_lo, k_hi), its taps that read an image row, in this block. `later`: an earlier call
    # already left part of the tile's sum in its scratch.
    k_start, k_count, tile_head, run_tile = p0, kcur, (), None
    if taps is not None and unpacked is not None:
        k_lo, k_hi, k_start, k_count = (nm.var(x, "index") for x in ("k_lo", "k_hi", "k_start", "k_count"))
        inner = 1
        for d in con.m[1:]:
            inner *= axes[d].extent
        first = floordiv(i, Const(inner, "int64"))
        final = floordiv(sub(minimum(add(i, R), add(i0, mcur)), Const(1, "int64")), Const(inner, "int64"))
        r_lo, r_hi = taps.bounds(first, final)
        per_tap = Const(Kt // raxes[0].extent, "int64")
        tile_head = (Assign(k_lo, mul(r_lo, per_tap)), Assign(k_hi, maximum(k_lo, mul(add(r_hi, 1), per_tap))),
                     Assign(k_start, maximum(p0, k_lo)),
                     Assign(k_count, maximum(Const(0, "int64"), sub(minimum(add(p0, kcur), k_hi), k_start))))
        later = Binary("gt", minimum(p0, k_hi), k_lo)
        b_off = add(b_off, mul(sub(k_start, p0), Const(C, "int64")))
        run_tile = Binary("or", Binary("gt", k_count, Const(0, "int64")), last)
    if unpacked is None:
        a_buf, a_at, tables = apack, a_off, {}
    else:
        a_buf, a_at, tables = a_value.tensor, Const(0, "int64"), dict(a_rows=rtab, a_ks=ktab, a_ks_off=k_start)

    epilogues = low.has_epilogues(st) or cbuf is not low.buffers.get(id(st.tensor))
    # An epilogue of constants and per-row or per-column operands (bias, relu) runs on the
    # full tiles in registers as the last k block stores them, instead of a pass over each
    # finished block (1x1 conv 64x56x56 -> 256 spent 11% of its time in that pass).
    names = set(low._names)  # the analysis's scalars are dropped: keep their names free
    in_registers = (plan_tile_epilogue(tail, None if plan.transposed else cbuf, axes, con.m, con.n, i, j)
                    if epilogues and tile_epilogue() else None)
    low._names = names
    fused = {} if in_registers is None else dict(
        epilogue=in_registers.program, apply=last, epilogue_operands=in_registers.operands)
    if in_registers is not None and plan.transposed:
        # A swapped tile's last k block stores each of its columns (filters) as one run of
        # the output's rows (pixels), transposed in registers: no pass over the scratch.
        target = transposed_target(in_registers.out, axes, con.m, con.n, i, j)
        if target is None:
            in_registers, fused = None, {}
        else:
            fused.update(transposed_out=in_registers.out, transposed_off=target[0],
                         transposed_ld=Const(target[1], "int64"))

    def mk(acc, into_tile):
        if into_tile:
            return MicroKernel(a_buf, a_at, bpack, b_off, ctile, Const(0, "int64"), Const(C, "int64"),
                               k_count, R, plan.vecs, lanes, False, **tables, **b_stride)
        return MicroKernel(a_buf, a_at, bpack, b_off, cbuf, c_off, Const(Nt, "int64"), k_count, R,
                           plan.vecs, lanes, acc, 2 * Bt * Mt * Nt * Kt, **tables, **fused, **b_stride)

    ti, tj = nm.var("ti"), nm.var("tj")

    def point(inner_fn, rows, cols):
        """Loops over the valid part of the tile, with every stage axis assigned."""
        row_head = [Assign(mflat, add(i, ti))] + _decode(mflat, axes, list(con.m))
        if len(con.n) == 1:
            stmts = [Assign(nflat, add(j, tj))] + _decode(nflat, axes, list(con.n)) + inner_fn()
            return For(ti, rows, "serial", tuple(row_head) + (For(tj, cols, "serial", tuple(stmts)),))
        # Flattened columns (conv NCHW's oh, ow): a div and a mod per point kept the epilogue
        # scalar. The tile's columns are cut into runs within one row of the innermost axis,
        # each decoded once and stepped, so the run is one vectorized loop.
        seg, t2 = nm.var("seg"), nm.var("t2")
        off, seg_lo, seg_hi, at0 = (nm.var(x, "index") for x in ("off", "seg_lo", "seg_hi", "at0"))
        at_off, count, bounds = _row_runs(seg, off, j, cols, axes[con.n[-1]].extent, seg_lo, seg_hi)
        seg_head = bounds + [Assign(nflat, add(j, seg_lo))] + _decode(nflat, axes, list(con.n)) + \
            [Assign(at0, axes[con.n[-1]])]
        per_col = [Assign(tj, add(seg_lo, t2)), Assign(nflat, add(j, tj)),
                   Assign(axes[con.n[-1]], add(at0, t2))] + inner_fn()
        segments = For(seg, count, "serial", tuple(seg_head) + (
            For(t2, sub(seg_hi, seg_lo), "serial", tuple(per_col)),))
        return For(ti, rows, "serial", tuple(row_head) + (at_off, segments))

    rows_left = minimum(Const(R, "int64"), sub(add(i0, mcur), i))
    cols_left = minimum(Const(C, "int64"), sub(add(j0, ncur), j))
    # Where point() finds the current point in cbuf: at the stage's axes, or (swapped) at its
    # flat (batch, M, N) position, which point() assigns.
    here = (add(slab, add(mul(mflat, Const(Nt, "int64")), nflat)),) if plan.transposed else tuple(axes)

    def add_tile():
        prev = Load(cbuf, here)
        tile_v = Load(ctile, (add(mul(ti, C), tj),))
        value = Select(later, Binary("add", prev, tile_v), tile_v)
        if in_registers is None:
            return [Store(cbuf, here, value)]
        # Edge tiles finish point by point, as the block epilogue would have.
        return [If(last, tuple(tail(value))), If(not_last, (Store(cbuf, here, value),))]

    tile_stmts = [
        If(full, (mk(later, False),)),
        If(partial, (mk(False, True), point(add_tile, rows_left, cols_left))),
    ]
    if run_tile is not None:  # a tile with no tap in this block waits, unless the block is the last
        tile_stmts = list(tile_head) + [If(run_tile, tuple(tile_stmts))]
    compute = For(jp, jpan, "serial", (
        Assign(j, add(j0, mul(jp, C))),
        For(ip, ipan, "serial", (Assign(i, add(i0, mul(ip, R))),) + (row_table(i) if row_table else ())
            + tuple(tile_stmts)),
    ))
    if epilogues and in_registers is None:
        # The epilogue runs once the block's last k block is done, over its whole rows (in
        # runs along output rows where columns are flattened): a loop over one tile's 8-48
        # columns is too short for LLVM's vectorized body, and read straight after the
        # micro-kernel's wide stores a tile waited for them to reach L1 (a 1x1 conv with
        # bias spent as long in its epilogue as in its micro-kernels).
        finish = lambda: tail(Load(cbuf, here))  # noqa: E731
        block = (compute, If(last, (Assign(i, i0), Assign(j, j0), point(finish, mcur, ncur))))
    else:
        block = (compute,)
    k_block_head = (Assign(p0, mul(pb, kc)), Assign(kcur, minimum(kc, sub(Const(Kt, "int64"), p0))))
    n_block_head = (Assign(j0, add(n_lo, mul(jb, nc))), Assign(ncur, minimum(nc, sub(n_hi, j0))),
                    Assign(jpan, ceildiv(ncur, C)))
    m_block_head = (Assign(i0, add(m_lo, mul(ib, mc))), Assign(mcur, minimum(mc, sub(m_hi, i0))),
                    Assign(ipan, ceildiv(mcur, R)))
    k_count, n_count = ceildiv(Const(Kt, "int64"), kc), ceildiv(sub(n_hi, n_lo), nc)
    m_count = ceildiv(sub(m_hi, m_lo), mc)
    if a_outer:
        m_blocks = For(ib, m_count, "serial", m_block_head + block)
        n_blocks = For(jb, n_count, "serial", n_block_head + pack_b + (m_blocks,))
        nest = For(pb, k_count, "serial", k_block_head + (Assign(apan, ceildiv(sub(m_hi, m_lo), R)),)
                   + pack_a + (n_blocks,))
    else:
        m_blocks = For(ib, m_count, "serial", m_block_head + pack_a + block)
        k_blocks = For(pb, k_count, "serial", k_block_head + pack_b + (m_blocks,))
        nest = For(jb, n_count, "serial", n_block_head + (k_blocks,))
    part_body = part_head + batch_assign + unit_assign + [
        If(_and(Binary("lt", m_lo, m_hi), Binary("lt", n_lo, n_hi)),
           tuple(Allocate(b) for b in (apack, bpack, ctile) if b.scope == "local" and (b is not apack or pack_a))
           + direct_setup + (nest,)),
    ]
    return pro + [For(t, parts, "parallel", tuple(part_body))]


def _b_in_place(low, plan, con, axes, raxes, Nt):
    """(B's buffer, its flat offset expression, the k stride) where the plan reads B in place
    and B allows it: an input loaded row-major along the single column axis (unit stride),
    with one reduce axis, nothing moving with the rows, and whole tiles across the columns;
    else None (B is packed)."""
    if not plan.b_in_place or plan.transposed or len(con.n) != 1 or len(raxes) != 1 or Nt % plan.cols:
        return None
    value = low._resolve(con.b, {})
    if not (plain_load(value) and value.tensor.role == "input"):
        return None
    flat = flat_index(value)
    ldb = _coefficient(flat, raxes[0])
    if _coefficient(flat, axes[con.n[0]]) != 1 or not ldb or ldb < plan.cols \
            or any(_coefficient(flat, axes[d]) != 0 for d in con.m):
        return None
    return value.tensor, flat, int(ldb)


def _constant_input(low, expr):
    """The name of the constant input that a micro-kernel operand reads directly, else None."""
    value = low._resolve(expr, {})
    if plain_load(value) and value.tensor.role == "input" and value.tensor.name in low.constants:
        return value.tensor.name
    return None


def _accumulator(low, st) -> Buffer:
    """The global buffer the tile accumulates in: the stage's own, else a stored epilogue
    output of the same shape (overwritten in place by the epilogue), else a new temp."""
    own = low.buffers.get(id(st.tensor))
    if low.stored[id(st)] and own is not None:
        return own
    for ep in low.epilogues_of(st):
        buf = low.buffers.get(id(ep.tensor))
        if low.stored[id(ep)] and buf is not None and ep.tensor.dtype == st.tensor.dtype:
            return buf
    buf = Buffer(low.unique(f"{st.name}_acc"), st.tensor.shape, st.tensor.dtype, "global", "temp")
    low.temps.append(buf)
    return buf
