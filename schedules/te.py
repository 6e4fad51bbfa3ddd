"""The tensor-expression language: placeholders, compute stages, reducers and math."""
from __future__ import annotations

import inspect
from typing import Callable, Sequence

from .expr import (FLOAT_DTYPES, Binary, Cast, Const, Expr, Load, Reduce, Select, Unary, Var,
                   as_expr, check_dtype, walk)

__all__ = ["Tensor", "placeholder", "reduce_axis", "compute", "operator", "sum", "max", "min",
           "exp", "log", "sqrt", "tanh", "erf", "sigmoid", "abs", "maximum", "minimum", "where",
           "cast", "const", "Var", "Expr"]


class Tensor:
    """A placeholder (an input) or the output of one compute stage."""

    __hash__ = object.__hash__

    def __init__(self, name: str, shape: tuple, dtype: str, axes=None, body=None):
        self.name = name
        self.shape = tuple(int(s) for s in shape)
        self.dtype = check_dtype(dtype)
        self.axes: tuple = tuple(axes) if axes is not None else ()
        self.body: Expr | None = body

    @property
    def is_placeholder(self) -> bool:
        return self.body is None

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def reduce_axes(self) -> tuple:
        return self.body.axes if isinstance(self.body, Reduce) else ()

    @property
    def inputs(self) -> list:
        """Tensors this stage reads, in first-use order."""
        if self.body is None:
            return []
        seen, out = set(), []
        for n in walk(self.body):
            if isinstance(n, Load) and id(n.tensor) not in seen:
                seen.add(id(n.tensor))
                out.append(n.tensor)
        return out

    def __getitem__(self, idx) -> Load:
        return self.at(*(idx if isinstance(idx, tuple) else (idx,)))

    def at(self, *idx, default: float = 0.0) -> Load:
        """Read with an explicit value for out-of-bounds indices (0 by default: zero padding)."""
        if len(idx) != self.ndim:
            raise IndexError(f"tensor {self.name} has {self.ndim} dimensions, indexed with {len(idx)}")
        indices = []
        for i in idx:
            e = as_expr(i)
            if e.dtype not in ("int32", "int64"):
                raise TypeError(f"index of {self.name} must be an integer expression, got {e.dtype}")
            indices.append(e)
        return Load(self, tuple(indices), default)

    def __repr__(self):
        kind = "placeholder" if self.is_placeholder else "compute"
        return f"Tensor({self.name}, {self.shape}, {self.dtype}, {kind})"


def placeholder(shape: Sequence[int], dtype: str = "float32", name: str = "input") -> Tensor:
    shape = tuple(shape)
    if not shape or any(int(s) <= 0 for s in shape):
        raise ValueError(f"placeholder {name}: needs at least one dimension, all positive "
                         f"(use shape (1,) for a scalar), got {shape}")
    return Tensor(name, shape, dtype)


def reduce_axis(extent: int, name: str = "r") -> Var:
    if int(extent) <= 0:
        raise ValueError(f"reduce_axis {name}: extent must be positive, got {extent}")
    return Var(name, int(extent), "reduce")


