"""Learned cost model: LoopNest features, the XGBoost ranker and a random baseline."""
from .features import FEATURE_NAMES, FeatureExtractor, featurize, featurize_config, featurize_many
from .model import CostModel, RandomModel, XGBModel, normalized_throughput

__all__ = ["FEATURE_NAMES", "FeatureExtractor", "featurize", "featurize_config", "featurize_many", "CostModel",
           "XGBModel", "RandomModel", "normalized_throughput"]
