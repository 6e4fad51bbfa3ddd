"""Sliding windows computed in place: each output plane as one flat vector loop over the input
plane where it lies, with the reads that wrap around a row's end masked, for windows whose
input and output rows are equally long (stride 1, 'same' padding)."""
from __future__ import annotations

import math

from .bounds import interval
from .expr import Const, Load, Select, Var, substitute, walk
from .loopnest import Allocate, Assign, Buffer, For, Store, add, flat_offset, mul
from .window_plane import PlaneLayout, decode_outer, stores_at_point
from .window_points import OVERLAP_LANES, guarded_point, unrolled_taps, whole_vector_chunks


def flat_geometry(layout: PlaneLayout) -> tuple | None:
    """(r0, r1, c0, c1): the output rows [r0, r1) whose taps all stay inside the input's rows,
    and the columns [c0, c1) whose taps all stay inside its columns; None when the layout
    does not apply (input rows of another length than the output's, or no such row or
    column)."""
    in_rows, in_cols = (int(d) for d in layout.tensor.shape[-2:])
    if in_cols != layout.cols:
        return None
    r0, r1 = max(0, -layout.row_lo), min(layout.rows, in_rows - layout.row_hi)
    c0, c1 = max(0, -layout.col_lo), layout.cols - max(0, layout.col_hi)
    if r0 >= r1 or c0 >= c1:
        return None
    return r0, r1, c0, c1


def emit_flat(low, st, tail, layout: PlaneLayout, geometry: tuple, block) -> list:
    """Statements computing window stage `st` plane by plane, in place: one parallel loop over
    the outer output axes; per plane, one vectorized loop over the flat positions from
    (r0, c0) to (r1 - 1, c1 - 1), reading each tap straight from the input plane at a fixed
    flat shift. A tap whose column leaves the row would read the neighbouring row there, so
    its value goes through a select on a per-column mask (allocated once per thread, its
    row ends cleared again on each plane: a few stores). The
    points outside that flat range (the border rows, and the corners of its first and last
    row) are computed after it with guarded reads.

    Unlike the padded plane layout (window_plane), nothing is copied in or out: that copy
    cost a third of a 144x56x56 depthwise convolution. The epilogue runs in the flat loop and
    stores straight into its outputs when it reads nothing at (h, w); otherwise the flat loop
    keeps the raw reduction in a plane buffer and the epilogue runs over it afterwards."""
    body = low.body[id(st)]
    axes, raxes = st.axis, st.reduce_axis
    h, w, outer_axes = axes[-2], axes[-1], axes[:-2]
    r0, r1, c0, c1 = geometry
    rows, cols = layout.rows, layout.cols
    start, stop = r0 * cols + c0, (r1 - 1) * cols + c1
    plane = Var(low.unique(f"{st.name}_plane"), None, "loop")
    t = Var(low.unique(f"{st.name}_flat"), None, "loop")
    chunk = Var(low.unique(f"{st.name}_chunk"), None, "loop")
    begin = Var(low.unique(f"{st.name}_c0"), None, "index")
    length = Var(low.unique(f"{st.name}_n"), None, "index")
    at_t = add(begin, t)  # the flat output position of the loop's point
    src = low.buffers[id(layout.tensor)]
    src_view = low.flat_view(src)
    src_base = flat_offset(src.shape, tuple(layout.outer) + (Const(0, "int64"), Const(0, "int64")))
    stmts = decode_outer(plane, outer_axes)

    masks = {}  # column shift -> bool Buffer over the flat rows [r0, r1), True where in the row

    def mask_of(shift: int):
        if shift not in masks:
            masks[shift] = Buffer(low.unique(f"{st.name}_cols{'m' if shift < 0 else 'p'}{abs(shift)}"),
                                  ((r1 - r0) * cols,), "bool", "local", "local")
        return masks[shift]

    def flat_read(node):
        if not (isinstance(node, Load) and node.tensor is layout.tensor
                and any(v is h for v in walk(node.indices[-2])) and any(v is w for v in walk(node.indices[-1]))):
            return None
        dr = interval(substitute(node.indices[-2], {h: Const(0, "int64")}), {})[0]
        dc = interval(substitute(node.indices[-1], {w: Const(0, "int64")}), {})[0]
        at = add(add(src_base, Const(dr * cols + dc, "int64")), at_t)
        value = Load(src_view, (at,), node.default)
        if dc == 0:
            return value
        inside = Load(mask_of(dc), (add(at_t, Const(-r0 * cols, "int64")),))
        default = node.default if node.dtype.startswith("float") else int(node.default)
        return Select(inside, value, Const(default, node.dtype))

    value = low._resolve(unrolled_taps(body, raxes, flat_read), {})

    fused = tail(value)
    if stores_at_point(st, fused, {id(h), id(w)}):
        def out_at(buffer, flat):
            base = flat_offset(buffer.shape, tuple(outer_axes) + (Const(0, "int64"), Const(0, "int64")))
            return low.flat_view(buffer), (add(base, flat),)
        flat_body = [Store(*out_at(s.buffer, at_t), s.value)
                     if isinstance(s, Store) else s for s in fused]
        sink, finish = tail, []
    else:
        raw = Buffer(low.unique(f"{st.name}_raw"), (rows * cols,), st.tensor.dtype, "local", "local")
        flat_body = [Store(raw, (at_t,), value)]

        def sink(v):
            return [Store(raw, (add(mul(h, Const(cols, "int64")), w),), v)]
        y, x = Var(low.unique(f"{st.name}_y"), None, "loop"), Var(low.unique(f"{st.name}_x"), None, "loop")
        point = Load(raw, (add(mul(y, Const(cols, "int64")), x),))
        finish = [For(y, Const(rows, "int64"), "serial", (
            For(x, Const(cols, "int64"), "vectorized", (Assign(h, y), Assign(w, x)) + tuple(tail(point))),))]
        stmts.append(Allocate(raw))

    for shift, mask in masks.items():
        stmts.append(Allocate(mask, Const(True, "bool")))
        stmts += _mask_columns(low, mask, shift, r1 - r0, cols)
    if stop - start >= OVERLAP_LANES:
        count, first, size = whole_vector_chunks(chunk, block, start, stop)
    else:
        count, first, size = Const(1, "int64"), Const(start, "int64"), Const(stop - start, "int64")
    stmts.append(For(chunk, count, "serial", (Assign(begin, first), Assign(length, size),
                                              For(t, length, "vectorized", tuple(flat_body)))))
    stmts += _border_points(low, body, axes, raxes, (r0, r1, c0, c1), rows, cols, sink)
    stmts += finish
    planes = math.prod(a.extent for a in outer_axes)
    return [For(plane, Const(planes, "int64"), "parallel", tuple(stmts))]


