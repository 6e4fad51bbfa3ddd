"""build(): operator + target + config -> a compiled Kernel."""
from __future__ import annotations

from schedules import Config, as_target
from schedules.errors import ScheduleError
from schedules.lower import lower

from .kernel import Kernel
from .numba_source import generate


class CompileError(ScheduleError):
    """The generated source failed to compile."""


def build(op, target="cpu", config=None, *, jit: bool = True, constants=None) -> Kernel:
    """Compile `op` for `target` with `config` (None: the default heuristic schedule).

    jit=False runs the same generated source in the Python interpreter: slow, but with no
    compile step, for checking schedules on tiny shapes. `constants` names inputs that stay
    the same across calls (weights): micro-kernel operands read from them are packed by
    steps of their own, which `Kernel.bind` runs once (CPU targets). None takes the
    operator's own (Operator.with_constants).
    """
    tgt, config, sch, nest, source, launches = _generated(op, target, config, constants)
    if tgt.kind == "cuda":
        from .cuda_kernel import CudaKernel
        return CudaKernel.create(op, tgt, config, nest, source, launches)
    from .cache import compiled
    try:
        if jit:
            entries, seconds, key, origin = compiled(source, tgt.key)
        else:
            from .interpret import interpreted_steps
            entries, seconds, key, origin = interpreted_steps(source), 0.0, "", "interpreted"
    except Exception as exc:  # numba raises many types; name the candidate either way
        raise CompileError(f"compiling {op.name} ({op.workload_key}) with config "
                           f"{Config(config).to_json()} failed: {type(exc).__name__}: {exc}") from exc
    params = sch.param_values()
    buffers = (None,) * (len(nest.inputs) + len(nest.outputs) + len(nest.temps))
    steps = tuple((step, None if extent is None else int(extent(*buffers, *params)))
                  for step, extent in entries)
    return Kernel(op=op, target=tgt, config=config, source=source, loopnest=nest,
                  params=params, steps=steps, compile_seconds=seconds, cache_key=key,
                  origin=origin, max_threads=1 if _small(op) else None)


def kernel_source(op, target="cpu", config=None, constants=None) -> str:
    """The source build() would compile for this config, generated without compiling it."""
    return _generated(op, target, config, constants)[4]


def _generated(op, target, config, constants=None) -> tuple:
    """(target, config, schedule, loop nest, source, launches). On GPU targets the nest is the
    GPU nest; cuda's source is CUDA C with its kernels' launches, cuda-sim's the Numba source
    of the same nest run on the CPU. Launches are () but on cuda. `constants` None: the
    operator's own."""
    tgt = as_target(target)
    space = op.space(tgt)
    config = space.default() if config is None else space.validate(config)
    sch = space.apply(config)
    if not tgt.is_gpu:
        nest = lower(sch, tuple(op.constants if constants is None else constants))
        return tgt, config, sch, nest, generate(nest), ()
    from schedules.gpu_lower import lower_gpu
    nest = lower_gpu(sch)
    if tgt.kind == "cuda":
        from .cuda_source import cuda_source
        return (tgt, config, sch, nest) + cuda_source(nest)
    from .cuda_sim import simulate
    return tgt, config, sch, nest, generate(simulate(nest)), ()


# Handing work to the pool costs about 2 us a call (benchmarks/thread_handoff.py), so two
# threads win once one thread needs more than about 7 us (measured with default schedules: a
# 8x256 layer norm, 6.0 us on one thread, 6.7 on two; a 64x128 softmax 8.1 and 7.3 us; a 64^3
# matmul 11.5 and 9.5 us). Operators under both of these sizes run on the calling thread.
SERIAL_BYTES = 32 << 10
SERIAL_FLOPS = 200_000


def _small(op) -> bool:
    import math
    nbytes = sum(math.prod(t.shape) * 4 for t in list(op.inputs) + list(op.outputs))
    return nbytes < SERIAL_BYTES and op.flops() < SERIAL_FLOPS
