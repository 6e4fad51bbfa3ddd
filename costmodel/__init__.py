"""Learned cost model: LoopNest features and the XGBoost ranker (filled by the cost-model issue)."""
