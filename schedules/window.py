"""Direct sliding-window kernels (depthwise convolution, pooling): taps unrolled, the innermost
output axis vectorized, and borders peeled instead of a padded copy of the input."""
from __future__ import annotations

import math
from dataclasses import dataclass

from .bounds import affine_coefficient as _coefficient, interval
from .errors import ScheduleError
from .expr import Const, Load, Reduce, Var, substitute, walk
from .loopnest import Assign, For, add, ceildiv, minimum, mul, sub
from .window_flat import emit_flat, flat_geometry
from .window_plane import MAX_PLANE_POINTS, decode_outer, emit_planes, plane_layout
from .window_points import OVERLAP_LANES, guarded_point, whole_vector_chunks

# Every tap is written out, so a window of more taps would make the loop body (and the
# compile) too large; 7x7 windows still qualify.
MAX_TAPS = 64


@dataclass(frozen=True, eq=False)
class WindowPlan:
    block: object   # Expr: the vectorized loop's chunk of output columns (a runtime knob)
    planes: bool = False  # whole output planes as flat loops over a padded copy (window_plane)
    flat: bool = False    # whole output planes as flat loops over the input in place (window_flat)


def is_window(axes, reduce_axes, body) -> bool:
    """Whether a stage is a small sliding-window reduction whose innermost output axis can run
    as one vectorized loop: every reduce axis has a constant extent, all taps together are at
    most MAX_TAPS, some input is read at a spatial axis shifted by a reduce axis, and every
    out-of-bounds-prone index moves forward with the innermost axis (or not at all)."""
    if not isinstance(body, Reduce) or not reduce_axes or len(axes) < 2 or axes[-1].extent < 2:
        return False
    if math.prod(r.extent for r in reduce_axes) > MAX_TAPS:
        return False
    spatial, reduce = {id(a) for a in axes}, {id(r) for r in reduce_axes}
    sliding = False
    for node in walk(body.source):
        if isinstance(node, Load) and node.tensor.is_placeholder:
            for idx in node.indices:
                used = {id(v) for v in walk(idx) if isinstance(v, Var)}
                sliding |= bool(used & spatial) and bool(used & reduce)
    return sliding and interior(axes, reduce_axes, body.source) is not None


def interior(axes, reduce_axes, source):
    """(lo, hi): the innermost output positions at which every placeholder read is in bounds
    for every tap, or None when some read's index is not increasing affine in that axis."""
    o = axes[-1]
    ranges = {id(v): (0, v.extent - 1) for v in list(axes) + list(reduce_axes)}
    lo, hi = 0, o.extent
    for node in walk(source):
        if not (isinstance(node, Load) and node.tensor.is_placeholder):
            continue
        for idx, n in zip(node.indices, node.tensor.shape):
            rng = interval(idx, ranges)
            if rng is not None and rng[0] >= 0 and rng[1] < n:
                continue
            a = _coefficient(idx, o)
            if a == 0:
                continue  # guarded once per row, outside the vectorized loop
            rest = interval(substitute(idx, {o: Const(0, "int64")}), ranges)
            if a is None or a < 0 or rest is None:
                return None
            lo = max(lo, -(rest[0] // a))         # a*o + rest_lo >= 0
            hi = min(hi, (n - 1 - rest[1]) // a + 1)  # a*o + rest_hi <= n - 1
    lo = min(lo, o.extent)
    return lo, max(hi, lo)


def emit_window(low, st, tail) -> list:
    """Statements computing window stage `st`: one parallel loop over output rows; in each row
    the peeled left and right borders (reads guarded) and the interior in vectorized chunks
    (reads guarded only along the outer axes, by a select on a clamped load)."""
    plan: WindowPlan = st.window
    body = low.body[id(st)]
    axes, raxes = st.axis, st.reduce_axis
    if not is_window(axes, raxes, body):
        raise ScheduleError(
            f"window kernel on stage {st.name} of {low.op.name}: the stage is not a sliding-window "
            f"reduction of at most {MAX_TAPS} constant taps read forward along its last axis; "
            f"keep it on the tiled schedule")
    if plan.flat:
        layout = plane_layout(axes, raxes, body.source)
        geometry = None if layout is None else flat_geometry(layout)
        if geometry is None:
            raise ScheduleError(
                f"window kernel on stage {st.name} of {low.op.name}: the flat layout needs every read "
                f"along the last two axes at unit stride, input rows as long as the output's "
                f"('same' padding) and a plane of at most {MAX_PLANE_POINTS} values; use the row layout")
        return emit_flat(low, st, tail, layout, geometry, plan.block)
    if plan.planes:
        layout = plane_layout(axes, raxes, body.source)
        if layout is None:
            raise ScheduleError(
                f"window kernel on stage {st.name} of {low.op.name}: planes need every read along "
                f"the last two axes at unit stride and a plane of at most {MAX_PLANE_POINTS} values "
                f"padded; use the row layout")
        return emit_planes(low, st, tail, layout)
    o, outer = axes[-1], axes[:-1]
    lo, hi = interior(axes, raxes, body.source)
    row = Var(low.unique(f"{st.name}_row"), None, "loop")
    rows = math.prod(a.extent for a in outer)
    head = decode_outer(row, outer)

    def point(o_range) -> list:
        ranges = {id(v): (0, v.extent - 1) for v in axes}
        ranges[id(o)] = o_range
        return guarded_point(low, body, raxes, ranges, tail)

    loops = []
    if lo > 0:
        j = Var(low.unique(f"{st.name}_left"), None, "loop")
        loops.append(For(j, Const(lo, "int64"), "serial", (Assign(o, j),) + tuple(point((0, lo - 1)))))
    if hi > lo:
        chunk, j = Var(low.unique(f"{st.name}_chunk"), None, "loop"), Var(low.unique(f"{st.name}_j"), None, "loop")
        start = Var(low.unique(f"{st.name}_c0"), None, "index")
        length = Var(low.unique(f"{st.name}_n"), None, "index")
        width = hi - lo
        if width >= OVERLAP_LANES:
            count, begin, size = whole_vector_chunks(chunk, plan.block, lo, hi)
        else:
            # A runtime chunk length: LLVM fully unrolls a short constant trip count and then,
            # with Numba's SLP vectorizer off, leaves the copies scalar.
            count = ceildiv(Const(width, "int64"), plan.block)
            begin = add(Const(lo, "int64"), mul(chunk, plan.block))
            size = minimum(plan.block, sub(Const(hi, "int64"), begin))
        inner = For(j, length, "vectorized", (Assign(o, add(start, j)),) + tuple(point((lo, hi - 1))))
        loops.append(For(chunk, count, "serial", (Assign(start, begin), Assign(length, size), inner)))
    if hi < o.extent:
        j = Var(low.unique(f"{st.name}_right"), None, "loop")
        loops.append(For(j, Const(o.extent - hi, "int64"), "serial",
                         (Assign(o, add(Const(hi, "int64"), j)),) + tuple(point((hi, o.extent - 1)))))
    return [For(row, Const(rows, "int64"), "parallel", tuple(head + loops))]
