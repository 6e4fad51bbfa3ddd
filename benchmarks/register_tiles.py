"""A tuned micro-kernel's config built with other register tiles (rows x vectors x lanes), all
else kept, and timed in alternating rounds in one process: whether the tile limits the kernel.

    python benchmarks/register_tiles.py benchmarks/results/bench-2026-12-07-znver4-stem-96-tune.json \\
        --only 'stride=2' --tiles 4x1x16,4x2x16,8x1x16,4x2x8,8x2x8 --out benchmarks/results
"""
from __future__ import annotations

import argparse
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
    from variants import time_config_variants

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_bench_row_arguments(parser, rounds=7)
    parser.add_argument("--tiles", type=_tiles, default=_tiles(DEFAULT_TILES),
                        help=f"register tiles to build, ROWSxVECSxLANES (default: {DEFAULT_TILES})")
    parser.add_argument("--out", default=None, help="folder for the JSON result (default: print only)")
    args = parser.parse_args(argv)
    rows = bench_rows(parser, args)
    results = []
    for row, config, op, inputs in tuned_workloads(rows, args.only):
        stage = next((k.split(".")[0] for k in config if k.endswith(".mk_rows")), None)
        if stage is None or config.get(f"{stage}.kernel") != "micro":
            continue  # not on the micro-kernel: its mk_ knobs change nothing
        variants = {f"{r}x{v}x{lanes}": {f"{stage}.mk_rows": r, f"{stage}.mk_vecs": v, f"{stage}.mk_lanes": lanes}
                    for r, v, lanes in args.tiles}
        results.append(time_config_variants(row, config, op, inputs, variants, args.rounds, args.seconds))
    write_rows_result(args, "register-tiles", "benchmarks/register_tiles.py", argv, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
