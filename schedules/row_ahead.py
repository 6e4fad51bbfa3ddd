"""Row statistics computed one row ahead: a reduction of inputs attached per row (softmax's
max) is accumulated for the next row inside the consumer's loop over the current row."""
from __future__ import annotations

from .errors import ScheduleError
from .expr import Binary, Const, Load, reduce_combine, reduce_init, substitute, walk
from .loopnest import Assign, Buffer, If, Scalar, add, minimum


def next_row_or_now(low, red, scalar, compute: list, plan, at: int) -> list:
    """Statements giving reduction `red` its value at the current row: what the previous
    row's loop computed ahead when that was this row, else `compute`, which computes it now
    (the first row of each parallel chunk). They then start the next row's value, which the
    consumer's innermost loop body (low.computed_ahead) accumulates.

    `plan` holds the consumer's leaf loops and `at` is the leaf `red` is attached at.
    """
    consumer = plan.st
    axis = _row_axis(low, red, plan, at)
    body = low.body[id(red)]
    dtype = red.tensor.dtype
    init = Const(reduce_init(body.combiner, dtype), dtype)
    row = low.frame[id(red)][red.axis[0]]
    ahead = Scalar(low.unique(f"{red.name}_ahead"), dtype)
    ahead_row = Scalar(low.unique(f"{red.name}_ahead_row"), "int64")
    # The row index is clamped, so the last row's loop reads in bounds; its value is unused.
    nxt = Scalar(low.unique(f"{red.name}_next_row"), "int64")
    # In the consumer's prologue, before its nest, so the value carries from one row to the
    # next within a chunk.
    plan.prologue += [Assign(ahead, init), Assign(ahead_row, Const(-1, "int64"))]
    src = substitute(body.source, {red.axis[0]: nxt, red.reduce_axis[0]: axis})
    low.computed_ahead.setdefault(id(consumer), []).append(
        Assign(ahead, reduce_combine(body.combiner, ahead, low._resolve(src, {}))))
    return [Assign(scalar, ahead), If(Binary("ne", ahead_row, row), tuple(compute)),
            Assign(nxt, minimum(add(row, 1), Const(red.axis[0].extent - 1, "int64"))),
            Assign(ahead, init), Assign(ahead_row, add(row, 1))]


def _row_axis(low, red, plan, at: int):
    """The consumer's one axis still free below leaf `at`, whose loops then cover exactly a
    row of `red`'s length; a ScheduleError names what is missing."""
    consumer = plan.st
    what = f"compute_next_row on stage {red.name}"
    if any(isinstance(n, Load) and not isinstance(n.tensor, Buffer) and not n.tensor.is_placeholder
           for n in walk(low.body[id(red)])):
        raise ScheduleError(f"{what}: it reads other stages, whose next row is not computed yet; "
                            f"only reductions of inputs go ahead")
    if consumer.is_reduction:
        raise ScheduleError(f"{what}: its consumer {consumer.name} is a reduction; only an "
                            f"elementwise consumer's row loop carries the next row")
    free = [a for a in consumer.axis if not plan.determined_at(a, at)]
    length = red.reduce_axis[0].extent
    if len(free) != 1 or free[0].extent != length or min(plan.deps[id(free[0])]) <= at:
        raise ScheduleError(f"{what}: below {consumer.leaves[at].name}, the loops of {consumer.name} "
                            f"must run over one whole row of {length} (free there: "
                            f"{[a.name for a in free]}); attach it at the row loop")
    return free[0]
