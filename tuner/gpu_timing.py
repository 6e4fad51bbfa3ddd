"""Timing CUDA kernels: CUDA events around each launch, the L2 cache flushed before each run."""
from __future__ import annotations


def flush_buffer(cupy, l2_bytes: int):
    """A device buffer twice the L2's size: writing it evicts what the last run left in L2, so
    every timed run reads its inputs from device memory, as a cold layer of a model would."""
    return cupy.empty(max(1, 2 * l2_bytes // 4), dtype=cupy.float32)


def time_cuda(cupy, launch, flush, min_seconds: float, min_repeats: int, max_repeats: int,
              give_up_after: float | None = None) -> list:
    """Seconds of each timed launch, measured with CUDA events on the current stream; the L2
    flush runs between the events of one run and the next, outside the measured interval."""
    start, end = cupy.cuda.Event(), cupy.cuda.Event()
    costs, total = [], 0.0
    while len(costs) < max_repeats and (len(costs) < min_repeats or total < min_seconds):
        if flush is not None:
            flush.fill(0)
        start.record()
        launch()
        end.record()
        end.synchronize()
        seconds = cupy.cuda.get_elapsed_time(start, end) / 1e3
        costs.append(seconds)
        total += seconds
        if give_up_after is not None and seconds > give_up_after:
            break
    return costs


def run_candidate(kernel, inputs, expected, opts, give_up_after) -> tuple:
    """(error kind or None, message, costs) for a cuda kernel, like the CPU runner: the first
    run is checked against the reference and warms the kernel up, then timed runs follow."""
    import numpy as np

    from codegen.cuda_kernel import cupy_module
    cupy = cupy_module()
    device_inputs = kernel.device_arrays(inputs)
    try:
        got = kernel(*device_inputs)
        cupy.cuda.get_current_stream().synchronize()
    except Exception as exc:
        return ("runtime_error", f"{type(exc).__name__}: {exc}", ())
    outs = got if isinstance(got, tuple) else (got,)
    if opts.check:
        exp_t = expected if isinstance(expected, tuple) else (expected,)
        for g, e, t in zip(outs, exp_t, kernel.op.outputs):
            g = cupy.asnumpy(g)
            if not np.allclose(g, e, rtol=1e-3, atol=1e-3, equal_nan=True):
                worst = float(np.nanmax(np.abs(g.astype(np.float64) - e)))
                return ("wrong_answer", f"output {t.name} differs from op.reference by up to "
                        f"{worst:.3g} (rtol 1e-3, atol 1e-3)", ())
    out = outs if len(outs) > 1 else outs[0]
    flush = flush_buffer(cupy, kernel.target.gpu.l2_bytes)
    costs = time_cuda(cupy, kernel.launcher(*device_inputs, out=out), flush,
                      opts.min_seconds, opts.min_repeats, opts.max_repeats, give_up_after)
    return (None, "", tuple(costs))
