"""Points of sliding-window kernels: a window's value at one point with its out-of-bounds
reads guarded, and the split of a vectorized run into whole vector chunks."""
from __future__ import annotations

import itertools

from .bounds import interval
from .expr import Binary, Const, Load, Select, rebuild, reduce_combine, substitute
from .loopnest import Assign, Scalar, floordiv, sub

# Interior chunks are whole multiples of this many points where the row allows: the float32
# lanes of an AVX-512 vector, two AVX2 vectors. Every block knob value is a multiple of it.
OVERLAP_LANES = 16


def unrolled_taps(body, reduce_axes, read):
    """The window reduction `body` with every tap written out and combined, each node of each
    tap's term rewritten by `read` (a rebuild callback: a replacement, or None to keep it)."""
    value = None
    for tap in itertools.product(*(range(r.extent) for r in reduce_axes)):
        term = rebuild(substitute(body.source, {r: Const(v, "int64") for r, v in zip(reduce_axes, tap)}), read)
        value = term if value is None else reduce_combine(body.combiner, value, term)
    return value


def guarded_point(low, body, reduce_axes, ranges, sink) -> list:
    """Statements computing a window reduction at the point its axes are assigned to, then
    `sink(value)`: each placeholder read that the axes' intervals in `ranges` do not keep in
    bounds becomes a clamped load behind a select of its default."""
    stmts = []
    value = unrolled_taps(body, reduce_axes, lambda n: _guarded(low, n, ranges, stmts))
    return stmts + sink(low._resolve(value, {}))


def whole_vector_chunks(chunk, block, lo: int, hi: int) -> tuple:
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

