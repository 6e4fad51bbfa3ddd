"""Padded copies of inputs, so that windowed reads (convolution, pooling) need no bounds checks.

A guarded read `x[i + r - 1] if 0 <= i + r - 1 < n else 0` inside the innermost loop stops
LLVM from vectorizing it. Instead each input that is read out of bounds gets one scratch copy
with margins filled with the read's default value, filled once before the loop nests, and the
read becomes a plain shifted load, as TVM does with an explicit pad stage.
"""
from __future__ import annotations

import math

from .bounds import interval
from .expr import Binary, Const, Load, rebuild
from .loopnest import Buffer, Fill, For, If, Store, add, is_const
from .options import pad_rows

# A padded copy may hold at most this many times the input's elements; beyond, reads stay guarded.
MAX_GROWTH = 4.0
_ITEM_BYTES = {"float32": 4, "int32": 4, "float64": 8}


class PadPlan:
    """The margins one input needs for one out-of-bounds value, widened read by read."""

    def __init__(self, tensor, default):
        self.tensor, self.default = tensor, default
        self.name, self.dtype = f"{tensor.name}_pad", tensor.dtype
        self.lo = [0] * tensor.ndim
        self.hi = [0] * tensor.ndim
        self.buffer = None
        # Whether every reader is a micro-kernel reading its pixels unpacked from the copy, tap
        # by tap, and the first one's parts_m (an int or a runtime knob): when it splits the
        # output's pixels between threads, the pad step is split over image rows to match.
        self.direct_readers_only = True
        self.reader_parts_m = None

    def try_widen(self, load: Load, ranges: dict) -> bool:
        lo, hi = list(self.lo), list(self.hi)
        for d, (idx, extent) in enumerate(zip(load.indices, self.tensor.shape)):
            rng = interval(idx, ranges)
            if rng is None:
                return False
            lo[d] = max(lo[d], -rng[0])
            hi[d] = max(hi[d], rng[1] - (extent - 1))
        padded = math.prod(n + a + b for n, a, b in zip(self.tensor.shape, lo, hi))
        if padded > MAX_GROWTH * math.prod(self.tensor.shape):
            return False
        self.lo, self.hi = lo, hi
        return True


def padded_read(plan: PadPlan, load: Load) -> Load:
    return Load(plan, load.indices, load.default)


def finalize(plans, source_buffers: dict, unique) -> tuple:
    """Create the buffers and the fill-and-copy statements; returns (buffers, statements)."""
    buffers, stmts = [], []
    for plan in plans:
        t = plan.tensor
        shape = tuple(n + a + b for n, a, b in zip(t.shape, plan.lo, plan.hi))
        plan.buffer = Buffer(unique(plan.name), shape, t.dtype, "global", "temp")
        buffers.append(plan.buffer)
        value = Const(plan.default if t.dtype.startswith("float") else int(plan.default), t.dtype)
        source = source_buffers[id(t)]
        margins = [d for d in range(t.ndim) if plan.lo[d] or plan.hi[d]]
        by_rows = _split_by_rows(plan, shape, margins)
        if t.dtype == "float32" and margins and t.ndim > 1:
            stmts.append(_by_lines(plan, shape, value, source, margins[0], by_rows))
        elif by_rows is None:
            stmts.extend(_fill_and_copy(plan, shape, value, source))
        elif is_const(by_rows):
            stmts.extend(_rows_of_margin_axis(plan, shape, value, source, margins[0]) if by_rows.value
                         else _fill_and_copy(plan, shape, value, source))
        else:
            stmts.append(_rows_or_channels(plan, shape, value, source, margins[0], by_rows))
    return buffers, stmts


