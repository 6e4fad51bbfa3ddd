"""Direct sliding-window kernels (depthwise convolution, pooling): taps unrolled, the innermost
output axis vectorized, and borders peeled instead of a padded copy of the input."""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from .bounds import affine_coefficient as _coefficient, interval
from .errors import ScheduleError
from .expr import Binary, Const, Load, Reduce, Select, Var, rebuild, reduce_combine, substitute, walk
from .loopnest import Assign, For, Scalar, add, ceildiv, floordiv, minimum, mul, sub
from .window_plane import MAX_PLANE_POINTS, decode_outer, emit_planes, plane_layout

# Every tap is written out, so a window of more taps would make the loop body (and the
# compile) too large; 7x7 windows still qualify.
MAX_TAPS = 64
# Interior chunks are whole multiples of this many points where the row allows: the float32
# lanes of an AVX-512 vector, two AVX2 vectors. Every block knob value is a multiple of it.
OVERLAP_LANES = 16


@dataclass(frozen=True, eq=False)
class WindowPlan:
    block: object   # Expr: the vectorized loop's chunk of output columns (a runtime knob)
    planes: bool = False  # whole output planes as flat loops over a padded copy (window_plane)


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
    combiner = body.combiner
    row = Var(low.unique(f"{st.name}_row"), None, "loop")
    rows = math.prod(a.extent for a in outer)
    head = decode_outer(row, outer)
    taps = list(itertools.product(*(range(r.extent) for r in raxes)))

    def point(o_range) -> list:
        ranges = {id(v): (0, v.extent - 1) for v in axes}
        ranges[id(o)] = o_range
        stmts, value = [], None
        for tap in taps:
            term = substitute(body.source, {r: Const(v, "int64") for r, v in zip(raxes, tap)})
            term = rebuild(term, lambda n: _guarded(low, n, ranges, stmts))
            value = term if value is None else reduce_combine(combiner, value, term)
        return stmts + tail(low._resolve(value, {}))

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
            count, begin, size = _whole_vector_chunks(chunk, plan.block, lo, hi)
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


def _whole_vector_chunks(chunk, block, lo: int, hi: int) -> tuple:
    """(count, start, length) of the interior's chunks when it spans at least one vector: the
    whole vectors from lo, then, if points are left over, one vector ending at hi. That last
    one starts early and recomputes a few points (the same values) instead of leaving up to 15
    points to LLVM's scalar remainder, which took a fifth of a 56-wide row's time (144x56x56
    depthwise on one thread: 305 -> 250 us).

    The first chunk's length is a constant multiple of the vector, so LLVM emits no remainder
    for it; a runtime-sized chunk loop was slower (285 us). A one-vector length is written as
    block // (block // 16), which is 16 for every block knob value: seeing a constant 16, LLVM
    unrolls the loop and leaves it scalar."""
    whole = (hi - lo) // OVERLAP_LANES * OVERLAP_LANES
    vector = floordiv(block, floordiv(block, Const(OVERLAP_LANES, "int64")))
    first = vector if whole == OVERLAP_LANES else Const(whole, "int64")
    if whole == hi - lo:
        return Const(1, "int64"), Const(lo, "int64"), first
    last = Binary("eq", chunk, Const(1, "int64"))
    return (Const(2, "int64"), Select(last, sub(Const(hi, "int64"), vector), Const(lo, "int64")),
            Select(last, vector, first))


def _guarded(low, node, ranges, stmts):
    """A placeholder read that may leave its tensor: the load at clamped indices, always
    executed (so LLVM can vectorize it), then a select of its default where out of bounds."""
    if not (isinstance(node, Load) and node.tensor.is_placeholder):
        return None
    conds, indices = [], []
    for idx, n in zip(node.indices, node.tensor.shape):
        rng = interval(idx, ranges)
        if rng is not None and rng[0] >= 0 and rng[1] < n:
            indices.append(idx)
            continue
        conds.append(Binary("and", Binary("ge", idx, Const(0, "int64")), Binary("lt", idx, Const(n, "int64"))))
        indices.append(Binary("minimum", Binary("maximum", idx, Const(0, "int64")), Const(n - 1, "int64")))
    if not conds:
        return None
    cond = conds[0]
    for cnd in conds[1:]:
        cond = Binary("and", cond, cnd)
    raw = Scalar(low.unique(f"{node.tensor.name}_w"), node.dtype)
    kept = Scalar(low.unique(f"{node.tensor.name}_g"), node.dtype)
    default = node.default if node.dtype.startswith("float") else int(node.default)
    stmts.append(Assign(raw, low._resolve(Load(node.tensor, tuple(indices), node.default), {})))
    stmts.append(Assign(kept, Select(cond, raw, Const(default, node.dtype))))
    return kept

