"""Which fused epilogues a micro-kernel applies to its tile in registers, as a program of steps,
and where a swapped tile stores its finished values transposed."""
from __future__ import annotations

import math
from dataclasses import dataclass

from .bounds import affine_coefficient
from .expr import Binary, Const, Load, Var, substitute, walk
from .loopnest import Assign, Buffer, Scalar, Store, add, flat_offset, mul

# Expression ops an in-register epilogue can apply, by their name in a tile-epilogue program
# (codegen.simd_finish.TILE_EPILOGUE_OPS; "rsub" is operand - value).
_STEP_OPS = {"add": "add", "sub": "sub", "mul": "mul", "maximum": "max", "minimum": "min"}


@dataclass(frozen=True, eq=False)
class TileEpilogue:
    """An epilogue as steps value = op(value, operand), with operands a constant, a value per
    tile row (a conv's bias per filter), a contiguous run along the tile's columns (a dense
    layer's bias) or a block laid out like the tile (a residual shortcut). `operands[k]` is
    (buffer, flat offset of operand k at the tile's first point (rows i.., columns j..));
    `program` is codegen.simd_finish's form of the steps. `out` is the buffer the finished
    values go to, at the stage's axes."""
    program: tuple
    operands: tuple
    out: Buffer


def plan_tile_epilogue(tail, out: Buffer | None, axes, row_group, col_group, row0: Var, col0: Var):
    """The TileEpilogue equal to `tail` (the statements storing a final point of the stage
    and running its epilogues, see Lowering._tail), or None where it is not one.

    It must store one value, into `out` at the stage's own axes, and that value must be a
    chain of add / sub / mul / max / min steps on the point's value, each with a float
    constant or a float32 load that moves with the row axes only (one row axis), along the
    single column axis with unit stride only, or with both as one block: contiguous along
    the (flattened) columns and evenly strided along the (flattened) rows. `row_group` and
    `col_group` are the positions of the row and column axes among `axes`; row0 and col0
    hold the tile's first row and column, for the operands' offsets. out=None takes
    whichever buffer the tail stores into (a swapped tile, whose accumulator is a scratch
    and not the stage's output)."""
    point = Scalar("tile_value", "float32")
    values, stores = {}, []  # Scalars by identity (Expr's == builds an expression)
    for s in tail(point):
        if isinstance(s, Assign) and isinstance(s.var, Scalar):
            values[s.var] = substitute(s.value, values)
        elif isinstance(s, Store):
            stores.append(s)
        else:
            return None
    if len(stores) != 1 or (out is not None and stores[0].buffer is not out) \
            or stores[0].buffer.dtype != "float32" or len(stores[0].indices) != len(axes) \
            or any(ix is not ax for ix, ax in zip(stores[0].indices, axes)):
        return None
    out = stores[0].buffer
    value = substitute(stores[0].value, values)
    steps = []  # outermost first
    while value is not point:
        step = _step(value, point, out, axes, row_group, col_group, row0, col0)
        if step is None:
            return None
        value, op, operand = step
        steps.append((op, operand))
    program, operands = [], []
    for op, (kind, *rest) in reversed(steps):
        if kind == "const":
            program.append((op, kind, rest[0]))
        else:
            operands.append(rest[0])
            program.append((op, kind, len(operands) - 1, *rest[1:]))
    return TileEpilogue(tuple(program), tuple(operands), out)