def _by_lines(plan, shape: tuple, value, source, row_axis: int, by_rows) -> For:
    """A float32 pad step that writes each element once: every line of the copy (a run along
    its last axis) inside the margins of the other axes gets its low margin, then the input's
    line by vector copy, then its high margin; every other line is filled with the default.
    Elementwise, LLVM vectorized neither the fill nor the copy (64x56x56's 0.86 MB pad step:
    0.043 ms). Parallel over the padded rows (`row_axis`) where `by_rows` holds, else over
    the first axis with more than one index (channels, at batch 1)."""
    from .expr import Select, Unary, Var
    t = plan.tensor
    par = next((d for d in range(t.ndim) if t.shape[d] > 1), 0)
    if par == t.ndim - 1:  # only the lines' own axis has more than one index
        par = 0
    slab = Var(f"{plan.buffer.name}_slab", None, "loop")
    rows_body = _lines_of_slab(plan, shape, value, source, row_axis, slab)
    if by_rows is None or (is_const(by_rows) and not by_rows.value) or row_axis == t.ndim - 1:
        return For(slab, Const(shape[par], "int64"), "parallel", _lines_of_slab(plan, shape, value, source, par, slab))
    if is_const(by_rows) or par == row_axis:
        return For(slab, Const(shape[row_axis], "int64"), "parallel", rows_body)
    channels_body = _lines_of_slab(plan, shape, value, source, par, slab)
    return For(slab, Select(by_rows, Const(shape[row_axis], "int64"), Const(shape[par], "int64")), "parallel",
               (If(by_rows, rows_body), If(Unary("not", by_rows), channels_body)))


def _lines_of_slab(plan, shape: tuple, value, source, axis: int, slab) -> tuple:
    """The statements writing every line of the copy whose index on `axis` is `slab`."""
    from .expr import Unary, Var
    from .loopnest import VectorCopy, flat_offset
    t, buf, last = plan.tensor, plan.buffer, plan.tensor.ndim - 1
    name = buf.name
    index = {d: slab if d == axis else Var(f"{name}_{d}", None, "loop") for d in range(last)}
    inside = None
    for d in range(last):
        if plan.lo[d] or plan.hi[d]:
            cond = Binary("and", Binary("ge", index[d], Const(plan.lo[d], "int64")),
                          Binary("lt", index[d], Const(plan.lo[d] + t.shape[d], "int64")))
            inside = cond if inside is None else Binary("and", inside, cond)
    x = Var(f"{name}_x", None, "loop")
    head = tuple(index[d] for d in range(last))

    def fill(start, count):
        at = add(x, Const(start, "int64"))
        return For(x, Const(count, "int64"), "serial", (Store(buf, head + (at,), value),))
    width = t.shape[last]
    src = flat_offset(t.shape, tuple(add(index[d], Const(-plan.lo[d], "int64")) for d in range(last)) + (0,))
    dst = flat_offset(shape, head + (Const(plan.lo[last], "int64"),))
    copy = VectorCopy(buf, dst, source, src, width, 1, None if width % 8 == 0 else Const(width, "int64"))
    line = tuple(s for s in (fill(0, plan.lo[last]) if plan.lo[last] else None, copy,
                             fill(plan.lo[last] + width, plan.hi[last]) if plan.hi[last] else None) if s)
    body = line if inside is None else (If(inside, line), If(Unary("not", inside), (fill(0, shape[last]),)))
    for d in reversed(range(last)):
        if d != axis:
            body = (For(index[d], Const(shape[d], "int64"), "serial", body),)
    return body


def _split_by_rows(plan, shape: tuple, margins: list):
    """None where the copy is split over channels; else a condition, constant or on runtime
    knobs, for splitting it over the padded rows of its outermost margin axis: that the
    micro-kernel reading it splits the output's pixels (parts_m) between threads. Then each
    thread reads the rows it wrote; split over channels, half of every tile's input came from
    the other core (conv 128x28x28 3x3 at its tuned parts_m 2: rows 0.972-0.984 of channels'
    time, 3 processes of 7 alternating rounds; 256x14x14 at parts_m 4: 0.989-1.004). A reader
    splitting filters reads every row on every thread, and rows would only add the cache
    line both threads write where their rows meet, in each channel (512x7x7 at parts_m 1:
    1.018)."""
    if not (plan.direct_readers_only and margins and shape[margins[0]] > 1 and pad_rows()):
        return None
    parts_m = plan.reader_parts_m if plan.reader_parts_m is not None else Const(1, "int64")
    if is_const(parts_m):
        return Const(int(parts_m.value) >= 2, "bool")
    return Binary("ge", parts_m, Const(2, "int64"))


def _rows_or_channels(plan, shape: tuple, value, source, axis: int, by_rows) -> For:
    """One parallel pad step that is split over rows where `by_rows` holds at run time and over
    channels otherwise, so that the choice can follow a runtime knob."""
    from .expr import Select, Unary, Var
    slab = Var(f"{plan.buffer.name}_slab", None, "loop")
    (rows,) = _rows_of_margin_axis(plan, shape, value, source, axis, slab)
    channels = _fill_and_copy(plan, shape, value, source, slab)
    if len(channels) != 1:  # a Fill first: no axis outside the margins to split over
        return rows
    (channels,) = channels
    return For(slab, Select(by_rows, rows.extent, channels.extent), "parallel",
               (If(by_rows, rows.body), If(Unary("not", by_rows), channels.body)))


