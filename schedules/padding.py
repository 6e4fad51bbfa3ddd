"""Padded copies of inputs, so that windowed reads (convolution, pooling) need no bounds checks.

A guarded read `x[i + r - 1] if 0 <= i + r - 1 < n else 0` inside the innermost loop stops
LLVM from vectorizing it. Instead each input that is read out of bounds gets one scratch copy
with margins filled with the read's default value, filled once before the loop nests, and the
read becomes a plain shifted load, as TVM does with an explicit pad stage.
"""
from __future__ import annotations

import math

from .bounds import interval
from .expr import Const, Load, rebuild
from .loopnest import Buffer, Fill, For, Store, add

# A padded copy may hold at most this many times the input's elements; beyond, reads stay guarded.
MAX_GROWTH = 4.0


class PadPlan:
    """The margins one input needs for one out-of-bounds value, widened read by read."""

    def __init__(self, tensor, default):
        self.tensor, self.default = tensor, default
        self.name, self.dtype = f"{tensor.name}_pad", tensor.dtype
        self.lo = [0] * tensor.ndim
        self.hi = [0] * tensor.ndim
        self.buffer = None

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
        stmts.append(Fill(plan.buffer, value))
        from .expr import Var
        loops = [Var(f"{plan.buffer.name}_{d}", None, "loop") for d in range(t.ndim)]
        stmt = Store(plan.buffer, tuple(add(v, a) for v, a in zip(loops, plan.lo)),
                     Load(source_buffers[id(t)], tuple(loops)))
        for d in reversed(range(t.ndim)):
            stmt = For(loops[d], Const(t.shape[d], "int64"), "parallel" if d == 0 else "serial", (stmt,))
        stmts.append(stmt)
    return buffers, stmts


def resolve(body, plans_by_id: dict):
    """Point reads of pad plans at their finished buffers, shifted by the low margins."""
    def rewrite(node):
        if isinstance(node, Load) and id(node.tensor) in plans_by_id:
            plan = plans_by_id[id(node.tensor)]
            return Load(plan.buffer, tuple(add(i, a) for i, a in zip(node.indices, plan.lo)))
        return None
    return rebuild(body, rewrite)
