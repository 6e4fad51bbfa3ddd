"""Sliding windows over whole planes: each output plane computed as one flat vector loop over
a padded copy of its input plane, for windows whose rows are too short to vectorize."""
from __future__ import annotations

import math
from dataclasses import dataclass

from .bounds import affine_coefficient as _coefficient, interval
from .expr import Const, Load, Var, substitute, walk
from .loopnest import (Allocate, Assign, Buffer, For, Scalar, Store, VectorCopy, add, flat_offset, floordiv,
                       fmt, mod, mul)
from .window_points import unrolled_taps

# A plane's padded copy plus its flat result, in values; a larger plane would spill out of
# the per-core caches, and its rows are long enough for the row layout anyway.
MAX_PLANE_POINTS = 1 << 16


@dataclass(frozen=True)
class PlaneLayout:
    """Where a window's input plane sits in its padded copy.

    Output point (h, w) at the tap with offsets (dr, dc) reads padded value
    (h + dr - row_lo) * width + (w + dc - col_lo); so the whole plane, computed at
    `width` points per row (the last `width - W` of them discarded), reads each tap as one
    contiguous run of the padded copy."""
    tensor: object          # the placeholder read along the plane
    outer: tuple            # its indices before the last two (Exprs over the outer output axes)
    default: float          # the value of its reads outside the tensor (padding)
    row_lo: int             # the smallest and largest row offset over the taps
    row_hi: int
    col_lo: int
    col_hi: int
    rows: int               # output rows H
    cols: int               # output columns W

    @property
    def width(self) -> int:
        return self.cols + self.col_hi - self.col_lo

    @property
    def height(self) -> int:
        return self.rows + self.row_hi - self.row_lo

    @property
    def padded_size(self) -> int:
        # The last tap of the last computed point reads width - cols values past the
        # padded plane's end.
        return self.height * self.width + self.width - self.cols

    @property
    def flat_size(self) -> int:
        return self.rows * self.width


def plane_layout(axes, reduce_axes, source) -> PlaneLayout | None:
    """The padded-plane layout of a window stage, or None when one does not apply: every read
    that moves with the last two output axes (h, w) must read one placeholder at
    [outer..., h + row offset, w + column offset] (unit stride, offsets depending only on the
    reduce axes, outer indices in bounds and the same for every read), and every other read
    must stay in bounds. Strided windows keep the row layout."""
    if len(axes) < 2:
        return None
    h, w = axes[-2], axes[-1]
    plane_axes = {id(h), id(w)}
    reduce_ids = {id(r) for r in reduce_axes}
    ranges = {id(v): (0, v.extent - 1) for v in list(axes) + list(reduce_axes)}
    found = None
    for node in walk(source):
        if not isinstance(node, Load):
            continue
        used = {id(v) for idx in node.indices for v in walk(idx) if isinstance(v, Var)}
        if not used & plane_axes:
            if not _in_bounds(node, ranges):
                return None
            continue
        if not node.tensor.is_placeholder or len(node.indices) < 2:
            return None
        row = _offsets(node.indices[-2], h, reduce_ids, ranges)
        col = _offsets(node.indices[-1], w, reduce_ids, ranges)
        outer = node.indices[:-2]
        if row is None or col is None or any(
                {id(v) for v in walk(i) if isinstance(v, Var)} & (plane_axes | reduce_ids) for i in outer):
            return None
        if not all(_in_bounds_index(i, n, ranges) for i, n in zip(outer, node.tensor.shape)):
            return None
        key = (node.tensor, tuple(map(fmt, outer)), node.default)
        if found is not None and (found[0][0] is not key[0] or found[0][1:] != key[1:]):
            return None
        found = (key, outer, row, col) if found is None else (
            key, outer, (min(found[2][0], row[0]), max(found[2][1], row[1])),
            (min(found[3][0], col[0]), max(found[3][1], col[1])))
    if found is None:
        return None
    (tensor, _, default), outer, row, col = found
    layout = PlaneLayout(tensor, tuple(outer), default, row[0], row[1], col[0], col[1], h.extent, w.extent)
    if layout.padded_size + layout.flat_size > MAX_PLANE_POINTS:
        return None
    return layout