def _rows_of_margin_axis(plan, shape: tuple, value, source, axis: int, row=None) -> list:
    """The pad step parallel over the padded extent of its outermost margin axis (an NCHW
    image's rows): each index fills its slab with the default, then copies the slab's
    interior while it is in cache. A micro-kernel splitting a conv's pixels between threads
    then reads the rows its own thread wrote: split by channels, half of every tile's input
    came from the other core's cache (64x56x56 3x3: 1.356 -> 1.235 ms, 9 rounds in one
    process; the 7x7 stride-2 stem on swapped tiles, 3 channels split 2:1: 1.240 -> 1.130)."""
    from .expr import Var
    t = plan.tensor
    row = Var(f"{plan.buffer.name}_{axis}", None, "loop") if row is None else row
    others = [d for d in range(t.ndim) if d != axis]
    fill_vars = {d: Var(f"{plan.buffer.name}_f{d}", None, "loop") for d in others}
    copy_vars = {d: Var(f"{plan.buffer.name}_{d}", None, "loop") for d in others}
    fill = Store(plan.buffer, tuple(row if d == axis else fill_vars[d] for d in range(t.ndim)), value)
    src_row = add(row, Const(-plan.lo[axis], "int64"))
    copy = Store(plan.buffer, tuple(row if d == axis else add(copy_vars[d], plan.lo[d]) for d in range(t.ndim)),
                 Load(source, tuple(src_row if d == axis else copy_vars[d] for d in range(t.ndim))))
    for d in reversed(others):
        fill = For(fill_vars[d], Const(shape[d], "int64"), "serial", (fill,))
        copy = For(copy_vars[d], Const(t.shape[d], "int64"), "serial", (copy,))
    inside = Binary("and", Binary("ge", row, Const(plan.lo[axis], "int64")),
                    Binary("lt", row, Const(plan.lo[axis] + t.shape[axis], "int64")))
    return [For(row, Const(shape[axis], "int64"), "parallel", (fill, If(inside, (copy,))))]


def _fill_and_copy(plan, shape: tuple, value, source, par_var=None) -> list:
    """The pad step, parallel over an outer axis with more than one index (batch 1 would leave
    every thread but one idle). When that axis is outside every margin (NCHW's channels), each
    of its slices is a contiguous block, filled with the default and then given its interior
    while still in cache: one pass. Otherwise the whole buffer is filled first."""
    from .expr import Var
    t = plan.tensor
    loops = [Var(f"{plan.buffer.name}_{d}", None, "loop") for d in range(t.ndim)]
    margins = [d for d in range(t.ndim) if plan.lo[d] or plan.hi[d]]
    outer = margins[0] if margins else t.ndim
    par = next((d for d in range(t.ndim) if t.shape[d] > 1), 0)
    if par_var is not None:
        loops[par] = par_var
    rest = [d for d in range(t.ndim) if d != par]
    copy = Store(plan.buffer, tuple(add(v, a) for v, a in zip(loops, plan.lo)), Load(source, tuple(loops)))
    for d in reversed(rest):
        copy = For(loops[d], Const(t.shape[d], "int64"), "serial", (copy,))
    if par >= outer:
        return [Fill(plan.buffer, value), For(loops[par], Const(t.shape[par], "int64"), "parallel", (copy,))]
    # Outside the margins, an index is the same in the buffer and in the input.
    fill_vars = {d: Var(f"{plan.buffer.name}_f{d}", None, "loop") for d in rest}
    fill = Store(plan.buffer, tuple(loops[par] if d == par else fill_vars[d] for d in range(t.ndim)), value)
    for d in reversed(rest):
        fill = For(fill_vars[d], Const(shape[d], "int64"), "serial", (fill,))
    return [For(loops[par], Const(t.shape[par], "int64"), "parallel", (fill, copy))]


def resolve(body, plans_by_id: dict):
    """Point reads of pad plans at their finished buffers, shifted by the low margins."""
    def rewrite(node):
        if isinstance(node, Load) and id(node.tensor) in plans_by_id:
            plan = plans_by_id[id(node.tensor)]
            return Load(plan.buffer, tuple(add(i, a) for i, a in zip(node.indices, plan.lo)))
        return None
    return rebuild(body, rewrite)
