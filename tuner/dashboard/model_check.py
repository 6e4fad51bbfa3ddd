"""A held-out check of the cost model from stored features: fit on each workload's older
records, rank its newer ones. It needs no scores saved at tuning time, so it also judges
databases tuned before scores were stored, or tuned with tpe or random search."""
from __future__ import annotations

import math

MIN_HELD_OUT = 6


def held_out_ranks(url: str, target) -> dict:
    """entry slug -> (predicted ranks, measured ranks) of its newer half of correct records,
    predicted by one XGBoost model fitted on the older half of every workload of the target."""
    import numpy as np

    from costmodel import FEATURE_NAMES
    from costmodel.model import XGBModel
    width = len(FEATURE_NAMES)
    feats = _features(url, target.id, width)
    train_x, train_y, train_g, tests = [], [], [], {}
    for g, e in enumerate(target.entries):
        rows = [(r, feats[r.id]) for r in e.records if r.id in feats]
        cut = len(rows) // 2
        for r, f in rows[:cut]:
            train_x.append(f)
            train_y.append(r.seconds if r.error is None and r.seconds is not None else math.inf)
            train_g.append(g)
        test = [(r, f) for r, f in rows[cut:] if r.error is None and r.seconds is not None]
        if len(test) >= MIN_HELD_OUT:
            tests[e.slug] = test
    if not tests or not np.isfinite(np.array(train_y, dtype=float)).any():
        return {}
    model = XGBModel(seed=0)
    model.fit(np.array(train_x, np.float32), np.array(train_y), np.array(train_g))
    from .figures import ranks
    out = {}
    for slug, test in tests.items():
        scores = model.predict(np.array([f for _, f in test], np.float32))
        out[slug] = (ranks([float(s) for s in scores], reverse=True), ranks([r.seconds for r, _ in test]))
    return out


def _features(url: str, target_id: int, width: int) -> dict:
    import json

    from sqlalchemy import select

    from ..models import RecordRow
    from .data import open_engine
    engine = open_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(RecordRow.id, RecordRow.features).where(
                RecordRow.target_id == target_id, RecordRow.features.is_not(None))).all()
    finally:
        engine.dispose()
    out = {}
    for rid, text in rows:
        f = json.loads(text)
        if len(f) == width:  # features of an older extractor cannot feed today's model
            out[rid] = f
    return out