def _offsets(idx, axis, reduce_ids, ranges):
    """(lo, hi) of idx - axis over the reduce axes, when idx is axis plus a function of the
    reduce axes only; None otherwise."""
    if _coefficient(idx, axis) != 1:
        return None
    rest = substitute(idx, {axis: Const(0, "int64")})
    if {id(v) for v in walk(rest) if isinstance(v, Var)} - reduce_ids:
        return None
    return interval(rest, ranges)


def _in_bounds(load, ranges) -> bool:
    return all(_in_bounds_index(i, n, ranges) for i, n in zip(load.indices, load.tensor.shape))


def _in_bounds_index(idx, extent, ranges) -> bool:
    rng = interval(idx, ranges)
    return rng is not None and rng[0] >= 0 and rng[1] < extent


def emit_planes(low, st, tail, layout: PlaneLayout) -> list:
    """Statements computing window stage `st` plane by plane: one parallel loop over the
    outer output axes; per plane, the input plane copied into the interior of a padded
    buffer (its border holds the padding value from allocation on, and no plane writes it),
    one vectorized loop over the flat result at `width` points per row, and the rows' first W
    points copied out.

    The epilogue runs inside the flat loop when it reads nothing at (h, w) and every stored
    value is float32 (then each row goes out as masked vector copies); otherwise the flat
    loop keeps the raw reduction and the epilogue runs while copying out."""
    body = low.body[id(st)]
    axes, raxes = st.axis, st.reduce_axis
    h, w, outer_axes = axes[-2], axes[-1], axes[:-2]
    width, cols, rows = layout.width, layout.cols, layout.rows
    plane = Var(low.unique(f"{st.name}_plane"), None, "loop")
    head = decode_outer(plane, outer_axes)
    dtype = layout.tensor.dtype
    padded = Buffer(low.unique(f"{st.name}_padded"), (layout.padded_size,), dtype, "local", "local")
    stmts = head + [Allocate(padded, Const(layout.default, dtype))]
    stmts += _copy_in(low, layout, padded, width)

    j = Var(low.unique(f"{st.name}_flat"), None, "loop")
    value = low._resolve(unrolled_taps(body, raxes, lambda n: _padded_read(n, layout, padded, j, h, w)), {})

    # The epilogue's statements as written for the flat loop; kept only if they fit there and
    # every stored buffer is float32 (copied out by masked vector copies).
    fused = tail(value)
    if stores_at_point(st, fused, {id(h), id(w)}) and \
            all(s.buffer.dtype == "float32" for s in fused if isinstance(s, Store)):
        flats = {}
        for s in fused:
            if isinstance(s, Store):
                flats.setdefault(id(s.buffer), (s.buffer, Buffer(
                    low.unique(f"{s.buffer.name}_flat"), (layout.flat_size,), s.buffer.dtype, "local", "local")))
        stmts += [Allocate(flat) for _, flat in flats.values()]
        inner = [Store(flats[id(s.buffer)][1], (j,), s.value) if isinstance(s, Store) else s for s in fused]
        stmts.append(For(j, Const(layout.flat_size, "int64"), "vectorized", tuple(inner)))
        y = Var(low.unique(f"{st.name}_y"), None, "loop")
        copies = tuple(VectorCopy(out, flat_offset(out.shape, tuple(outer_axes) + (y, Const(0, "int64"))),
                                  flat, mul(y, Const(width, "int64")), cols, 1, Const(cols, "int64"))
                       for out, flat in flats.values())
        stmts.append(For(y, Const(rows, "int64"), "serial", copies))
    else:
        raw = Buffer(low.unique(f"{st.name}_flat"), (layout.flat_size,), st.tensor.dtype, "local", "local")
        v = Scalar(low.unique(f"{st.name}_r"), st.tensor.dtype)
        stmts += [Allocate(raw), For(j, Const(layout.flat_size, "int64"), "vectorized",
                                     (Assign(v, value), Store(raw, (j,), v)))]
        y, x = Var(low.unique(f"{st.name}_y"), None, "loop"), Var(low.unique(f"{st.name}_x"), None, "loop")
        point = Load(raw, (add(mul(y, Const(width, "int64")), x),))
        out = For(x, Const(cols, "int64"), "vectorized", (Assign(h, y), Assign(w, x)) + tuple(tail(point)))
        stmts.append(For(y, Const(rows, "int64"), "serial", (out,)))
    planes = math.prod(a.extent for a in outer_axes)
    return [For(plane, Const(planes, "int64"), "parallel", tuple(stmts))]


