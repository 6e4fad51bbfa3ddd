"""Kernel: a compiled operator callable with its source, config, target and loop nest."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .parallel import run_parallel, thread_count


@dataclass(frozen=True, eq=False)
class Kernel:
    op: object
    target: object
    config: object
    source: str
    loopnest: object = field(repr=False)
    params: tuple = ()             # runtime-knob values passed to the compiled steps
    steps: tuple = field(default=(), repr=False)  # (step function, parallel extent or None)
    compile_seconds: float = 0.0
    cache_key: str = ""
    origin: str = "compiled"       # "compiled", "disk" or "memory" cache, or "interpreted"
    max_threads: int | None = None  # 1 for work too small to pay for waking a second thread

    def __call__(self, *arrays, out=None):
        """Run on numpy inputs; returns the output array (a tuple for several outputs)."""
        inputs = self.op.check_inputs(arrays)
        outs = self._outputs(out)
        temps = [self._scratch(b) for b in self.loopnest.temps]
        args = (*inputs, *outs, *temps, *self.params)
        threads = thread_count() if self.max_threads is None else min(self.max_threads, thread_count())
        for step, extent in self.steps:
            if extent is None:
                step(*args)
            else:
                run_parallel(step, extent, args, threads)
        return outs[0] if len(outs) == 1 else tuple(outs)

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
