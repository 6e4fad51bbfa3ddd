"""Strategy "xgb": a learned cost model ranks a large pool of proposals; the best few are measured."""
from __future__ import annotations

import math

import numpy as np

from costmodel import FeatureExtractor, XGBModel

from .search import OptunaStrategy, Proposal
from .workers import Worker, WorkerDied, WorkerTimeout

# Seconds one candidate may take to lower and featurize before it is dropped from the pool.
FEATURIZE_SECONDS = 2.0


# The worker process keeps one extractor per workload, so each code structure is lowered once.
_EXTRACTORS: dict = {}


def _featurize_task(task) -> list:
    op, target, configs = task
    key = (op.workload_key, getattr(target, "key", str(target)))
    if key not in _EXTRACTORS:
        _EXTRACTORS.clear()
        _EXTRACTORS[key] = FeatureExtractor(op, target)
    extract = _EXTRACTORS[key]
    out = []
    for c in configs:
        try:
            out.append(tuple(float(x) for x in extract(c)))
        except Exception:  # an illegal schedule has no loop nest to describe
            out.append(None)
    return out


class Featurizer:
    """Lowers and featurizes candidates in a worker process: lowering runs template code, and a
    template that hangs or crashes must cost a candidate, never the tuning job."""

    def __init__(self, op, target):
        self.op, self.target = op, target
        self.worker = Worker(_featurize_task)

    def __call__(self, configs) -> list:
        if not configs:
            return []
        try:
            status, value = self.worker.run((self.op, self.target, list(configs)),
                                            2.0 + 0.05 * len(configs))
            if status == "ok":
                return value
        except (WorkerTimeout, WorkerDied):
            pass
        out = []  # isolate the culprit: one candidate at a time
        for c in configs:
            try:
                status, value = self.worker.run((self.op, self.target, [c]), FEATURIZE_SECONDS)
                out.append(value[0] if status == "ok" else None)
            except (WorkerTimeout, WorkerDied):
                out.append(None)
        return out

    def close(self) -> None:
        self.worker.close()


