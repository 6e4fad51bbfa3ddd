"""Operator <-> JSON with every name kept, so a stored workload can be rebuilt exactly
(same workload key, same knob names) by tools that only have the records database."""
from __future__ import annotations

import json

from .expr import Binary, Cast, Const, Load, Reduce, Select, Unary, Var
from .te import Tensor

FORMAT = 1


class OperatorDecodeError(ValueError):
    """A stored operator definition that this version cannot rebuild."""


def operator_to_dict(op) -> dict:
    from .operator import _encode, positional_tensor_ids, positional_var_ids
    tensor_ids = positional_tensor_ids(op)
    stages = [{"name": s.name, "shape": list(s.shape), "dtype": s.dtype,
               "axes": [[v.name, v.extent, v.kind] for v in s.axes],
               "reduce_axes": [[v.name, v.extent, v.kind] for v in s.reduce_axes],
               "body": _encode(s.body, tensor_ids, positional_var_ids(s))} for s in op.stages]
    out = {"format": FORMAT, "name": op.name,
           "inputs": [{"name": t.name, "shape": list(t.shape), "dtype": t.dtype} for t in op.inputs],
           "stages": stages, "outputs": [tensor_ids[id(t)] for t in op.outputs]}
    if op.constants:  # only then, so plain definitions stay as they were
        out["constants"] = list(op.constants)
    return out


def operator_to_json(op) -> str:
    return json.dumps(operator_to_dict(op), sort_keys=True, separators=(",", ":"))


def operator_from_json(text: str):
    """Rebuild an Operator from operator_to_json's output."""
    from .operator import Operator
    try:
        data = json.loads(text)
        if data.get("format") != FORMAT:
            raise OperatorDecodeError(f"operator definition format {data.get('format')!r}; "
                                      f"this autosched reads format {FORMAT}")
        tensors = {f"in{k}": Tensor(t["name"], tuple(t["shape"]), t["dtype"])
                   for k, t in enumerate(data["inputs"])}
        for k, s in enumerate(data["stages"]):
            axes = [Var(n, e, kind) for n, e, kind in s["axes"]]
            vars_ = {f"a{i}": v for i, v in enumerate(axes)}
            vars_.update({f"r{i}": Var(n, e, kind) for i, (n, e, kind) in enumerate(s["reduce_axes"])})
            body = _decode(s["body"], tensors, vars_)
            tensors[f"s{k}"] = Tensor(s["name"], tuple(s["shape"]), s["dtype"], axes=axes, body=body)
        inputs = [tensors[f"in{k}"] for k in range(len(data["inputs"]))]
        outputs = [tensors[o] for o in data["outputs"]]
        return Operator.create(data["name"], inputs, outputs).with_constants(*data.get("constants", ()))
    except OperatorDecodeError:
        raise
    except (KeyError, TypeError, ValueError, AssertionError) as exc:
        raise OperatorDecodeError(f"cannot rebuild the operator from its stored definition: "
                                  f"{type(exc).__name__}: {exc}") from exc


def _decode(node, tensors: dict, vars_: dict):
    tag = node[0]
    if tag == "const":
        value = node[1]
        return Const(float(value) if node[2].startswith("float") else _literal(value), node[2])
    if tag == "var":
        return vars_[node[1]]
    if tag == "cast":
        return Cast(node[1], _decode(node[2], tensors, vars_))
    if tag == "select":
        return Select(*(_decode(x, tensors, vars_) for x in node[1:4]))
    if tag == "load":
        return Load(tensors[node[1]], tuple(_decode(i, tensors, vars_) for i in node[3]), float(node[2]))
    if tag == "reduce":
        return Reduce(node[1], _decode(node[3], tensors, vars_), tuple(vars_[a] for a in node[2]))
    if len(node) == 3:
        return Binary(tag, _decode(node[1], tensors, vars_), _decode(node[2], tensors, vars_))
    if len(node) == 2:
        return Unary(tag, _decode(node[1], tensors, vars_))
    raise OperatorDecodeError(f"unknown expression node {tag!r}")


def _literal(text: str):
    if text in ("True", "False"):
        return text == "True"
    return int(text)
