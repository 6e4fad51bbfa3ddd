"""Expression nodes shared by the tensor-expression language and the LoopNest IR."""
from __future__ import annotations

import math
from typing import Iterable

FLOAT_DTYPES = ("float32", "float64")
INT_DTYPES = ("int32", "int64")
DTYPES = FLOAT_DTYPES + INT_DTYPES + ("bool",)
INDEX_DTYPE = "int64"

# exp_nonpos: exp of an argument lowering proved to be at most 0 (schedules/exp_bounds.py).
UNARY_FUNCS = ("exp", "exp_nonpos", "log", "sqrt", "tanh", "erf", "sigmoid", "abs", "neg", "not")
# The math-library function of each unary that has no library function of its own.
MATH_FUNCTION = {"exp_nonpos": "exp"}
BINARY_OPS = ("add", "sub", "mul", "div", "floordiv", "mod", "maximum", "minimum",
              "lt", "le", "gt", "ge", "eq", "ne", "and", "or", "bitand", "bitor")
COMPARISONS = ("lt", "le", "gt", "ge", "eq", "ne")
# Python spelling of the infix binary ops (maximum/minimum are calls).
INFIX = {"add": "+", "sub": "-", "mul": "*", "div": "/", "floordiv": "//", "mod": "%", "lt": "<",
         "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!=", "and": "and", "or": "or",
         "bitand": "&", "bitor": "|"}
REDUCERS = ("sum", "max", "min")


