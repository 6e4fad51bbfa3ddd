"""Tuning: search, measurement, records database, build_best and the autosched CLI."""
