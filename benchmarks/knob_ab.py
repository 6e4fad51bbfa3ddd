"""One knob of a stage set to each of several values at the tuned configs of an `autosched bench`
run, all else kept: each variant built, checked and timed in alternating rounds in one process.

    python benchmarks/knob_ab.py benchmarks/results/bench-2026-12-07-znver4-bert-attention-inplace-1.json \\
        --knob mk_b_in_place --values false,true --only batch_matmul --out benchmarks/results
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _values(text: str) -> list:
    """JSON values (false, true, 4, "kn"), bare words taken as strings."""
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            out.append(json.loads(part))
        except ValueError:
            out.append(part)
    if not out:
        raise argparse.ArgumentTypeError("--values needs at least one value")
    return out


def main(argv=None) -> int:
    sys.path.insert(0, str(REPO / "benchmarks"))
    from report import add_bench_row_arguments, bench_rows, tuned_workloads, write_rows_result
    from variants import time_config_variants

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_bench_row_arguments(parser, rounds=9)
    parser.add_argument("--knob", required=True, help="the knob's name after its stage, e.g. mk_b_in_place")
    parser.add_argument("--values", type=_values, required=True, help="','-separated values, e.g. false,true")
    parser.add_argument("--out", default=None, help="folder for the JSON result (default: print only)")
    args = parser.parse_args(argv)
    rows = bench_rows(parser, args)
    results = []
    for row, config, op, inputs in tuned_workloads(rows, args.only):
        names = [k for k in config if k.split(".", 1)[-1] == args.knob]
        if not names:
            continue  # this space has no such knob
        variants = {json.dumps(v): {names[0]: v} for v in args.values}
        results.append(time_config_variants(row, config, op, inputs, variants, args.rounds, args.seconds))
    if not results:
        parser.error(f"no row of {args.bench_json} has a knob {args.knob!r}")
    write_rows_result(args, "knob-ab", "benchmarks/knob_ab.py", argv, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
