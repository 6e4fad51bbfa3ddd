"""Kernel: a compiled operator callable with its source, config, target and loop nest."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from .parallel import StepFailed, run_step, thread_count


@dataclass(frozen=True, eq=False)
class Kernel:
    op: object
    target: object
    config: object
    source: str
    loopnest: object = field(repr=False)
    params: tuple = ()             # runtime-knob values passed to the compiled steps
    steps: tuple = field(default=(), repr=False)  # (step cfunc, parallel extent or None)
    compile_seconds: float = 0.0
    cache_key: str = ""
    origin: str = "compiled"       # "compiled", "disk" or "memory" cache, or "interpreted"
    max_threads: int | None = None  # 1 for work too small to pay for waking a second thread
    bound: tuple = field(default=(), repr=False)   # (input position, array) fixed by bind()
    packed: tuple = field(default=(), repr=False)  # (temp position, array) bind() filled

    def __call__(self, *arrays, out=None):
        """Run on numpy inputs (those not bound, in order); returns the output array (a tuple
        for several outputs)."""
        inputs = self.op.check_inputs(self._with_bound(arrays))
        outs = self._outputs(out)
        if out is not None:
            self._check_no_alias(inputs, outs)
        temps = [self._scratch(b) for b in self.loopnest.temps]
        for k, array in self.packed:
            temps[k] = array
        self._run((*inputs, *outs, *temps), len(self.loopnest.prepacked) if self.packed else 0)
        return outs[0] if len(outs) == 1 else tuple(outs)

    def bind(self, **constants) -> "Kernel":
        """This kernel with some inputs fixed (a layer's weights): the returned kernel takes the
        other inputs, in order. Operands it packs from inputs named in build(constants=...) are
        packed now, once, instead of on every call; the bound arrays must not change later."""
        names = [t.name for t in self.op.inputs]
        taken = dict(self.bound)
        for name, array in constants.items():
            if name not in names:
                raise ValueError(f"operator {self.op.name} has no input {name!r} to bind "
                                 f"(inputs: {', '.join(names)})")
            taken[names.index(name)] = array
        full = [taken.get(k, np.zeros(t.shape, t.dtype)) for k, t in enumerate(self.op.inputs)]
        inputs = self.op.check_inputs(full)
        bound = tuple((k, inputs[k]) for k in sorted(taken))
        packed = dict(self.packed)
        fixed = {names[k] for k in taken}
        prepacked = [name for name, _ in self.loopnest.prepacked]
        # Packed again when an input it packs from is bound anew (a new weight array).
        stale = not self.packed or any(name in constants for name in prepacked)
        if prepacked and fixed.issuperset(prepacked) and stale:
            packed = {}
            temps = [self._scratch(b) for b in self.loopnest.temps]
            outs = [np.empty(t.shape, dtype=t.dtype) for t in self.op.outputs]
            setup = len(self.loopnest.prepacked)
            self._run((*inputs, *outs, *temps), 0, stop=setup)
            for _, buf in self.loopnest.prepacked:
                k = self.loopnest.temps.index(buf)
                packed[k] = temps[k]
        return dataclasses.replace(self, bound=bound, packed=tuple(sorted(packed.items())))

    def bind_inputs(self, inputs, names) -> tuple:
        """(this kernel bound to the inputs named in `names`, taken from the full input list
        `inputs`; the remaining inputs, in order)."""
        all_names = [t.name for t in self.op.inputs]
        bound = self.bind(**{n: a for n, a in zip(all_names, inputs) if n in names})
        return bound, [a for n, a in zip(all_names, inputs) if n not in names]

    def _with_bound(self, arrays) -> tuple:
        if not self.bound:
            return arrays
        free = len(self.op.inputs) - len(self.bound)
        fixed = dict(self.bound)
        if len(arrays) != free:
            names = [t.name for k, t in enumerate(self.op.inputs) if k not in fixed]
            held = ", ".join(self.op.inputs[k].name for k in fixed)
            raise ValueError(f"operator {self.op.name} with {held} bound takes {free} inputs "
                             f"({', '.join(names)}), got {len(arrays)}")
        given, merged = iter(arrays), []
        for k in range(len(self.op.inputs)):
            merged.append(fixed[k] if k in fixed else next(given))
        return merged

    def _run(self, buffers: tuple, start: int, stop: int | None = None) -> None:
        """Steps start..stop (all after start by default) over these buffers."""
        threads = thread_count() if self.max_threads is None else min(self.max_threads, thread_count())
        if self.origin == "interpreted":
            self._interpret(buffers, threads, start, stop)
            return
        for k in range(len(self.steps))[start:stop]:
            extent = self.steps[k][1]
            try:
                run_step(self._entries[k], 1 if extent is None else extent, buffers, self._param_block,
                         1 if extent is None else threads)
            except StepFailed as exc:
                raise StepFailed(f"operator {self.op.name} ({self.op.workload_key}) with config "
                                 f"{self.config.to_json()}: step {k} of {len(self.steps)}: {exc}; "
                                 f"free memory, or pick a config with smaller cache blocks") from None

    @cached_property
    def _entries(self) -> tuple:
        return tuple(step.address for step, _ in self.steps)

    @cached_property
    def _param_block(self):
        return np.asarray(self.params, dtype=np.int64).reshape(-1)

    def _interpret(self, buffers, threads: int, start: int = 0, stop: int | None = None) -> None:
        """Each step in the chunks the pool would run, one after another, with the arrays
        themselves in the argument block (codegen/step_abi.py)."""
        block = [*buffers, *self.params]
        for step, extent in self.steps[start:stop]:
            if extent is None:
                step(0, 1, block)
                continue
            chunks = max(1, min(extent, threads))
            for k in range(chunks):
                step(extent * k // chunks, extent * (k + 1) // chunks, block)

    def _scratch(self, b):
        if self.origin == "interpreted":
            # Checking mode: scratch starts as garbage, so a read before a write shows up.
            fill = np.nan if np.dtype(b.dtype).kind == "f" else np.iinfo(b.dtype).min
            return np.full(tuple(b.shape), fill, dtype=b.dtype)
        return np.empty(tuple(b.shape), dtype=b.dtype)

    def _check_no_alias(self, inputs, outs) -> None:
        """Generated kernels may read an input after writing an output (a residual read after
        a Winograd run is stored, an epilogue after the tile), so in-place calls are refused."""
        for t, o in zip(self.op.outputs, outs):
            for spec, a in zip(self.op.inputs, inputs):
                if np.may_share_memory(o, a):
                    raise ValueError(f"operator {self.op.name}: out for {t.name} shares memory with input "
                                     f"{spec.name}; in-place calls are not supported, pass a separate array")

    def _outputs(self, out) -> list:
        specs = self.op.outputs
        if out is None:
            return [np.empty(t.shape, dtype=t.dtype) for t in specs]
        given = list(out) if isinstance(out, (list, tuple)) else [out]
        if len(given) != len(specs):
            raise ValueError(f"operator {self.op.name} has {len(specs)} outputs, out= gave {len(given)}")
        for t, a in zip(specs, given):
            if not isinstance(a, np.ndarray) or a.shape != t.shape or a.dtype != np.dtype(t.dtype) \
                    or not a.flags.c_contiguous or not a.flags.writeable:
                got = f"{a.dtype} {a.shape}" if isinstance(a, np.ndarray) else type(a).__name__
                raise ValueError(f"operator {self.op.name}: out for {t.name} must be a writable "
                                 f"C-contiguous {t.dtype} array of shape {t.shape}, got {got}")
        return given