def transposed_target(out: Buffer, axes, row_group, col_group, row0: Var, col0: Var):
    """(offset, ld) with the stage's point at flattened tile row r and column c at flat
    offset + r + c * ld of `out`, offset being that of the tile's first point (rows row0..,
    columns col0..): the rows run contiguously (an NCHW output's pixels) and the columns
    at a constant stride (its channels). None where `out` is not laid out so."""
    if not all(isinstance(d, int) for d in out.shape):
        return None
    flat = flat_offset(out.shape, axes)
    ld = None
    for group, first in ((row_group, 1), (col_group, None)):
        step = first
        for d in reversed(group):
            coefficient = affine_coefficient(flat, axes[d])
            if step is None:  # the columns' stride is whatever the innermost one has
                step = coefficient
                ld = coefficient
            if not coefficient or coefficient != step:
                return None
            step *= axes[d].extent
    if ld is None or ld < 1:
        return None
    at = {axes[d]: Const(0, "int64") for d in list(row_group) + list(col_group)}
    return add(add(substitute(flat, at), row0), mul(col0, Const(ld, "int64"))), ld


def _holds(expr, point) -> bool:
    return any(n is point for n in walk(expr))


def _step(value, point, out, axes, row_group, col_group, row0, col0):
    """(the inner value, the step's op, its operand) for the outermost step of `value`."""
    if not (isinstance(value, Binary) and value.op in _STEP_OPS):
        return None
    left, right = _holds(value.a, point), _holds(value.b, point)
    if left == right:
        return None
    inner, other = (value.a, value.b) if left else (value.b, value.a)
    op = "rsub" if value.op == "sub" and not left else _STEP_OPS[value.op]
    operand = _operand(other, out, axes, row_group, col_group, row0, col0)
    return None if operand is None else (inner, op, operand)


def _operand(e, out, axes, row_group, col_group, row0, col0):
    """One operand: ("const", c), ("row", (buffer, offset), step), ("col", (buffer, offset)) or
    ("tile", (buffer, offset), row step), the offset at the tile's first point."""
    if isinstance(e, Const):
        value = float(e.value)
        return ("const", value) if e.dtype.startswith("float") and math.isfinite(value) else None
    if not (isinstance(e, Load) and isinstance(e.tensor, Buffer) and e.tensor.dtype == "float32"
            and e.tensor is not out and e.indices and all(isinstance(d, int) for d in e.tensor.shape)):
        return None
    if any(isinstance(n, Load) for ix in e.indices for n in walk(ix)):
        return None
    flat = flat_offset(e.tensor.shape, e.indices)
    rows = [affine_coefficient(flat, axes[d]) for d in row_group]
    cols = [affine_coefficient(flat, axes[d]) for d in col_group]
    if None in rows or None in cols:
        return None
    at = {axes[d]: Const(0, "int64") for d in list(row_group) + list(col_group)}
    if all(c == 0 for c in cols):
        moving = [(d, c) for d, c in zip(row_group, rows) if c]
        if len(moving) > 1 or (moving and len(row_group) > 1):
            return None  # flattened rows would need a decode per tile row
        step = moving[0][1] if moving else 0
        if moving:
            at[axes[moving[0][0]]] = row0
        return ("row", (e.tensor, substitute(flat, at)), int(step))
    if len(col_group) == 1 and cols[0] == 1 and all(r == 0 for r in rows):
        at[axes[col_group[0]]] = col0
        return ("col", (e.tensor, substitute(flat, at)))
    # A block laid out like the tile (a shortcut of the output's shape): the columns one
    # contiguous run, the rows one evenly strided run, each flattened group with no gaps.
    col_step, row_step = _run_step(cols, axes, col_group), _run_step(rows, axes, row_group)
    if col_step == 1 and row_step is not None and row_step >= 0:
        offset = add(add(substitute(flat, at), mul(row0, Const(row_step, "int64"))), col0)
        return ("tile", (e.tensor, offset), int(row_step))
    return None


def _run_step(coefficients, axes, group):
    """The flat step between consecutive points of a flattened group of axes when they form
    one evenly strided run (each outer axis steps over the whole of the inner ones), else None."""
    if not coefficients:
        return None
    step = coefficients[-1]
    expected = step
    for c, d in zip(reversed(coefficients), reversed(group)):
        if c != expected:
            return None
        expected = c * axes[d].extent
    return step