def check_dtype(dtype: str) -> str:
    dtype = str(dtype)
    if dtype not in DTYPES:
        raise ValueError(f"unsupported dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    return dtype


def promote(a: str, b: str) -> str:
    """Result dtype of a binary arithmetic op on two typed operands."""
    if a == b:
        return a
    order = ("bool", "int32", "int64", "float32", "float64")
    return max(a, b, key=order.index)


class Expr:
    """Base of all expressions. `==` builds an expression, so identity is used internally."""

    __slots__ = ("dtype",)
    __hash__ = object.__hash__

    def _bin(self, op: str, other, reverse: bool = False) -> "Binary":
        other = as_expr(other, like=self)
        return Binary(op, other, self) if reverse else Binary(op, self, other)

    def __add__(self, o): return self._bin("add", o)
    def __radd__(self, o): return self._bin("add", o, True)
    def __sub__(self, o): return self._bin("sub", o)
    def __rsub__(self, o): return self._bin("sub", o, True)
    def __mul__(self, o): return self._bin("mul", o)
    def __rmul__(self, o): return self._bin("mul", o, True)
    def __truediv__(self, o): return self._bin("div", o)
    def __rtruediv__(self, o): return self._bin("div", o, True)
    def __floordiv__(self, o): return self._bin("floordiv", o)
    def __rfloordiv__(self, o): return self._bin("floordiv", o, True)
    def __mod__(self, o): return self._bin("mod", o)
    def __rmod__(self, o): return self._bin("mod", o, True)
    def __lt__(self, o): return self._bin("lt", o)
    def __le__(self, o): return self._bin("le", o)
    def __gt__(self, o): return self._bin("gt", o)
    def __ge__(self, o): return self._bin("ge", o)
    def __eq__(self, o): return self._bin("eq", o)  # type: ignore[override]
    def __ne__(self, o): return self._bin("ne", o)  # type: ignore[override]
    def __and__(self, o): return self._logic("and", o)
    def __or__(self, o): return self._logic("or", o)

    def _logic(self, op: str, other) -> "Binary":
        """Logical on booleans, bitwise on integers, an error on floats."""
        other = as_expr(other, like=self)
        kinds = {self.dtype, other.dtype}
        if kinds == {"bool"}:
            return Binary(op, self, other)
        if kinds <= set(INT_DTYPES):
            return Binary("bit" + op, self, other)
        raise TypeError(f"'{'&' if op == 'and' else '|'}' needs two booleans (comparisons) or two "
                        f"integers, got {self.dtype} and {other.dtype}")
    def __neg__(self): return Unary("neg", self)
    def __invert__(self): return Unary("not", self)

    def __bool__(self):
        raise TypeError("an autosched expression has no truth value; use te.where(cond, a, b) "
                        "instead of Python if/and/or on expressions")


class Const(Expr):
    __slots__ = ("value",)

    def __init__(self, value, dtype: str):
        self.dtype = check_dtype(dtype)
        if dtype in FLOAT_DTYPES:
            value = float(value)
        elif dtype == "bool":
            value = bool(value)
        else:
            value = int(value)
        self.value = value

    def __repr__(self):
        return f"Const({self.value!r}, {self.dtype})"


class Var(Expr):
    """An integer variable: a tensor axis, a reduce axis, a loop or a runtime parameter."""

    __slots__ = ("name", "extent", "kind")

    def __init__(self, name: str, extent, kind: str = "spatial"):
        self.dtype = INDEX_DTYPE
        self.name = name
        self.extent = extent
        self.kind = kind

    def __repr__(self):
        return f"Var({self.name})"


class Binary(Expr):
    __slots__ = ("op", "a", "b")

    def __init__(self, op: str, a: Expr, b: Expr):
        assert op in BINARY_OPS, op
        self.op, self.a, self.b = op, a, b
        if op in COMPARISONS or op in ("and", "or"):
            self.dtype = "bool"
        elif op == "div" and a.dtype not in FLOAT_DTYPES and b.dtype not in FLOAT_DTYPES:
            self.dtype = "float32"
        else:
            self.dtype = promote(a.dtype, b.dtype)


class Unary(Expr):
    __slots__ = ("fn", "a")

    def __init__(self, fn: str, a: Expr):
        assert fn in UNARY_FUNCS, fn
        self.fn, self.a = fn, a
        if fn == "not":
            self.dtype = "bool"
        elif fn in ("abs", "neg"):
            self.dtype = a.dtype
        else:
            self.dtype = a.dtype if a.dtype in FLOAT_DTYPES else "float32"


class Cast(Expr):
    __slots__ = ("a",)

    def __init__(self, dtype: str, a: Expr):
        self.dtype = check_dtype(dtype)
        self.a = a


class Select(Expr):
    __slots__ = ("cond", "a", "b")

    def __init__(self, cond: Expr, a: Expr, b: Expr):
        self.cond, self.a, self.b = cond, a, b
        self.dtype = promote(a.dtype, b.dtype)


class Load(Expr):
    """Read of a tensor or buffer; out-of-bounds reads yield `default` (padding)."""

    __slots__ = ("tensor", "indices", "default")

    def __init__(self, tensor, indices: tuple, default: float = 0.0):
        self.tensor = tensor
        self.indices = tuple(indices)
        self.default = default
        self.dtype = tensor.dtype


class Reduce(Expr):
    __slots__ = ("combiner", "source", "axes")

    def __init__(self, combiner: str, source: Expr, axes: tuple):
        assert combiner in REDUCERS
        self.combiner, self.source, self.axes = combiner, source, tuple(axes)
        self.dtype = source.dtype


def as_expr(value, like: Expr | None = None) -> Expr:
    """Wrap a Python number as a constant whose dtype follows the other operand."""
    if isinstance(value, Expr):
        return value
    if isinstance(value, bool):
        return Const(value, "bool")
    if isinstance(value, int):
        dtype = like.dtype if like is not None and like.dtype != "bool" else INDEX_DTYPE
        return Const(value, dtype)
    if isinstance(value, float):
        dtype = like.dtype if like is not None and like.dtype in FLOAT_DTYPES else "float32"
        return Const(value, dtype)
    try:
        import numpy as np
        if isinstance(value, np.generic):
            return Const(value.item(), str(value.dtype))
    except ImportError:  # pragma: no cover
        pass
    raise TypeError(f"cannot use {value!r} ({type(value).__name__}) in a tensor expression")


def reduce_combine(combiner: str, acc, value) -> Binary:
    """acc combined with value by a reduction's combiner ("sum", "max" or "min")."""
    return Binary({"sum": "add", "max": "maximum", "min": "minimum"}[combiner], acc, value)


def reduce_init(combiner: str, dtype: str):
    if dtype == "bool":  # max is "any", min is "all"
        return combiner == "min"
    if combiner == "sum":
        return 0.0 if dtype in FLOAT_DTYPES else 0
    if dtype in FLOAT_DTYPES:
        return -math.inf if combiner == "max" else math.inf
    bits = 32 if dtype == "int32" else 64
    return -(2 ** (bits - 1)) if combiner == "max" else 2 ** (bits - 1) - 1


def children(e: Expr) -> tuple:
    if isinstance(e, Binary):
        return (e.a, e.b)
    if isinstance(e, (Unary, Cast)):
        return (e.a,)
    if isinstance(e, Select):
        return (e.cond, e.a, e.b)
    if isinstance(e, Load):
        return e.indices
    if isinstance(e, Reduce):
        return (e.source,)
    return ()


def walk(e: Expr) -> Iterable[Expr]:
    """Pre-order traversal."""
    stack = [e]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(children(node)))


def rebuild(e: Expr, fn) -> Expr:
    """Bottom-up rewrite: fn(node, new_children) returns a replacement or None to keep the node."""
    kids = children(e)
    new_kids = tuple(rebuild(k, fn) for k in kids)
    if any(n is not k for n, k in zip(new_kids, kids)):
        e = _with_children(e, new_kids)
    out = fn(e)
    return e if out is None else out


def _with_children(e: Expr, kids: tuple) -> Expr:
    if isinstance(e, Binary):
        return Binary(e.op, *kids)
    if isinstance(e, Unary):
        return Unary(e.fn, kids[0])
    if isinstance(e, Cast):
        return Cast(e.dtype, kids[0])
    if isinstance(e, Select):
        return Select(*kids)
    if isinstance(e, Load):
        return Load(e.tensor, kids, e.default)
    if isinstance(e, Reduce):
        return Reduce(e.combiner, kids[0], e.axes)
    raise TypeError(type(e))


def substitute(e: Expr, mapping: dict) -> Expr:
    """Replace variables (keyed by identity) with expressions."""
    if not mapping:
        return e
    return rebuild(e, lambda n: mapping.get(n) if isinstance(n, Var) else None)


def free_vars(e: Expr) -> list:
    seen, out = set(), []
    for n in walk(e):
        if isinstance(n, Var) and id(n) not in seen:
            seen.add(id(n))
            out.append(n)
    return out
