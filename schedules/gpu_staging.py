"""Shared-memory staging: the box of an input that one GPU block reads in one reduction step."""
from __future__ import annotations

import math
from dataclasses import dataclass

from .contraction import expand_inlined
from .expr import Load, walk


@dataclass(frozen=True)
class StagedBox:
    """Input `tensor` read at index d as const[d] + sum(coefs[d][v] * loop_v), loops being the
    stage's spatial axes then its reduce axes. A block covering `tile` points per spatial axis
    and `chunk` per reduce axis reads a box of `extent` per index dimension."""
    tensor: object
    default: float
    const: tuple
    coefs: tuple
    extent: tuple

    @property
    def size(self) -> int:
        return math.prod(self.extent)

    @property
    def nbytes(self) -> int:
        return self.size * (8 if self.tensor.dtype in ("float64", "int64") else 4)


def staged_boxes(sch, st, plan) -> list:
    from .gpu_sketch import staging_candidates, _affine_key
    loops = list(st.axis) + list(st.reduce_axis)
    spans = list(plan.tile) + list(plan.chunk)
    staged = [t for t in staging_candidates(sch, st) if t.name in plan.shared]
    body = expand_inlined(sch, st)
    boxes = []
    for tensor in staged:
        load = next(n for n in walk(body) if isinstance(n, Load) and n.tensor is tensor)
        consts, coefs, extents = [], [], []
        for idx in load.indices:
            const, co = _affine_key(idx, loops)
            consts.append(const)
            coefs.append(co)
            extents.append(sum(abs(c) * (span - 1) for c, span in zip(co, spans)) + 1)
        boxes.append(StagedBox(tensor, float(load.default), tuple(consts), tuple(coefs), tuple(extents)))
    return boxes
