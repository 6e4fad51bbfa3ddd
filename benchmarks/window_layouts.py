"""Time of each window layout (rows, padded planes, flat in place) on the MobileNet depthwise
layers of the bench suite, default knobs otherwise, in alternating rounds in one process.

    python benchmarks/window_layouts.py --rounds 7 --out benchmarks/results/window-layouts.json
"""
from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
from pathlib import Path

SHAPES = ((32, 112), (144, 56), (384, 14))
LAYOUTS = ("rows", "planes", "flat")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="alternating timing rounds (default: 7)")
    parser.add_argument("--seconds", type=float, default=0.3, help="timed seconds per layout and round")
    parser.add_argument("--out", default=None, help="JSON file for the results (default: print only)")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.seconds <= 0:
        parser.error("--rounds must be at least 1 and --seconds above 0")

    import numpy as np

    from codegen import build
    from codegen.parallel import thread_count
    from schedules import as_target, ops
    from tuner.timing import median, time_callable

    rows = []
    for C, H in SHAPES:
        op = ops.depthwise_conv2d(1, C, H, H, 3, 3, padding=1, bias=True, activation="relu")
        space = op.space("cpu")
        args_in = op.random_inputs(0)
        reference = op.reference(*args_in)
        kernels = {}
        for layout in LAYOUTS:
            config = space.validate(dict(space.default()) | {"depthwise_conv2d.win_layout": layout})
            kernel = build(op, "cpu", config)
            out = np.empty_like(reference)
            kernel(*args_in, out=out)
            if not np.allclose(out, reference, rtol=1e-4, atol=1e-4):
                raise SystemExit(f"depthwise {C}x{H}x{H}: the {layout} layout does not match the reference")
            kernels[layout] = (kernel, out)
        times = {layout: [] for layout in LAYOUTS}
        for _ in range(args.rounds):
            for layout, (kernel, out) in kernels.items():
                costs = time_callable(lambda k=kernel, o=out: k(*args_in, out=o), min_seconds=args.seconds)
                times[layout].append(median(costs) * 1e3)
        row = {"workload": f"depthwise_conv2d 1x{C}x{H}x{H} 3x3 pad 1, bias, relu",
               "default_layout": space.default()["depthwise_conv2d.win_layout"],
               "median_ms": {k: statistics.median(v) for k, v in times.items()},
               "rounds_ms": times}
        rows.append(row)
        best = min(row["median_ms"], key=row["median_ms"].get)
        print(f"{row['workload']}: " + ", ".join(f"{k} {v:.4f} ms" for k, v in row["median_ms"].items())
              + f"; fastest {best}, default {row['default_layout']}")
    if args.out:
        result = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  "machine": as_target("cpu").key, "threads": thread_count(),
                  "python": sys.version.split()[0], "rounds": args.rounds, "rows": rows}
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
