"""One code-generation option off and on, at the tuned configs of an `autosched bench` run: both
kernels built and timed in alternating rounds in one process, so the machine's drift between
moments falls on both alike.

    python benchmarks/option_ab.py tile-epilogue benchmarks/results/bench-2026-12-05-znver4-epilogue-1.json \\
        --rounds 7 --only 'R=3,S=3' --out benchmarks/results/transposed-store.json
    python benchmarks/option_ab.py pad-rows benchmarks/results/bench-2026-12-05-znver4-epilogue-1.json

tile-epilogue (AUTOSCHED_TILE_EPILOGUE): a pass over each finished block against epilogues in
the micro-kernel's registers (swapped conv tiles: their transposed store from registers).
pad-rows (AUTOSCHED_PAD_ROWS): a micro-kernel's padded input copied by threads split over
channels against split over image rows.
skip-padding-taps (AUTOSCHED_SKIP_PADDING_TAPS): swapped conv tiles running every tap against
skipping the row taps that read only padding.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
from pathlib import Path

# option -> (environment variable, name of the run with it at 0, name with it at 1)
OPTIONS = {
    "tile-epilogue": ("AUTOSCHED_TILE_EPILOGUE", "block pass", "in registers"),
    "pad-rows": ("AUTOSCHED_PAD_ROWS", "pad by channels", "pad by rows"),
    "skip-padding-taps": ("AUTOSCHED_SKIP_PADDING_TAPS", "every tap", "padding taps skipped"),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("option", choices=sorted(OPTIONS), help="the option to compare off and on")
    parser.add_argument("bench_json", help="an `autosched bench` result whose rows name their configs")
    parser.add_argument("--rounds", type=int, default=7, help="alternating timing rounds (default: 7)")
    parser.add_argument("--seconds", type=float, default=0.25, help="timed seconds per variant and round")
    parser.add_argument("--only", default="", help="';'-separated parts of the labels of the rows to time "
                        "(default: every micro-kernel row)")
    parser.add_argument("--out", default=None, help="JSON file for the results (default: print only)")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.seconds <= 0:
        parser.error("--rounds must be at least 1 and --seconds above 0")
    try:
        rows = json.loads(Path(args.bench_json).read_text())["rows"]
    except (OSError, ValueError, KeyError) as exc:
        parser.error(f"cannot read bench rows from {args.bench_json}: {exc}")
    variable, off, on = OPTIONS[args.option]

    import numpy as np

    from codegen import build
    from codegen.parallel import thread_count
    from schedules import as_target, ops
    from tuner.timing import median, time_callable

    results = []
    for row in rows:
        config = (row.get("autosched") or {}).get("config") or {}
        if not any(k.endswith(".kernel") and v == "micro" for k, v in config.items()):
            continue
        if args.only and not any(part and part in row["label"] for part in args.only.split(";")):
            continue
        plain = getattr(ops, row["op"])(**row["params"])
        op = plain.with_constants(*[t.name for t in plain.inputs if t.name in ("weight", "bias")])
        inputs = op.random_inputs(0)
        reference = op.reference(*inputs)
        kernels, sources = {}, {}
        for mode, flag in ((off, "0"), (on, "1")):
            os.environ[variable] = flag
            kernel = build(op, "cpu", config)
            bound, rest = kernel.bind_inputs(inputs, op.constants)
            out = np.empty_like(reference)
            bound(*rest, out=out)
            if not np.allclose(out, reference, rtol=1e-3, atol=1e-3):
                raise SystemExit(f"{row['label']}: {mode} does not match the reference")
            kernels[mode], sources[mode] = (bound, rest, out), kernel.source
        os.environ.pop(variable, None)
        times = {mode: [] for mode in kernels}
        for _ in range(args.rounds):
            for mode, (bound, rest, out) in kernels.items():
                costs = time_callable(lambda b=bound, r=rest, o=out: b(*r, out=o), min_seconds=args.seconds)
                times[mode].append(median(costs) * 1e3)
        medians = {mode: statistics.median(v) for mode, v in times.items()}
        changed = sources[off] != sources[on]
        result = {"label": row["label"], "op": row["op"], "params": row["params"], "config": config,
                  "changed": changed, "median_ms": medians, "rounds_ms": times,
                  "ratio": medians[on] / medians[off],
                  "round_ratios": [b / a for a, b in zip(times[off], times[on])]}
        results.append(result)
        print(f"{row['label']}: {'' if changed else 'same code; '}{off} {medians[off]:.3f} ms, "
              f"{on} {medians[on]:.3f} ms, ratio {result['ratio']:.3f} (by round "
              f"{min(result['round_ratios']):.3f}-{max(result['round_ratios']):.3f})", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": as_target("cpu").key, "threads": thread_count(), "python": sys.version.split()[0],
            "option": variable, "modes": [off, on], "rounds": args.rounds, "configs_from": args.bench_json,
            "rows": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
