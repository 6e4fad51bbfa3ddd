"""Reading a micro-kernel operand in place: which loads qualify, the offset tables of a conv's
pixels read unpacked from its padded input, and which of their taps read only padding."""
from __future__ import annotations

from dataclasses import dataclass

from .bounds import affine_coefficient as _coefficient
from .bounds import interval
from .expr import Const, Load, substitute
from .loopnest import Buffer, flat_offset, floordiv, maximum, minimum, mul, sub

# Swapped conv tiles skip the row taps that read padding where those are at least this share
# of the reduction. Skipping puts the row tap first in k, so consecutive k steps read other
# channels' planes instead of neighbouring taps, which costs where planes are large: 64x56x56
# (1.2% of taps in padding) took 1.008x as long, 128x28x28 (2.4%) 0.995x, 256x14x14 (4.8%)
# 0.978x and 512x7x7 (9.5%) 0.919x (tuned configs, 9 interleaved rounds, 2026-12-05).
MIN_SKIPPED_TAPS = 0.04


def plain_load(value) -> bool:
    """A float32 load from a buffer of constant shape, addressable as flat C-contiguous data."""
    return (isinstance(value, Load) and isinstance(value.tensor, Buffer) and value.tensor.dtype == "float32"
            and bool(value.indices) and all(isinstance(d, int) for d in value.tensor.shape))


def flat_index(load):
    """The element offset of a load in its C-contiguous buffer."""
    return flat_offset(load.tensor.shape, load.indices)


@dataclass(frozen=True)
class RowTaps:
    """The reduce axis whose taps move a conv's reads across image rows (see row_taps)."""
    position: int          # among the stage's reduce axes
    bounds: object         # (first row, last row) Exprs -> (first tap, last tap) Exprs
    padding_share: float   # of all (output row, tap) pairs, those that read padding


def row_taps(low, value, axes, m_group, raxes) -> RowTaps | None:
    """The row taps of a conv whose pixels are read from a padded copy at an index
    a * row + b * tap + c in one dimension (a, b > 0; `row` the outermost pixel axis, `tap`
    one reduce axis): bounds(first, last) gives the first and last tap that reads an image
    row, not padding, for some row in [first, last], clipped to the tap's extent. None where
    the read is not like that."""
    if not plain_load(value):
        return None
    plan = next((p for p in low.pads.values() if p.buffer is value.tensor), None)
    if plan is None:
        return None
    row = axes[m_group[0]]
    for d, index in enumerate(value.indices):
        a = _coefficient(index, row)
        steps = [_coefficient(index, r) for r in raxes]
        others = [_coefficient(index, ax) for ax in axes if ax is not row]
        if not a or a < 0 or None in steps or None in others or any(others) \
                or sum(1 for b in steps if b) != 1:
            continue
        q = next(k for k, b in enumerate(steps) if b)
        b = steps[q]
        rest = interval(substitute(index, {row: Const(0, "int64"), raxes[q]: Const(0, "int64")}), {})
        if b < 0 or rest is None or rest[0] != rest[1]:
            continue
        # An image row of the copy: lo <= index < lo + n (the input's extent, past its margin).
        c, lo, n, extent = rest[0], plan.lo[d], plan.tensor.shape[d], raxes[q].extent

        def bounds(first, last, a=a, b=b, c=c, lo=lo, n=n, extent=extent):
            low_tap = floordiv(sub(Const(lo - c + b - 1, "int64"), mul(last, Const(a, "int64"))), Const(b, "int64"))
            high_tap = floordiv(sub(Const(lo + n - 1 - c, "int64"), mul(first, Const(a, "int64"))),
                                Const(b, "int64"))
            return (maximum(low_tap, Const(0, "int64")), minimum(high_tap, Const(extent - 1, "int64")))
        rows = row.extent
        reads = sum(1 for o in range(rows) for t in range(extent) if lo <= a * o + b * t + c < lo + n)
        return RowTaps(q, bounds, 1.0 - reads / (rows * extent))
    return None


def direct_offsets(value, axes, m_group, raxes):
    """(row offset, k offset) with value at (m, k) = its buffer's flat data[row + k offset],
    when value is a plain load whose flat offset is affine in the M axes and the reduce axes:
    the row offset reads the stage axes (M and batch), the k offset only the reduce axes.
    None when it is not such a load."""
    if not plain_load(value):
        return None
    flat = flat_index(value)
    if any(_coefficient(flat, v) is None for v in [axes[d] for d in m_group] + list(raxes)):
        return None
    zero = Const(0, "int64")
    k_off = substitute(flat, {ax: zero for ax in axes})
    origin = substitute(k_off, {r: zero for r in raxes})
    return sub(substitute(flat, {r: zero for r in raxes}), origin), k_off
