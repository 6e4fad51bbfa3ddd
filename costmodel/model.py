"""Cost models that rank candidates: XGBoost with a ranking objective, and a random baseline."""
from __future__ import annotations

import json
from typing import Protocol

import numpy as np


class CostModel(Protocol):
    """Scores candidates; higher means predicted faster. Scores only order candidates of one
    workload; they are not seconds."""

    def fit(self, features: np.ndarray, seconds: np.ndarray, groups: np.ndarray,
            group_weights: dict | None = None) -> None: ...
    def predict(self, features: np.ndarray) -> np.ndarray: ...


def normalized_throughput(seconds: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Per workload group: best time / time, so 1.0 is the fastest known candidate of its group.

    Failed candidates (nan or inf seconds) get 0. Normalizing within a workload lets one model
    learn from many workloads whose absolute times differ by orders of magnitude.
    """
    seconds = np.asarray(seconds, dtype=np.float64)
    groups = np.asarray(groups)
    out = np.zeros_like(seconds)
    ok = np.isfinite(seconds) & (seconds > 0)
    for g in np.unique(groups):
        m = (groups == g) & ok
        if m.any():
            out[m] = seconds[m].min() / seconds[m]
    return out


class XGBModel:
    """Gradient-boosted trees trained with a pairwise ranking objective on normalized throughput.

    Relevance labels are the throughput rounded into 0..`levels` (xgboost's ranking objectives
    take integer relevance), grouped by workload so only candidates of one workload are compared.
    """

    def __init__(self, seed: int = 0, rounds: int = 120, levels: int = 16, objective: str = "rank:pairwise",
                 **params):
        self.seed, self.rounds, self.levels, self.objective = seed, rounds, levels, objective
        self.params = {"max_depth": 6, "eta": 0.2, "subsample": 0.9, "min_child_weight": 1,
                       "nthread": 1, **params}
        self.booster = None
        self.n_features = None

    def fit(self, features, seconds, groups, group_weights: dict | None = None) -> None:
        """group_weights: group id -> weight (default 1). Ranking objectives weigh whole
        groups, so this is how one workload's own measurements can count for more than many
        records transferred from other workloads."""
        import xgboost as xgb
        features = np.asarray(features, dtype=np.float32)
        groups = np.asarray(groups)
        order = np.argsort(groups, kind="stable")  # xgboost wants each query group contiguous
        features, seconds, groups = features[order], np.asarray(seconds)[order], groups[order]
        labels = np.rint(normalized_throughput(seconds, groups) * self.levels).astype(np.int32)
        _, sizes = np.unique(groups, return_counts=True)
        # keep group order as it appears after the stable sort
        _, first = np.unique(groups, return_index=True)
        sizes = sizes[np.argsort(first)]
        dtrain = xgb.DMatrix(features, label=labels)
        dtrain.set_group(sizes)
        if group_weights:
            ordered = groups[np.sort(first)]
            dtrain.set_weight(np.array([float(group_weights.get(int(g), 1.0)) for g in ordered], np.float32))
        params = {**self.params, "objective": self.objective, "seed": self.seed,
                  "eval_metric": "ndcg"}
        self.booster = xgb.train(params, dtrain, num_boost_round=self.rounds)
        self.n_features = features.shape[1]

    def predict(self, features) -> np.ndarray:
        import xgboost as xgb
        features = np.asarray(features, dtype=np.float32)
        if self.booster is None:
            return np.zeros(len(features))
        if features.shape[1] != self.n_features:
            raise ValueError(f"the model was trained on {self.n_features} features, got {features.shape[1]}")
        return self.booster.predict(xgb.DMatrix(features))

    def save(self, path) -> None:
        if self.booster is None:
            raise ValueError("XGBModel.save: the model has not been fitted")
        raw = self.booster.save_raw("json").decode()
        meta = {"seed": self.seed, "rounds": self.rounds, "levels": self.levels,
                "objective": self.objective, "params": self.params, "n_features": self.n_features}
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"autosched_xgb_model": 1, "meta": meta, "booster": raw}, f)

    @classmethod
    def load(cls, path) -> "XGBModel":
        import xgboost as xgb
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        if doc.get("autosched_xgb_model") != 1:
            raise ValueError(f"{path} is not an autosched XGBoost model file")
        meta = doc["meta"]
        model = cls(seed=meta["seed"], rounds=meta["rounds"], levels=meta["levels"],
                    objective=meta["objective"], **meta["params"])
        model.booster = xgb.Booster()
        model.booster.load_model(bytearray(doc["booster"].encode()))
        model.n_features = meta["n_features"]
        return model


class RandomModel:
    """The baseline: scores are uniform noise, so ranking by them is random search."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)

    def fit(self, features, seconds, groups, group_weights: dict | None = None) -> None:
        pass

    def predict(self, features) -> np.ndarray:
        return self.rng.random(len(features))
