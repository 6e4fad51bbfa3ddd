"""Tuning: search, measurement, records database, build_best and the autosched CLI."""
from .build_best import build_best
from .measure import LocalMeasurer, MeasureOptions, MeasureResult
from .records import Database, TuningRecord
from .tune import Trial, TuneResult, tune

__all__ = ["tune", "build_best", "Database", "TuningRecord", "TuneResult", "Trial",
           "LocalMeasurer", "MeasureOptions", "MeasureResult"]
