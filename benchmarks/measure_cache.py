"""A measurer that measures each (workload, config) once per benchmark and replays it after.

Search strategies that propose the same config get the same measurement, which removes
timing noise from their comparison and lets a killed benchmark resume: every new result is
appended to a JSON-lines file as soon as it arrives.
"""
from __future__ import annotations

import json
import os
import time

from schedules import Config
from tuner.measure import MeasureResult


class CachedMeasurer:
    deterministic = True  # a config measured once is replayed: re-timing it tells nothing

    def __init__(self, inner, path: str):
        self.inner = inner
        self.path = path
        self.table: dict = {}          # (workload key, config JSON) -> MeasureResult
        self.seconds_measuring = 0.0   # wall time spent in the real measurer
        self.hits = self.misses = 0
        if os.path.exists(path):
            with open(path) as f:
                for line in f:
                    if line.strip():
                        row = json.loads(line)
                        self.table[(row["workload"], row["config"])] = _result(row)

    @property
    def parallelism(self) -> int:
        return getattr(self.inner, "parallelism", 1)

    def measure(self, op, target, configs) -> list:
        keys = [(op.workload_key, Config(c).to_json()) for c in configs]
        todo = [i for i, k in enumerate(keys) if k not in self.table]
        self.hits += len(configs) - len(todo)
        self.misses += len(todo)
        if todo:
            start = time.perf_counter()
            fresh = self.inner.measure(op, target, [configs[i] for i in todo])
            self.seconds_measuring += time.perf_counter() - start
            with open(self.path, "a") as f:
                for i, r in zip(todo, fresh):
                    self.table[keys[i]] = r
                    f.write(json.dumps({"workload": keys[i][0], "op": op.name, "config": keys[i][1],
                                        "costs": list(r.costs), "error": r.error,
                                        "error_message": r.error_message[:500],
                                        "compile_seconds": r.compile_seconds,
                                        "features": None if r.features is None else list(r.features)}) + "\n")
        return [self.table[k] for k in keys]

    def entries(self, workload_key: str) -> list:
        """(Config, MeasureResult) of every config measured for one workload."""
        return [(Config.from_json(c), r) for (w, c), r in self.table.items() if w == workload_key]

    def close(self) -> None:
        self.inner.close()


def _result(row) -> MeasureResult:
    return MeasureResult(costs=tuple(row["costs"]), error=row["error"], error_message=row["error_message"],
                         compile_seconds=row["compile_seconds"],
                         features=None if row["features"] is None else tuple(row["features"]))
