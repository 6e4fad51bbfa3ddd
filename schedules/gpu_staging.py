"""Shared-memory staging: inputs read at one affine index, and the box one GPU block reads of
each in one reduction step."""
from __future__ import annotations

import math
from dataclasses import dataclass

from .bounds import affine_coefficient, interval
from .contraction import expand_inlined
from .expr import Const, Load, Var, substitute, walk


@dataclass(frozen=True)
class StagedBox:
    """Input `tensor` read at index d as const[d] + sum(coefs[d][v] * loop_v), loops being the
    stage's spatial axes then its reduce axes. A block covering `tile` points per spatial axis
    and `chunk` per reduce axis reads a box of `extent` per index dimension."""
    tensor: object
    default: float
    const: tuple
    coefs: tuple
    extent: tuple = ()

    @property
    def size(self) -> int:
        return math.prod(self.extent)

    @property
    def nbytes(self) -> int:
        return self.size * (8 if self.tensor.dtype in ("float64", "int64") else 4)


def affine_reads(sch, st) -> list:
    """The inputs the stage reads at one affine index pattern (they can be staged in shared
    memory), as StagedBoxes with no extent yet, in first-read order."""
    loops = list(st.axis) + list(st.reduce_axis)
    found, order = {}, []
    for node in walk(expand_inlined(sch, st)):
        if isinstance(node, Load) and node.tensor.is_placeholder:
            key = id(node.tensor)
            pattern = (tuple(_affine_key(i, loops) for i in node.indices), float(node.default))
            if key not in found:
                found[key] = (node.tensor, pattern)
                order.append(key)
            elif found[key][1] != pattern:
                found[key] = (node.tensor, None)
    reads = []
    for key in order:
        tensor, pattern = found[key]
        if pattern is not None and all(p is not None for p in pattern[0]):
            consts, coefs = zip(*pattern[0])
            reads.append(StagedBox(tensor, pattern[1], tuple(consts), tuple(coefs)))
    return reads


def boxes(reads, plan) -> list:
    """The reads the plan stages, with the extent of the box a block reads in one step."""
    spans = list(plan.tile) + list(plan.chunk)
    return [StagedBox(r.tensor, r.default, r.const, r.coefs,
                      tuple(sum(abs(c) * (span - 1) for c, span in zip(co, spans)) + 1 for co in r.coefs))
            for r in reads if r.tensor.name in plan.shared]


def staged_boxes(sch, st, plan) -> list:
    return boxes(affine_reads(sch, st), plan)


def _affine_key(e, loops):
    """The index as (constant, coefficient per loop), or None if it is not affine in them."""
    coefs = []
    for v in loops:
        c = affine_coefficient(e, v)
        if c is None:
            return None
        coefs.append(c)
    if any(isinstance(n, Var) and not any(n is v for v in loops) for n in walk(e)):
        return None
    rng = interval(substitute(e, {v: Const(0, "int64") for v in loops}), {})
    return (rng[0], tuple(coefs)) if rng is not None and rng[0] == rng[1] else None
