"""Measuring candidates: parallel builds and one-at-a-time timed runs, in worker processes."""
from __future__ import annotations

import dataclasses
import datetime as dt
import statistics
from dataclasses import dataclass, field

from schedules import as_target
from schedules.errors import ConfigError, ScheduleError

from .workers import Worker, WorkerDied, WorkerPool, WorkerTimeout


@dataclass(frozen=True)
class MeasureResult:
    """Costs in seconds (empty on error), the error kind (None when correct) and its message."""

    costs: tuple = ()
    error: str | None = None
    error_message: str = ""
    compile_seconds: float = 0.0
    features: tuple | None = None   # cost-model features, computed where the candidate was built
    timestamp: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).replace(tzinfo=None))

    @property
    def seconds(self) -> float | None:
        return statistics.median(self.costs) if self.costs and self.error is None else None


@dataclass(frozen=True)
class MeasureOptions:
    build_timeout: float = 120.0    # seconds for one candidate's lowering and compile
    run_timeout: float = 60.0       # seconds for loading, the correctness check and timing
    reference_timeout: float = 900.0  # seconds for the numpy reference, once per workload
    min_seconds: float = 0.05       # timed repeats continue until this much time has passed
    min_repeats: int = 3
    max_repeats: int = 200
    check: bool = True              # compare the first run with op.reference
    builders: int | None = None     # parallel build processes; None: the number of cores
    # A candidate whose first timed run is this many times slower than the best this measurer
    # has seen for the workload is timed once, not min_repeats times (0 disables).
    slow_factor: float = 4.0


# -- code run inside the worker processes ---------------------------------------------------------
_REFERENCE_CACHE: dict = {}


def _build_task(task):
    op, target, config = task
    from codegen import build
    kernel = build(op, target, config)
    artifact = None
    if getattr(target, "kind", None) == "cuda":
        # Compile in this build process (NVRTC needs no GPU) and check registers, shared
        # memory and threads against the device, so the GPU only runs kernels that load. The
        # runner gets the source itself: it needs neither the space nor any template.
        from codegen.build import CompileError
        from codegen.cuda_compile import verify
        report = verify(kernel.source, kernel.launches, target)
        if not report.ok:
            raise CompileError(f"{op.name}: config {config.to_json()} exceeds the limits of "
                               f"{target.model}: {'; '.join(report.violations)}")
        artifact = kernel.artifact()
    try:
        from costmodel import featurize_config
        features = tuple(float(x) for x in featurize_config(op, config, target))
    except Exception:  # features are an aid to the search; their absence is not an error
        features = None
    return kernel.compile_seconds, features, artifact


def _prepare(op, opts):
    key = op.workload_key
    if key not in _REFERENCE_CACHE:
        inputs = op.random_inputs(seed=12345)
        _REFERENCE_CACHE.clear()
        _REFERENCE_CACHE[key] = (inputs, op.reference(*inputs) if opts.check else None)
    return _REFERENCE_CACHE[key]


def _run_task(task):
    if task[0] == "prepare":  # inputs and the numpy reference, once per workload
        _prepare(task[1], task[2])
        return None
    _, op, target, config, opts, give_up_after, artifact = task
    import numpy as np

    from codegen import build
    from tuner.timing import time_callable
    inputs, expected = _prepare(op, opts)
    if target.kind == "cuda":
        from codegen.cuda_kernel import CudaKernel
        from tuner.gpu_timing import run_candidate
        return run_candidate(CudaKernel.from_artifact(op, target, config, artifact), inputs,
                             expected, opts, give_up_after)
    kernel = build(op, target, config)
    try:
        if op.constants:
            # Timed as deployed: the constant inputs bound (their operands packed) once.
            kernel, inputs = kernel.bind_inputs(inputs, op.constants)
        got = kernel(*inputs)
    except Exception as exc:
        return ("runtime_error", f"{type(exc).__name__}: {exc}", ())
    if opts.check:
        got_t = got if isinstance(got, tuple) else (got,)
        exp_t = expected if isinstance(expected, tuple) else (expected,)
        for g, e, t in zip(got_t, exp_t, op.outputs):
            if not np.allclose(g, e, rtol=1e-3, atol=1e-3, equal_nan=True):
                worst = float(np.nanmax(np.abs(g.astype(np.float64) - e)))
                return ("wrong_answer", f"output {t.name} differs from op.reference by up to "
                        f"{worst:.3g} (rtol 1e-3, atol 1e-3)", ())
    outs = got if isinstance(got, tuple) else (got,)
    # Warmed up again even after the correctness run: during the check the pool's threads go
    # idle and the caches cool, and the next call of a 0.023 ms depthwise kernel took 0.04 to
    # 0.15 ms, over the slow-candidate cut (4x the best), so the candidate kept that one call.
    costs = time_callable(lambda: kernel(*inputs, out=outs if len(outs) > 1 else outs[0]),
                          opts.min_seconds, opts.min_repeats, opts.max_repeats,
                          warmup=True, give_up_after=give_up_after)
    return (None, "", tuple(costs))


