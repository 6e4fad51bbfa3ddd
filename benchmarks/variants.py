"""Timing variants of a tuned config: each built, checked against the reference, and timed in
alternating, rotated rounds in one process (shared by register_tiles.py and knob_ab.py)."""
from __future__ import annotations

import statistics


def time_config_variants(row: dict, config: dict, op, inputs, variants: dict, rounds: int, seconds: float) -> dict:
    """The result entry of one bench row: `variants` maps a variant's name to the knob values
    it changes in `config`; variants the space does not offer are listed under "refused".
    Exits with a message if a variant does not match the reference."""
    import numpy as np

    from codegen import build
    from schedules.errors import ConfigError, ScheduleError
    from schedules.space import Config
    from tuner.timing import interleaved_rounds

    space = op.space("cpu")
    ref = op.reference(*inputs)
    kernels, refused = {}, {}
    for name, changes in variants.items():
        try:
            cfg = space.validate(Config({**config, **changes}))
        except (ConfigError, ScheduleError) as exc:  # not offered by this space: reported
            refused[name] = f"{type(exc).__name__}: {exc}"
            continue
        kernel, rest = build(op, "cpu", cfg).bind_inputs(inputs, op.constants)
        out = kernel(*rest)
        if not np.allclose(out, ref, rtol=1e-3, atol=1e-3):
            raise SystemExit(f"{row['label']} as {name}: does not match the reference "
                             f"(max error {float(np.max(np.abs(out - ref)))})")
        kernels[name] = (kernel, rest)
    names = list(kernels)
    calls = {name: (lambda kernel=kernel, rest=rest: kernel(*rest)) for name, (kernel, rest) in kernels.items()}
    times = {name: [t * 1e3 for t in per_round]
             for name, per_round in interleaved_rounds(calls, seconds * rounds, rounds).items()}
    medians = {name: statistics.median(v) for name, v in times.items()}
    if not names:
        print(f"{row['label']}: no variant offered: " + "; ".join(f"{n}: {w[:80]}" for n, w in refused.items()))
    else:
        print(row["label"])
    for name in names:
        print(f"  {name:>12}  {medians[name]:.4f} ms  {op.flops() / (medians[name] * 1e-3) / 1e9:6.1f} GFLOPS"
              f"  (rounds {min(times[name]):.4f}-{max(times[name]):.4f})", flush=True)
    for name, why in refused.items():
        print(f"  {name:>12}  not offered: {why[:120]}")
    return {"label": row["label"], "config": config, "median_ms": medians, "rounds_ms": times,
            "gflops": {n: op.flops() / (m * 1e-3) / 1e9 for n, m in medians.items()}, "refused": refused}