def _mask_columns(low, mask, shift: int, mask_rows: int, cols: int) -> list:
    """Clear the mask where a read at column shift `shift` leaves its row: the first -shift
    columns of every row for a shift left, the last `shift` for a shift right."""
    y = Var(low.unique(f"{mask.name}_y"), None, "loop")
    x = Var(low.unique(f"{mask.name}_x"), None, "loop")
    first = 0 if shift < 0 else cols - min(shift, cols)
    at = add(add(mul(y, Const(cols, "int64")), Const(first, "int64")), x)
    count = min(abs(shift), cols)
    return [For(y, Const(mask_rows, "int64"), "serial",
                (For(x, Const(count, "int64"), "serial", (Store(mask, (at,), Const(False, "bool")),)),))]


def _border_points(low, body, axes, raxes, geometry, rows: int, cols: int, sink) -> list:
    """The points the flat loop leaves out, with guarded reads: whole rows above r0 and from
    r1 on (columns vectorized), and the columns before c0 in row r0 and from c1 in row r1-1."""
    h, w = axes[-2], axes[-1]
    r0, r1, c0, c1 = geometry
    out = []

    def ranges(h_range, w_range):
        found = {id(v): (0, v.extent - 1) for v in axes}
        found[id(h)], found[id(w)] = h_range, w_range
        return found

    for lo, hi in ((0, r0), (r1, rows)):
        if hi <= lo:
            continue
        y, x = Var(low.unique("border_y"), None, "loop"), Var(low.unique("border_x"), None, "loop")
        point = guarded_point(low, body, raxes, ranges((lo, hi - 1), (0, cols - 1)), sink)
        out.append(For(y, Const(hi - lo, "int64"), "serial", (
            Assign(h, add(y, Const(lo, "int64"))),
            For(x, Const(cols, "int64"), "vectorized", (Assign(w, x),) + tuple(point)))))
    for row, lo, hi in ((r0, 0, c0), (r1 - 1, c1, cols)):
        if hi <= lo:
            continue
        x = Var(low.unique("corner_x"), None, "loop")
        point = guarded_point(low, body, raxes, ranges((row, row), (lo, hi - 1)), sink)
        out.append(For(x, Const(hi - lo, "int64"), "serial", (
            Assign(h, Const(row, "int64")), Assign(w, add(x, Const(lo, "int64")))) + tuple(point)))
    return out