# -- the measurer --------------------------------------------------------------------------------
class LocalMeasurer:
    """Builds candidates in parallel worker processes, then times them one at a time in
    another, so a hung or crashing candidate becomes an error record and costs one worker."""

    def __init__(self, options: MeasureOptions | None = None):
        import os
        self.options = options or MeasureOptions()
        n = self.options.builders or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
        self.builders = WorkerPool(_build_task, n)
        self.cpu_runner = Worker(_run_task)
        self.gpu_runner = Worker(_run_task, start_method="spawn")
        self.runner = self.cpu_runner
        self._prepared = None
        self._best: dict = {}  # workload key -> fastest seconds this measurer has seen

    @property
    def parallelism(self) -> int:
        """Candidates worth measuring per batch: one per build process."""
        return len(self.builders.workers)

    def close(self) -> None:
        self.builders.close()
        self.cpu_runner.close()
        self.gpu_runner.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def measure(self, op, target, configs) -> list:
        """One MeasureResult per config, in order."""
        tgt = as_target(target)
        runner = self.gpu_runner if tgt.kind == "cuda" else self.cpu_runner
        if runner is not self.runner:
            self.runner, self._prepared = runner, None
        space = op.space(tgt)
        results: list = [None] * len(configs)
        canonical = {}
        for i, cfg in enumerate(configs):
            try:
                # Knob checks only: applying a schedule runs template code, which belongs in
                # a worker with a timeout.
                canonical[i] = space.check(cfg)
            except (ConfigError, ScheduleError) as exc:
                results[i] = MeasureResult(error="invalid_config", error_message=str(exc))
        order = list(canonical)
        outcomes = self.builders.map([(op, tgt, canonical[i]) for i in order], self.options.build_timeout)
        built = []
        for i, outcome in zip(order, outcomes):
            status, value = outcome
            if status == "ok":
                built.append((i, value))
            elif status == "error":
                kind = "invalid_config" if value[0] in ("ConfigError", "ScheduleError") else "compile_error"
                results[i] = MeasureResult(error=kind, error_message=f"{value[0]}: {value[1]}")
            elif status == "timeout":
                results[i] = MeasureResult(error="timeout", error_message=f"build {value}")
            else:
                results[i] = MeasureResult(error="compile_error", error_message=f"build crashed: {value}")
        for i, (compile_seconds, features, artifact) in built:
            r = self._run(op, tgt, canonical[i], compile_seconds, artifact)
            results[i] = dataclasses.replace(r, features=features)
        return results

    def _prepare_runner(self, op) -> str | None:
        """Compute the reference in the runner once per workload, outside the per-candidate
        timeout (the numpy oracle of a large operator can take a minute). Returns an error."""
        if self._prepared == op.workload_key:
            return None
        try:
            status, value = self.runner.run(("prepare", op, self.options), self.options.reference_timeout)
        except (WorkerTimeout, WorkerDied) as exc:
            return f"computing the reference failed: {exc}"
        if status == "error":
            return f"computing the reference failed: {value[0]}: {value[1]}"
        self._prepared = op.workload_key
        return None

    def _run(self, op, tgt, config, compile_seconds, artifact=None) -> MeasureResult:
        problem = self._prepare_runner(op)
        if problem is not None:
            return MeasureResult(error="runtime_error", error_message=problem, compile_seconds=compile_seconds)
        try:
            best = self._best.get(op.workload_key)
            give_up = best * self.options.slow_factor if best and self.options.slow_factor > 0 else None
            status, value = self.runner.run(("run", op, tgt, config, self.options, give_up, artifact),
                                            self.options.run_timeout)
        except WorkerTimeout as exc:
            self._prepared = None  # the runner was killed, and its reference with it
            return MeasureResult(error="timeout", error_message=f"run {exc}", compile_seconds=compile_seconds)
        except WorkerDied as exc:
            self._prepared = None
            return MeasureResult(error="runtime_error", error_message=f"run crashed: {exc}",
                                 compile_seconds=compile_seconds)
        if status == "error":
            if tgt.kind == "cuda":
                self.runner.kill()
                self._prepared = None
            return MeasureResult(error="runtime_error", error_message=f"{value[0]}: {value[1]}",
                                 compile_seconds=compile_seconds)
        kind, message, costs = value
        if kind == "runtime_error" and tgt.kind == "cuda":
            # A faulting kernel leaves the CUDA context unusable for the next candidates.
            self.runner.kill()
            self._prepared = None
        result = MeasureResult(costs=costs, error=kind, error_message=message, compile_seconds=compile_seconds)
        if result.seconds is not None and result.seconds < self._best.get(op.workload_key, float("inf")):
            self._best[op.workload_key] = result.seconds
        return result
