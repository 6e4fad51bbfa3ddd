"""Interval analysis of integer index expressions, to guard only the reads that can leave bounds."""
from __future__ import annotations

from .expr import Binary, Cast, Const, Expr, Load, Select, Var, as_expr, walk


def interval(e: Expr, ranges: dict):
    """(lo, hi) inclusive for an integer expression, or None when unknown.

    `ranges` maps id(Var) -> (lo, hi).
    """
    if isinstance(e, Const):
        return (e.value, e.value) if isinstance(e.value, int) else None
    if isinstance(e, Var):
        return ranges.get(id(e))
    if isinstance(e, Cast):
        return interval(e.a, ranges) if e.dtype in ("int32", "int64") else None
    if not isinstance(e, Binary):
        return None
    a, b = interval(e.a, ranges), interval(e.b, ranges)
    if a is None or b is None:
        return None
    if e.op == "add":
        return a[0] + b[0], a[1] + b[1]
    if e.op == "sub":
        return a[0] - b[1], a[1] - b[0]
    if e.op == "mul":
        prods = [x * y for x in a for y in b]
        return min(prods), max(prods)
    if e.op == "floordiv" and b[0] == b[1] and b[0] > 0:
        return a[0] // b[0], a[1] // b[0]
    if e.op == "mod" and b[0] == b[1] and b[0] > 0:
        return (a[0], a[1]) if 0 <= a[0] and a[1] < b[0] else (0, b[0] - 1)
    if e.op == "maximum":
        return max(a[0], b[0]), max(a[1], b[1])
    if e.op == "minimum":
        return min(a[0], b[0]), min(a[1], b[1])
    return None


def in_bounds_condition(load: Load, ranges: dict):
    """The condition under which every index of `load` is inside its tensor, or None if always."""
    conds = []
    for idx, extent in zip(load.indices, load.tensor.shape):
        rng = interval(idx, ranges)
        if rng is not None and rng[0] >= 0 and rng[1] < extent:
            continue
        if rng is None or rng[0] < 0:
            conds.append(Binary("ge", idx, Const(0, idx.dtype)))
        if rng is None or rng[1] >= extent:
            conds.append(Binary("lt", idx, Const(extent, idx.dtype)))
    return all_of(conds)


def all_of(conds):
    """The conjunction of the conditions that are not None, or None if there are none."""
    conds = [c for c in conds if c is not None]
    if not conds:
        return None
    cond = conds[0]
    for c in conds[1:]:
        cond = Binary("and", cond, c)
    return cond


def guard(load: Load, value: Expr, ranges: dict) -> Expr:
    """`value` (the load or what replaces it) where the load is in bounds, else its default."""
    cond = in_bounds_condition(load, ranges)
    if cond is None:
        return value
    return Select(cond, value, as_expr(float(load.default) if load.dtype.startswith("float")
                                       else int(load.default), like=load))


def affine_coefficient(e, var):
    """The integer coefficient of var in e if e is affine in var (0 if var is absent), else None."""
    if not any(n is var for n in walk(e)):
        return 0
    if e is var:
        return 1
    if isinstance(e, Binary) and e.op in ("add", "sub"):
        a, b = affine_coefficient(e.a, var), affine_coefficient(e.b, var)
        if a is None or b is None:
            return None
        return a + b if e.op == "add" else a - b
    if isinstance(e, Binary) and e.op == "mul":
        for x, y in ((e.a, e.b), (e.b, e.a)):
            if isinstance(y, Const) and not any(n is var for n in walk(y)):
                cx = affine_coefficient(x, var)
                return None if cx is None else cx * int(y.value)
    return None
