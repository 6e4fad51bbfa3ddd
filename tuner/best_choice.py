"""Choosing the best record: the fastest one, unless a confirmation re-timed it beside others."""
from __future__ import annotations

import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class Choice:
    record_id: int
    confirmed_seconds: float | None   # median over the confirmation's rounds; None: not confirmed


def choose_best(fastest_id: int, latest_group: list) -> Choice:
    """The record to build, given the fastest record by its tuning measurement and the rows
    (record_id, round, seconds or None on error) of the newest confirmation among the same
    records.

    Each record was timed once while tuning, so the fastest of many such single timings is
    often one taken in a quiet moment of a noisy machine, not the fastest kernel. A
    confirmation times the few fastest again in interleaved rounds, where noise hits them
    alike. Its verdict applies only while the fastest record is among those it re-timed: a
    faster record measured later was never compared and wins by its own timing. A record that
    failed in any round can not win."""
    rounds: dict = {}
    for record_id, _round, seconds in latest_group:
        rounds.setdefault(record_id, []).append(seconds)
    if fastest_id not in rounds:
        return Choice(fastest_id, None)

    def score(record_id):
        times = rounds[record_id]
        if any(t is None for t in times):
            return float("inf")
        return statistics.median(times)

    winner = min(rounds, key=lambda r: (score(r), r != fastest_id, r))
    best = score(winner)
    if best == float("inf"):
        return Choice(fastest_id, None)
    return Choice(winner, best)
