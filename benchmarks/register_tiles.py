"""A tuned micro-kernel's config built with other register tiles (rows x vectors x lanes), all
else kept, and timed in alternating rounds in one process: whether the tile limits the kernel.

    python benchmarks/register_tiles.py benchmarks/results/bench-2026-12-07-znver4-stem-96-tune.json \\
        --only 'stride=2' --tiles 4x1x16,4x2x16,8x1x16,4x2x8,8x2x8 --out benchmarks/results
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_TILES = "4x1x16,4x2x16,6x1x16,8x1x16,6x2x16,4x2x8,4x3x8,8x1x8,8x2x8"


def _tiles(text: str) -> list:
    try:
        tiles = [tuple(int(v) for v in part.split("x")) for part in text.split(",") if part]
    except ValueError:
        tiles = []
    if not tiles or any(len(t) != 3 for t in tiles):
        raise argparse.ArgumentTypeError(f"--tiles {text!r}: expected ROWSxVECSxLANES,... such as 4x1x16,8x2x8")
    return tiles


def main(argv=None) -> int:
    sys.path.insert(0, str(REPO / "benchmarks"))
    from report import add_bench_row_arguments, bench_rows, tuned_workloads, write_rows_result

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_bench_row_arguments(parser, rounds=7)
    parser.add_argument("--tiles", type=_tiles, default=_tiles(DEFAULT_TILES),
                        help=f"register tiles to build, ROWSxVECSxLANES (default: {DEFAULT_TILES})")
    parser.add_argument("--out", default=None, help="folder for the JSON result (default: print only)")
    args = parser.parse_args(argv)
    rows = bench_rows(parser, args)
    import numpy as np

    from codegen import build
    from schedules.errors import ConfigError, ScheduleError
    from schedules.space import Config
    from tuner.timing import median, time_callable

    results = []
    for row, config, op, inputs in tuned_workloads(rows, args.only):
        stage = next((k.split(".")[0] for k in config if k.endswith(".mk_rows")), None)
        if stage is None or config.get(f"{stage}.kernel") != "micro":
            continue  # not on the micro-kernel: its mk_ knobs change nothing
        space = op.space("cpu")
        ref = op.reference(*inputs)
        kernels, refused = {}, {}
        for rows_, vecs, lanes in args.tiles:
            name = f"{rows_}x{vecs}x{lanes}"
            try:
                cfg = space.validate(Config({**config, f"{stage}.mk_rows": rows_, f"{stage}.mk_vecs": vecs,
                                             f"{stage}.mk_lanes": lanes}))
            except (ConfigError, ScheduleError) as exc:  # a tile this space does not offer: reported
                refused[name] = f"{type(exc).__name__}: {exc}"
                continue
            kernel, rest = build(op, "cpu", cfg).bind_inputs(inputs, op.constants)
            out = kernel(*rest)
            err = float(np.max(np.abs(out - ref)))
            if not np.allclose(out, ref, rtol=1e-3, atol=1e-3):
                raise SystemExit(f"{row['label']} at tile {name}: does not match the reference (max error {err})")
            kernels[name] = (kernel, rest)
        names = list(kernels)
        if not names:
            print(f"{row['label']}: no tile offered: " + "; ".join(f"{n}: {w[:80]}" for n, w in refused.items()))
            results.append({"label": row["label"], "config": config, "median_ms": {}, "rounds_ms": {},
                            "gflops": {}, "refused": refused})
            continue
        times = {name: [] for name in names}
        for r in range(args.rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                kernel, rest = kernels[name]
                times[name].append(median(time_callable(lambda: kernel(*rest), min_seconds=args.seconds)) * 1e3)
        medians = {name: statistics.median(v) for name, v in times.items()}
        results.append({"label": row["label"], "config": config, "median_ms": medians, "rounds_ms": times,
                        "gflops": {n: op.flops() / (m * 1e-3) / 1e9 for n, m in medians.items()},
                        "refused": refused})
        print(row["label"])
        for name in names:
            print(f"  {name:>8}  {medians[name]:.4f} ms  {op.flops() / (medians[name] * 1e-3) / 1e9:6.1f} GFLOPS"
                  f"  (rounds {min(times[name]):.4f}-{max(times[name]):.4f})", flush=True)
        for name, why in refused.items():
            print(f"  {name:>8}  not offered: {why[:120]}")
    write_rows_result(args, "register-tiles", "benchmarks/register_tiles.py", argv, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
