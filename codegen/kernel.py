"""Kernel: a compiled operator callable with its source, config, target and loop nest."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from .parallel import run_step, thread_count


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

    def __call__(self, *arrays, out=None):
        """Run on numpy inputs; returns the output array (a tuple for several outputs)."""
        inputs = self.op.check_inputs(arrays)
        outs = self._outputs(out)
        buffers = (*inputs, *outs, *(self._scratch(b) for b in self.loopnest.temps))
        threads = thread_count() if self.max_threads is None else min(self.max_threads, thread_count())
        if self.origin == "interpreted":
            self._interpret(buffers, threads)
        else:
            for (step, extent), entry in zip(self.steps, self._entries):
                run_step(entry, 1 if extent is None else extent, buffers, self._param_block,
                         1 if extent is None else threads)
        return outs[0] if len(outs) == 1 else tuple(outs)

    @cached_property
    def _entries(self) -> tuple:
        return tuple(step.address for step, _ in self.steps)

    @cached_property
    def _param_block(self):
        return np.asarray(self.params, dtype=np.int64).reshape(-1)

    def _interpret(self, buffers, threads: int) -> None:
        """Each step in the chunks the pool would run, one after another, with the arrays
        themselves in the argument block (codegen/step_abi.py)."""
        block = [*buffers, *self.params]
        for step, extent in self.steps:
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