class ModelGuidedStrategy:
    """Each batch: refill a pool of unmeasured candidates (part proposed by Optuna's TPE, the
    rest drawn uniformly), add `mutants` fresh one-knob neighbours of the best measured
    configs, score them all with the cost model, and measure the top candidates plus an
    `explore` share drawn at random from the pool. Measurements go back to the model, which
    is refitted once enough new ones have arrived, and to the persisted Optuna study.

    `transfer` is (features, seconds, groups) of other workloads on the same target: the
    model starts from them instead of from nothing.
    """

    name = "xgb"

    def __init__(self, space, op, target, seed: int, storage=None, study_name=None,
                 model=None, pool_size: int = 512, tpe_share: float = 0.125, explore: float = 0.25,
                 min_train: int = 6, transfer=None, mutants: int = 64, parents: int = 8):
        self.space, self.op, self.target = space, op, target
        self.rng = np.random.default_rng(seed)
        self.model = model or XGBModel(seed=seed, rounds=60)
        self.tpe = OptunaStrategy(space, "tpe", seed, storage=storage, study_name=study_name)
        self.pool_size, self.tpe_share, self.explore, self.min_train = pool_size, tpe_share, explore, min_train
        self.n_mutants, self.n_parents = mutants, parents
        self.pool: dict = {}        # Config -> (features, Optuna trial or None)
        self.mutants: dict = {}     # Config -> features; neighbours of the best, renewed each batch
        self.measured: list = []    # (seconds, order, Config) of correct measurements
        self.features: dict = {}    # Config -> features (cache)
        self.seen: set = set()      # measured or skipped
        self.own: list = []         # (features, seconds) of this workload
        if transfer is not None and len(transfer[0]):
            X, y, g = transfer
            self.transfer = (np.asarray(X, np.float32), np.asarray(y, np.float64), np.asarray(g) + 1)
        else:
            self.transfer = None
        self.fitted_at = -1
        self.featurizer = Featurizer(op, target)

    # -- bookkeeping -------------------------------------------------------------------------
    def _feats(self, configs) -> list:
        """Features of candidates (cached); None for one whose schedule cannot be lowered."""
        todo = [c for c in dict.fromkeys(configs) if c not in self.features]
        for c, f in zip(todo, self.featurizer(todo)):
            self.features[c] = None if f is None else np.asarray(f, dtype=np.float32)
        return [self.features[c] for c in configs]

    def close(self) -> None:
        self.featurizer.close()
        self.tpe.close() if hasattr(self.tpe, "close") else None

    def warm_start(self, measured) -> None:
        self.tpe.warm_start(measured)
        measured = list(measured)
        for (config, seconds), feats in zip(measured, self._feats([c for c, _ in measured])):
            self.seen.add(config)
            if seconds is not None:
                self.measured.append((seconds, len(self.measured), config))
            if feats is not None:
                self.own.append((feats, math.inf if seconds is None else seconds))

    def _refill(self) -> None:
        want_tpe = max(1, int(self.pool_size * self.tpe_share))
        tpe_in_pool = sum(1 for _, h in self.pool.values() if h is not None)
        fresh = []  # (config, Optuna trial or None)
        if tpe_in_pool < want_tpe:
            for p in self.tpe.propose(want_tpe - tpe_in_pool):
                if p.config in self.seen or p.config in self.pool or any(p.config == c for c, _ in fresh):
                    self.tpe.skip(p)
                else:
                    fresh.append((p.config, p.handle))
        taken = {c for c, _ in fresh}
        attempts = 0
        while len(self.pool) + len(fresh) < self.pool_size and attempts < 20 * self.pool_size:
            attempts += 1
            c = self.space.sample(self.rng)
            if c not in self.seen and c not in self.pool and c not in taken:
                taken.add(c)
                fresh.append((c, None))
        for (c, handle), feats in zip(fresh, self._feats([c for c, _ in fresh])):
            if feats is None:
                self.seen.add(c)
                if handle is not None:
                    self.tpe.skip(Proposal(c, handle))
            else:
                self.pool[c] = (feats, handle)

    def _renew_mutants(self) -> None:
        self.mutants = {}
        if not self.measured or not self.n_mutants:
            return
        parents = [c for _, _, c in sorted(self.measured)[:self.n_parents]]
        fresh = []
        for attempt in range(4 * self.n_mutants):
            if len(fresh) >= self.n_mutants:
                break
            c = self.space.neighbor(parents[attempt % len(parents)], self.rng)
            if c not in self.seen and c not in self.pool and c not in fresh:
                fresh.append(c)
        for c, feats in zip(fresh, self._feats(fresh)):
            if feats is None:
                self.seen.add(c)
            else:
                self.mutants[c] = feats

    def _fit_if_due(self) -> bool:
        n = len(self.own)
        have_transfer = self.transfer is not None
        if n < self.min_train and not have_transfer:
            return False
        # Refit when the data grew by a quarter since the last fit (and at least 4 points):
        # cheap early on, rare once hundreds of measurements exist.
        if self.fitted_at >= 0 and n - self.fitted_at < max(4, self.fitted_at // 4):
            return True
        X = [f for f, _ in self.own]
        y = [s for _, s in self.own]
        g = [0] * len(self.own)
        weights = None
        if have_transfer:
            tx, ty, tg = self.transfer
            X = np.concatenate([np.array(X, np.float32).reshape(len(X), tx.shape[1]), tx])
            y = np.concatenate([np.array(y), ty])
            g = np.concatenate([np.array(g), tg])
            # Other workloads only tell which features tend to matter; this workload's own
            # measurements must be able to overrule them, so they weigh as much as all of
            # the transferred records together.
            weights = {0: max(1.0, len(ty) / max(1, n))}
        if len(y) < 2 or not np.isfinite(y).any():
            return False
        self.model.fit(np.asarray(X, np.float32), np.asarray(y), np.asarray(g), group_weights=weights)
        self.fitted_at = n
        return True

    # -- SearchStrategy ------------------------------------------------------------------------
    def propose(self, n: int) -> list:
        self._refill()
        if not self._fit_if_due():  # too little data for a model: sample the pool uniformly
            configs = list(self.pool)
            chosen = [configs[i] for i in self.rng.permutation(len(configs))[:n]]
            return [Proposal(c, self.pool.pop(c)[1]) for c in chosen]
        self._renew_mutants()
        configs = list(self.pool) + list(self.mutants)  # disjoint: mutants exclude pool members
        if not configs:
            return []
        feats = [self.pool[c][0] if c in self.pool else self.mutants[c] for c in configs]
        scores = self.model.predict(np.stack(feats))
        score_of = {c: float(v) for c, v in zip(configs, scores)}
        order = [configs[i] for i in np.argsort(-scores, kind="stable")]
        # Exploration is drawn per candidate, so small batches explore too (round(2 * 0.25) is 0).
        n_explore = int(sum(self.rng.random() < self.explore for _ in range(n)))
        n_explore = min(n_explore, max(0, len(order) - n))
        # At most half the model's picks are neighbours of the best: the model trusts the
        # region it has measured most, and a batch of near-copies would only confirm it.
        max_mutants = max(1, (n - n_explore) // 2)
        chosen, mutants_taken = [], 0
        for c in order:
            if len(chosen) >= n - n_explore:
                break
            if c not in self.pool:
                if mutants_taken >= max_mutants:
                    continue
                mutants_taken += 1
            chosen.append(c)
        rest = [c for c in self.pool if c not in chosen]
        if n_explore and rest:
            chosen += [rest[i] for i in self.rng.choice(len(rest), size=min(n_explore, len(rest)), replace=False)]
        out = []
        for c in chosen:
            handle = self.pool.pop(c)[1] if c in self.pool else None
            self.mutants.pop(c, None)
            out.append(Proposal(c, handle, score_of[c]))
        return out

    def observe(self, proposal: Proposal, seconds, error) -> None:
        self.seen.add(proposal.config)
        if seconds is not None and error is None:
            self.measured.append((seconds, len(self.measured), proposal.config))
        feats = self.features.get(proposal.config)
        if feats is None and proposal.handle is None and proposal.config not in self.features:
            feats = self._feats([proposal.config])[0]  # proposed outside the pool (the default)
        if feats is not None:
            self.own.append((feats, math.inf if seconds is None else seconds))
        self.tpe.observe(proposal, seconds, error)

    def skip(self, proposal: Proposal) -> None:
        self.seen.add(proposal.config)
        if proposal.handle is not None:
            self.tpe.skip(proposal)