def compute(shape: Sequence[int], fcompute: Callable, name: str = "compute",
            dtype: str | None = None) -> Tensor:
    """A stage: out[i, j, ...] = fcompute(i, j, ...), whose body may be one reduction."""
    shape = tuple(int(s) for s in shape)
    if not shape or any(s <= 0 for s in shape):
        raise ValueError(f"compute {name}: needs at least one dimension, all positive "
                         f"(use shape (1,) for a scalar), got {shape}")
    params = list(inspect.signature(fcompute).parameters)
    if len(params) != len(shape):
        raise TypeError(f"compute {name}: fcompute takes {len(params)} indices for a "
                        f"{len(shape)}-dimensional shape {shape}")
    axes = tuple(Var(p, s, "spatial") for p, s in zip(params, shape))
    body = as_expr(fcompute(*axes))
    for node in walk(body):
        if isinstance(node, Reduce) and node is not body:
            raise ValueError(f"compute {name}: a reduction (te.sum/max/min) must be the whole "
                             f"body of its stage; put the rest in a separate compute stage")
    if not isinstance(body, Reduce):
        for node in walk(body):
            if isinstance(node, Var) and node.kind == "reduce":
                raise ValueError(f"compute {name}: reduce axis {node.name} is used outside a "
                                 f"reduction; wrap the expression in te.sum/te.max/te.min")
    if isinstance(body, Reduce):
        for node in walk(body.source):
            if isinstance(node, Var) and node.kind == "reduce" and not any(node is a for a in body.axes):
                raise ValueError(f"compute {name}: reduce axis {node.name} is used but not "
                                 f"listed in axis= of its reduction")
    if dtype is not None:
        dtype = check_dtype(dtype)
        if dtype != body.dtype:
            body = Cast(dtype, body) if not isinstance(body, Reduce) else \
                Reduce(body.combiner, Cast(dtype, body.source), body.axes)
    return Tensor(name, shape, body.dtype, axes, body)


def operator(name: str, inputs: Sequence[Tensor], outputs: Sequence[Tensor]):
    from .operator import Operator
    return Operator.create(name, inputs, outputs)


def _reducer(combiner: str):
    def reduce(expr, axis, where=None):
        axes = tuple(axis) if isinstance(axis, (list, tuple)) else (axis,)
        for a in axes:
            if not isinstance(a, Var) or a.kind != "reduce":
                raise TypeError(f"te.{combiner}: axis must be reduce axes from te.reduce_axis")
        expr = as_expr(expr)
        if where is not None:
            from .expr import reduce_init
            where = as_expr(where)
            if where.dtype != "bool":
                raise TypeError(f"te.{combiner}: where= must be a comparison (a boolean expression)")
            expr = Select(where, expr, Const(reduce_init(combiner, expr.dtype), expr.dtype))
        return Reduce(combiner, expr, axes)
    reduce.__name__ = combiner
    reduce.__doc__ = f"Reduce `expr` with {combiner} over the given reduce axes."
    return reduce


sum = _reducer("sum")  # noqa: A001 - the te vocabulary shadows builtins on purpose
max = _reducer("max")  # noqa: A001
min = _reducer("min")  # noqa: A001


def _unary(fn: str):
    def apply(x):
        x = as_expr(x)
        if fn not in ("abs",) and x.dtype not in FLOAT_DTYPES:
            x = Cast("float32", x)
        return Unary(fn, x)
    apply.__name__ = fn
    return apply


exp, log, sqrt, tanh, erf, sigmoid = (_unary(f) for f in ("exp", "log", "sqrt", "tanh", "erf", "sigmoid"))
abs = _unary("abs")  # noqa: A001


def maximum(a, b) -> Expr:
    a = as_expr(a, like=b if isinstance(b, Expr) else None)
    return Binary("maximum", a, as_expr(b, like=a))


def minimum(a, b) -> Expr:
    a = as_expr(a, like=b if isinstance(b, Expr) else None)
    return Binary("minimum", a, as_expr(b, like=a))


def where(cond, a, b) -> Expr:
    """Select a where cond holds, else b; only the chosen side is read."""
    cond = as_expr(cond)
    if cond.dtype != "bool":
        raise TypeError("te.where: the condition must be a comparison (a boolean expression)")
    a = as_expr(a, like=b if isinstance(b, Expr) else None)
    b = as_expr(b, like=a)
    if a.dtype != b.dtype:
        target = a.dtype if a.dtype in FLOAT_DTYPES else b.dtype
        a, b = (x if x.dtype == target else Cast(target, x) for x in (a, b))
    return Select(cond, a, b)


def cast(dtype: str, x) -> Expr:
    return Cast(dtype, as_expr(x))


def const(value, dtype: str = "float32") -> Const:
    return Const(value, dtype)
