"""Exps whose argument is at most zero by construction, x - max(x) over x's row (softmax's
stable form): lowering marks them exp_nonpos, whose generated code skips the overflow clamp."""
from __future__ import annotations

from .expr import Binary, Load, Reduce, Unary, Var, rebuild


def mark_nonpositive_exps(body, stage_of, expanded):
    """`body` with every exp(a - m) marked exp_nonpos where m reads a max reduction whose
    row holds a: the reduction's source is a, with the reduce axis at one of a's full-range
    axes and the other indices those of the read of m. `stage_of(tensor)` gives a tensor's
    stage (None for inputs), `expanded(stage)` its body with inlined stages substituted."""
    def rewrite(node):
        if isinstance(node, Unary) and node.fn == "exp":
            arg = rebuild(node.a, rewrite)
            if _nonpositive(arg, stage_of, expanded):
                return Unary("exp_nonpos", arg)
            return Unary("exp", arg)
        return None
    return rebuild(body, rewrite)


def _nonpositive(arg, stage_of, expanded) -> bool:
    if not (isinstance(arg, Binary) and arg.op == "sub" and isinstance(arg.a, Load)
            and isinstance(arg.b, Load)):
        return False
    a, m = arg.a, arg.b
    red = stage_of(m.tensor)
    if red is None or len(red.reduce_axis) != 1:
        return False
    body = expanded(red)
    if not (isinstance(body, Reduce) and body.combiner == "max" and isinstance(body.source, Load)):
        return False
    src, k = body.source, red.reduce_axis[0]
    if src.tensor is not a.tensor or len(src.indices) != len(a.indices):
        return False
    at_point = dict(zip(red.axis, m.indices))
    reduced = 0
    for s, i in zip(src.indices, a.indices):
        if s is k:
            # a's index there must run over the whole reduced range, so a is one of the values.
            reduced += 1
            if not (isinstance(i, Var) and i.extent == k.extent):
                return False
        elif not (s in at_point and at_point[s] is i):
            return False
    return reduced == 1
