"""Feature-extraction speed: seconds to lower and featurize a pool of 2000 sampled candidates."""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pool", type=int, default=2000, help="candidates per pool (default: 2000)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats; the median is reported")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"), help="results folder")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / "benchmarks"))
    from report import write_result
    import numpy as np

    from costmodel import FeatureExtractor, featurize
    from schedules import lower, ops
    workloads = {
        "matmul 256x256x256": ops.matmul(256, 256, 256),
        "conv2d 1x32x28x28 k32 3x3": ops.conv2d(1, 32, 28, 28, 32, 3, 3, padding=1),
        "dense+gelu 64x256x256": ops.dense(64, 256, 256, activation="gelu"),
        "layer_norm 128x768": ops.layer_norm(128, 768),
        "softmax 128x512": ops.softmax(128, 512),
    }
    rows = []
    for name, op in workloads.items():
        space = op.space("cpu")
        rng = np.random.default_rng(0)
        configs = [space.sample(rng) for _ in range(args.pool)]
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            extract = FeatureExtractor(op)  # a fresh one: every structure is lowered again
            extract.many(configs)
            times.append(time.perf_counter() - start)
        # Without structure sharing: schedule, lower and featurize every candidate.
        sample = configs[:200]
        start = time.perf_counter()
        for c in sample:
            sch = space.apply(c)
            featurize(lower(sch), {id(p): v for p, v in sch.params}, sch.target.cores, sch.target.cache_bytes)
        unshared = (time.perf_counter() - start) / len(sample) * args.pool
        rows.append({"workload": name, "pool": args.pool, "seconds": round(statistics.median(times), 3),
                     "distinct_structures": len(extract.nests),
                     "seconds_without_structure_sharing": round(unshared, 2)})
        print(rows[-1])
    path = write_result(args.out, "feature_speed", "benchmarks/feature_speed.py", argv, {"results": rows})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
