"""A measurer that needs no hardware: it replays stored costs or evaluates a cost function."""
from __future__ import annotations

import hashlib

from .measure import MeasureResult


def hashed_cost(config) -> float:
    """A deterministic pseudo-cost in [1e-4, 2e-4) seconds, for tests of search and records."""
    digest = hashlib.sha256(config.to_json().encode()).digest()
    return 1e-4 * (1.0 + int.from_bytes(digest[:4], "little") / 2**32)


class ReplayMeasurer:
    """Costs come from earlier records (config -> seconds) or from `cost_fn(config)`."""

    deterministic = True  # the same config always costs the same: re-timing tells nothing

    def __init__(self, cost_fn=hashed_cost, records=(), parallelism: int = 2):
        self.cost_fn = cost_fn
        self.table = {r.config: r for r in records}
        self.parallelism = parallelism
        self.calls: list = []
        self._extractors: dict = {}

    def measure(self, op, target, configs) -> list:
        out = []
        for c in configs:
            self.calls.append(c)
            if c in self.table:
                r = self.table[c]
                out.append(MeasureResult(costs=tuple(r.costs) or ((r.seconds,) if r.seconds else ()),
                                         error=r.error, error_message=r.error_message))
            else:
                out.append(MeasureResult(costs=(self.cost_fn(c),), features=self._features(op, target, c)))
        return out

    def _features(self, op, target, config):
        from costmodel import FeatureExtractor
        key = (op.workload_key, str(target))
        if key not in self._extractors:  # one per workload, so each structure is lowered once
            self._extractors[key] = FeatureExtractor(op, target)
        try:
            return tuple(float(x) for x in self._extractors[key](config))
        except Exception:
            return None

    def close(self) -> None:
        pass
