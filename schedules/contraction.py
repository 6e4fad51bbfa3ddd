"""Recognizes contraction stages (sum over k of X * Y): the stages a micro-kernel can compute."""
from __future__ import annotations

from dataclasses import dataclass

from .expr import Binary, Load, Reduce, Var, substitute, walk


@dataclass(frozen=True, eq=False)
class Contraction:
    """A stage out[batch, m, n] = sum_k a(batch, m, k) * b(batch, n, k), with axes by position.

    `a` reads no N axis and `b` no M axis, so a can be packed into row panels and b into
    column panels. Either may ignore the batch axes (one weight for a batch of images). The
    output's axes run batch..., M..., N... (axes of extent 1 may sit anywhere), so a
    (batch, m, n) point is at flat offset (batch*M + m)*N + n.
    """
    batch: tuple      # positions in stage.axis
    m: tuple
    n: tuple
    unit: tuple       # extent-1 axes, always index 0
    a: object         # Expr over stage axes and reduce axes (the M-side factor)
    b: object         # the N-side factor

    def swapped(self) -> "Contraction":
        """The same sum with rows and columns exchanged: the output's columns become the
        micro-kernel's rows. Its output is then laid out batch, N, M, unlike the stage's."""
        return Contraction(self.batch, self.n, self.m, self.unit, self.b, self.a)

    def extents(self, stage_axes) -> tuple:
        def prod(group):
            out = 1
            for d in group:
                out *= stage_axes[d].extent
            return out
        return prod(self.batch), prod(self.m), prod(self.n)


def expand_inlined(sch, st, body=None):
    """st's body with the bodies of inlined stages substituted where they are read."""
    from .expr import rebuild

    def rewrite(node):
        if isinstance(node, Load) and not node.tensor.is_placeholder and not isinstance(node.tensor, Var):
            prod = sch[node.tensor]
            if prod.inlined:
                return expand_inlined(sch, prod, substitute(prod.body, dict(zip(prod.axis, node.indices))))
        return None
    return rebuild(st.body if body is None else body, rewrite)


def find_contraction(axes, reduce_axes, body, dtype: str):
    """The Contraction of a stage with these axes and (expanded) body, or None."""
    if dtype != "float32" or not reduce_axes or not isinstance(body, Reduce) or body.combiner != "sum":
        return None
    src = body.source
    if not (isinstance(src, Binary) and src.op == "mul"):
        return None
    for a, b in ((src.a, src.b), (src.b, src.a)):
        found = _classify(axes, a, b)
        if found is not None:
            return found
    return None


def _uses(expr, axes) -> set:
    ids = {id(v) for v in walk(expr) if isinstance(v, Var)}
    return {d for d, ax in enumerate(axes) if id(ax) in ids}


def _classify(axes, a, b):
    found = _split_axes(axes, a, b, leading_batch=False)
    # A batch of NCHW convs: out[n, k, h, w] = sum w[k, ...] * x[n, ...]. Its image axis is read
    # by one operand only, yet leads the output: as a batch axis (the weights the same for
    # every image), the images' k, h, w are rows and columns like a single image's.
    return found if found is not None else _split_axes(axes, a, b, leading_batch=True)


def _split_axes(axes, a, b, leading_batch: bool):
    in_a, in_b = _uses(a, axes), _uses(b, axes)
    batch, m, n, unit = [], [], [], []
    for d, ax in enumerate(axes):
        if ax.extent == 1:
            unit.append(d)
        elif d in in_a and d in in_b:
            batch.append(d)
        elif leading_batch and not (batch or m or n):
            batch.append(d)
        elif d in in_a:
            m.append(d)
        elif d in in_b:
            n.append(d)
        else:
            batch.append(d)  # read by neither operand: the result repeats along it
    if not m or not n:
        return None
    ordered = [d for d in range(len(axes)) if d not in unit]
    if ordered != batch + m + n:
        return None
    return Contraction(tuple(batch), tuple(m), tuple(n), tuple(unit), a, b)
