"""Numpy evaluation of an Operator, stage by stage: the correctness oracle, plus FLOP counting."""
from __future__ import annotations

import math

import numpy as np

from .expr import MATH_FUNCTION, Binary, Cast, Const, Expr, Load, Reduce, Select, Unary, Var, walk

# Each chunk of a stage's iteration domain (spatial x reduce points) stays below this many
# elements, so big reductions are evaluated in slices instead of one huge broadcast.
CHUNK_ELEMENTS = 1 << 22

_erf = np.frompyfunc(math.erf, 1, 1)

_UNARY = {
    "exp": np.exp, "log": np.log, "sqrt": np.sqrt, "tanh": np.tanh, "abs": np.abs,
    "neg": np.negative, "not": np.logical_not,
    "sigmoid": lambda x: (1.0 / (1.0 + np.exp(-x))).astype(x.dtype),
    "erf": lambda x: _erf(x.astype(np.float64)).astype(x.dtype),
}
_BINARY = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "floordiv": np.floor_divide,
    "mod": np.mod, "maximum": np.maximum, "minimum": np.minimum, "lt": np.less,
    "le": np.less_equal, "gt": np.greater, "ge": np.greater_equal, "eq": np.equal,
    "ne": np.not_equal, "and": np.logical_and, "or": np.logical_or,
    "bitand": np.bitwise_and, "bitor": np.bitwise_or,
}


def evaluate(op, arrays) -> dict:
    """Map id(tensor) -> numpy array for every input and stage of the operator."""
    values = {id(t): a for t, a in zip(op.inputs, arrays)}
    with np.errstate(all="ignore"):
        for stage in op.stages:
            values[id(stage)] = _evaluate_stage(stage, values)
    return values


def _evaluate_stage(stage, values) -> np.ndarray:
    out = np.empty(stage.shape, dtype=stage.dtype)
    reduce_axes = stage.reduce_axes
    reduce_points = math.prod(a.extent for a in reduce_axes)
    row_points = max(1, math.prod(stage.shape[1:]) * reduce_points)
    rows = max(1, CHUNK_ELEMENTS // row_points)
    ndim = stage.ndim + len(reduce_axes)
    for lo in range(0, stage.shape[0], rows):
        hi = min(stage.shape[0], lo + rows)
        env = {}
        for pos, axis in enumerate(list(stage.axes) + list(reduce_axes)):
            start, stop = (lo, hi) if pos == 0 else (0, axis.extent)
            shape = [1] * ndim
            shape[pos] = stop - start
            env[id(axis)] = np.arange(start, stop, dtype=np.int64).reshape(shape)
        domain = (hi - lo,) + stage.shape[1:] + tuple(a.extent for a in reduce_axes)
        body = stage.body
        if isinstance(body, Reduce):
            src = np.broadcast_to(_eval(body.source, env, values), domain)
            axes = tuple(range(stage.ndim, ndim))
            if body.combiner == "sum":
                acc = np.float64 if src.dtype.kind == "f" else np.int64
                res = np.sum(src, axis=axes, dtype=acc)
            else:
                res = (np.max if body.combiner == "max" else np.min)(src, axis=axes)
            out[lo:hi] = res.astype(stage.dtype)
        else:
            out[lo:hi] = np.broadcast_to(_eval(body, env, values), domain)
    return out


def _eval(e: Expr, env: dict, values: dict):
    if isinstance(e, Const):
        return np.asarray(e.value, dtype=e.dtype)
    if isinstance(e, Var):
        return env[id(e)]
    if isinstance(e, Binary):
        a, b = _eval(e.a, env, values), _eval(e.b, env, values)
        if e.op == "div":
            dt = np.dtype(e.dtype)
            return np.true_divide(a.astype(dt, copy=False), b.astype(dt, copy=False)).astype(dt)
        return _BINARY[e.op](a, b).astype(e.dtype, copy=False)
    if isinstance(e, Unary):
        return _UNARY[MATH_FUNCTION.get(e.fn, e.fn)](_eval(e.a, env, values)).astype(e.dtype, copy=False)
    if isinstance(e, Cast):
        return _eval(e.a, env, values).astype(e.dtype)
    if isinstance(e, Select):
        cond = _eval(e.cond, env, values)
        return np.where(cond, _eval(e.a, env, values), _eval(e.b, env, values)).astype(e.dtype)
    if isinstance(e, Load):
        return _load(e, env, values)
    if isinstance(e, Reduce):
        raise ValueError("nested reductions are not allowed")
    raise TypeError(type(e))


def _load(e: Load, env: dict, values: dict):
    data = values[id(e.tensor)]
    idx = [np.asarray(_eval(i, env, values), dtype=np.int64) for i in e.indices]
    idx = np.broadcast_arrays(*idx)
    inside = np.ones(idx[0].shape, dtype=bool)
    for i, extent in zip(idx, data.shape):
        inside &= (i >= 0) & (i < extent)
    if inside.all():
        return data[tuple(idx)]
    clipped = tuple(np.clip(i, 0, extent - 1) for i, extent in zip(idx, data.shape))
    return np.where(inside, data[clipped], np.asarray(e.default, dtype=data.dtype))


def _ops_in(e: Expr) -> int:
    return sum(1 for n in walk(e) if isinstance(n, (Binary, Unary, Select))
               and (n.dtype.startswith("float") or getattr(n, "op", "") in ("maximum", "minimum")))


def count_flops(op) -> int:
    total = 0
    for s in op.stages:
        points = math.prod(s.shape)
        if isinstance(s.body, Reduce):
            red = math.prod(a.extent for a in s.body.axes)
            total += points * red * (_ops_in(s.body.source) + 1)
        else:
            total += points * max(1, _ops_in(s.body))
    return total