def decode_outer(index, outer_axes) -> list:
    """Assignments of the outer axes from the flat index of one row or plane."""
    out, rest = [], index
    for k, a in enumerate(reversed(outer_axes)):
        if k == len(outer_axes) - 1:
            out.append(Assign(a, rest))
        else:
            out.append(Assign(a, mod(rest, a.extent)))
            rest = floordiv(rest, a.extent)
    return out


def _copy_in(low, layout: PlaneLayout, padded, width: int) -> list:
    """The input plane's rows that the taps reach, each into its place in the padded copy."""
    src = low.buffers[id(layout.tensor)]
    in_rows, in_cols = layout.tensor.shape[-2], layout.tensor.shape[-1]
    y0, y1 = max(0, layout.row_lo), min(in_rows, layout.row_lo + layout.height)
    x0, x1 = max(0, layout.col_lo), min(in_cols, layout.col_lo + width)
    if y1 <= y0 or x1 <= x0:
        return []  # every read is padding
    y = Var(low.unique(f"{layout.tensor.name}_y"), None, "loop")
    row = add(y, Const(y0, "int64"))
    dst = add(mul(_minus(row, layout.row_lo), Const(width, "int64")), Const(x0 - layout.col_lo, "int64"))
    src_off = flat_offset(src.shape, layout.outer + (row, Const(x0, "int64")))
    count = x1 - x0
    if src.dtype == padded.dtype == "float32":
        copy = (VectorCopy(padded, dst, src, src_off, count, 1, Const(count, "int64")),)
    else:
        x = Var(low.unique(f"{layout.tensor.name}_x"), None, "loop")
        copy = (For(x, Const(count, "int64"), "vectorized",
                    (Store(padded, (add(dst, x),), Load(src, layout.outer + (row, add(x, Const(x0, "int64"))))),)),)
    return [For(y, Const(y1 - y0, "int64"), "serial", copy)]


def _minus(e, value: int):
    return add(e, Const(-value, "int64")) if value else e


def _padded_read(node, layout: PlaneLayout, padded, j, h, w):
    """A read of the plane at one tap as the flat loop's read of the padded copy."""
    if not (isinstance(node, Load) and node.tensor is layout.tensor and len(node.indices) >= 2
            and any(v is h for v in walk(node.indices[-2])) and any(v is w for v in walk(node.indices[-1]))):
        return None
    dr = interval(substitute(node.indices[-2], {h: Const(0, "int64")}), {})
    dc = interval(substitute(node.indices[-1], {w: Const(0, "int64")}), {})
    shift = (dr[0] - layout.row_lo) * layout.width + dc[0] - layout.col_lo
    return Load(padded, (add(j, Const(shift, "int64")),))


def stores_at_point(st, stmts, plane_axes) -> bool:
    """Whether the epilogue statements can run in a flat loop over a plane: nothing but the
    stores' indices mentions h or w, and every store is at exactly the stage's point."""
    for s in stmts:
        if isinstance(s, Assign):
            if any(isinstance(v, Var) and id(v) in plane_axes for v in walk(s.value)):
                return False
        elif isinstance(s, Store):
            if len(s.indices) != len(st.axis) or any(i is not a for i, a in zip(s.indices, st.axis)) or \
                    any(isinstance(v, Var) and id(v) in plane_axes for v in walk(s.value)):
                return False
        else:
            return False
    return True
