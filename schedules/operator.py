"""The Operator: a named DAG of compute stages with a stable workload key and input checks."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from .expr import Binary, Cast, Const, Expr, Load, Reduce, Select, Unary, Var
from .te import Tensor


@dataclass(frozen=True, eq=False)
class Operator:
    name: str
    inputs: tuple
    outputs: tuple
    stages: tuple  # compute tensors in topological order
    workload_key: str = field(default="")
    # Inputs held fixed across calls (a layer's weights), in input order: see with_constants.
    constants: tuple = ()

    @staticmethod
    def create(name: str, inputs, outputs) -> "Operator":
        inputs, outputs = tuple(inputs), tuple(outputs)
        if not outputs:
            raise ValueError(f"operator {name}: needs at least one output")
        for t in inputs:
            if not isinstance(t, Tensor) or not t.is_placeholder:
                raise TypeError(f"operator {name}: inputs must be te.placeholder tensors, got {t!r}")
        for t in outputs:
            if not isinstance(t, Tensor) or t.is_placeholder:
                raise TypeError(f"operator {name}: outputs must be te.compute tensors, got {t!r}")
        stages = _topological_stages(outputs)
        for s in stages:
            for t in s.inputs:
                if t.is_placeholder and not any(t is i for i in inputs):
                    raise ValueError(f"operator {name}: stage {s.name} reads placeholder "
                                     f"{t.name}, which is not in inputs=")
        names = [t.name for t in inputs] + [s.name for s in stages]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"operator {name}: tensor names must be unique, repeated: {sorted(dup)}")
        op = Operator(name, inputs, outputs, stages)
        object.__setattr__(op, "workload_key", op._plain_key())
        return op

    def _plain_key(self) -> str:
        return f"{self.name}-{hashlib.sha256(self.canonical_json().encode()).hexdigest()[:20]}"

    def with_constants(self, *names: str) -> "Operator":
        """This operator with the named inputs held constant across calls (a deployed layer's
        weights): a workload of its own (key `<plain key>@<names>`), built with those inputs
        as constants (codegen.build) and tuned and timed with them bound (Kernel.bind), so a
        weight packed once is not counted on every call, as it is not in deployment. No names
        give back the plain operator."""
        known = [t.name for t in self.inputs]
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(f"operator {self.name} has no input {unknown[0]!r} to hold constant "
                             f"(inputs: {', '.join(known)})")
        chosen = tuple(n for n in known if n in names)
        op = dataclasses.replace(self, constants=chosen)
        key = self._plain_key()
        object.__setattr__(op, "workload_key", f"{key}@{','.join(chosen)}" if chosen else key)
        return op

    def __eq__(self, other):
        return isinstance(other, Operator) and other.workload_key == self.workload_key

    def __hash__(self):
        return hash(self.workload_key)

    def __repr__(self):
        shapes = ", ".join(f"{t.name}{t.shape}" for t in self.inputs)
        held = f"; constant {', '.join(self.constants)}" if self.constants else ""
        return f"Operator({self.name}: {shapes} -> {', '.join(t.name for t in self.outputs)}{held})"

    # -- structure ---------------------------------------------------------------------------
    def stage(self, name: str) -> Tensor:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(f"operator {self.name} has no stage {name!r}; stages: "
                       f"{[s.name for s in self.stages]}")

    def is_output(self, t: Tensor) -> bool:
        return any(t is o for o in self.outputs)

    def consumers(self, t: Tensor) -> list:
        return [s for s in self.stages if any(t is i for i in s.inputs)]

    def canonical(self) -> dict:
        """Structure, shapes and dtypes with positional names: the basis of workload_key."""
        tensor_ids = positional_tensor_ids(self)
        stages = [{"shape": list(s.shape), "dtype": s.dtype, "reduce": [v.extent for v in s.reduce_axes],
                   "body": _encode(s.body, tensor_ids, positional_var_ids(s))} for s in self.stages]
        return {"name": self.name,
                "inputs": [{"shape": list(t.shape), "dtype": t.dtype} for t in self.inputs],
                "stages": stages,
                "outputs": [tensor_ids[id(t)] for t in self.outputs]}

    def canonical_json(self) -> str:
        return json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))

    def to_json(self) -> str:
        """The full definition, names included: from_json rebuilds the same operator."""
        from .operator_json import operator_to_json
        return operator_to_json(self)

    @staticmethod
    def from_json(text: str) -> "Operator":
        from .operator_json import operator_from_json
        return operator_from_json(text)

    # -- inputs and the numpy oracle ----------------------------------------------------------
    def check_inputs(self, arrays) -> list:
        """Return the inputs as C-contiguous arrays; raise ValueError naming any mismatch."""
        if len(arrays) != len(self.inputs):
            raise ValueError(f"operator {self.name} takes {len(self.inputs)} inputs "
                             f"({', '.join(t.name for t in self.inputs)}), got {len(arrays)}")
        out = []
        for t, (shape, dtype), a in zip(self.inputs, self._input_specs, arrays):
            if type(a) is np.ndarray and a.shape == shape and a.dtype == dtype and a.flags.c_contiguous:
                out.append(a)  # the common case, checked in a third of the general path's time
                continue
            a = np.asarray(a)
            if a.shape != t.shape:
                raise ValueError(f"operator {self.name}: input {t.name} expects shape {t.shape}, "
                                 f"got {a.shape}")
            if a.dtype != np.dtype(t.dtype):
                raise ValueError(f"operator {self.name}: input {t.name} expects dtype {t.dtype} "
                                 f"with shape {t.shape}, got {a.dtype} with shape {a.shape}")
            out.append(np.ascontiguousarray(a))
        return out

    @cached_property
    def _input_specs(self) -> tuple:
        return tuple((tuple(t.shape), np.dtype(t.dtype)) for t in self.inputs)

    def reference(self, *arrays):
        """Evaluate with numpy: the correctness oracle. One output returns an array, else a tuple."""
        from .reference import evaluate
        results = evaluate(self, self.check_inputs(arrays))
        outs = tuple(results[id(t)] for t in self.outputs)
        return outs[0] if len(outs) == 1 else outs

    def random_inputs(self, seed: int = 0) -> list:
        """Inputs drawn from a fixed distribution, for tests and correctness checks."""
        rng = np.random.default_rng(seed)
        out = []
        for t in self.inputs:
            if t.dtype.startswith("float"):
                out.append(rng.standard_normal(t.shape).astype(t.dtype))
            else:
                out.append(rng.integers(-8, 9, size=t.shape).astype(t.dtype))
        return out

    def flops(self) -> int:
        """Arithmetic work, counting one multiply-add as two operations, for GFLOPS reports."""
        from .reference import count_flops
        return count_flops(self)

    def space(self, target="cpu"):
        from .sketch import space_for
        return space_for(self, target)


def _topological_stages(outputs) -> tuple:
    order, state = [], {}

    def visit(t: Tensor):
        if t.is_placeholder:
            return
        mark = state.get(id(t))
        if mark == "done":
            return
        if mark == "active":
            raise ValueError(f"stage {t.name} depends on itself")
        state[id(t)] = "active"
        for i in t.inputs:
            visit(i)
        state[id(t)] = "done"
        order.append(t)

    for o in outputs:
        visit(o)
    return tuple(order)


def positional_tensor_ids(op) -> dict:
    """id(tensor) -> 'in<k>' for inputs and 's<k>' for stages: names that never collide."""
    ids = {id(t): f"in{k}" for k, t in enumerate(op.inputs)}
    ids.update({id(s): f"s{k}" for k, s in enumerate(op.stages)})
    return ids


def positional_var_ids(stage) -> dict:
    ids = {id(v): f"a{k}" for k, v in enumerate(stage.axes)}
    ids.update({id(v): f"r{k}" for k, v in enumerate(stage.reduce_axes)})
    return ids


def _encode(e: Expr, tensor_ids: dict, var_ids: dict):
    if isinstance(e, Const):
        return ["const", repr(e.value), e.dtype]
    if isinstance(e, Var):
        return ["var", var_ids.get(id(e), e.name)]
    if isinstance(e, Binary):
        return [e.op, _encode(e.a, tensor_ids, var_ids), _encode(e.b, tensor_ids, var_ids)]
    if isinstance(e, Unary):
        return [e.fn, _encode(e.a, tensor_ids, var_ids)]
    if isinstance(e, Cast):
        return ["cast", e.dtype, _encode(e.a, tensor_ids, var_ids)]
    if isinstance(e, Select):
        return ["select"] + [_encode(x, tensor_ids, var_ids) for x in (e.cond, e.a, e.b)]
    if isinstance(e, Load):
        return ["load", tensor_ids[id(e.tensor)], repr(float(e.default)),
                [_encode(i, tensor_ids, var_ids) for i in e.indices]]
    if isinstance(e, Reduce):
        return ["reduce", e.combiner, [var_ids[id(a)] for a in e.axes],
                _encode(e.source, tensor_ids, var_ids)]
    raise TypeError(type(e))
