"""Confirming the best: the fastest records of a workload timed again, interleaved, in rounds."""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from .records import Confirmation
from .versions import codegen_version

log = logging.getLogger("autosched.confirm")

# The fastest records re-timed at the end of tuning, and how many rounds each gets.
CONFIRM_TOP = 4
CONFIRM_ROUNDS = 3
# Records more than this many times slower than the fastest are not re-timed: the slowest
# phases of a shared machine seen so far stretch every timing by up to about 2x.
CONFIRM_WITHIN = 2.0


@dataclass(frozen=True)
class ConfirmResult:
    group: str
    record_ids: tuple       # the records compared, fastest single timing first
    rounds: int             # rounds completed (fewer than asked when stopped)


def candidates(db, op, tgt, space, top: int, also=()) -> list:
    """(record id, config) of the records to compare: the `top` fastest within CONFIRM_WITHIN
    of the fastest, then the default schedule's record and the records of the configs in
    `also` when they are within that too. The default is the floor any tuning must beat; the
    callers' extras are records a single lucky timing of another would otherwise keep out
    (the pick built before, the best of its runtime neighbours)."""
    fastest = db.fastest(op, tgt, space.version, codegen_version(), top)
    if not fastest:
        return []
    limit = fastest[0][1].seconds * CONFIRM_WITHIN
    chosen = [(rid, r.config) for rid, r in fastest if r.seconds <= limit]
    for config in (space.default(), *also):
        found = db.record_of(op, tgt, space.version, config)
        if found is None or found[0] in {rid for rid, _ in chosen}:
            continue
        rid, r = found
        if r.error is None and r.seconds is not None and r.seconds <= limit \
                and r.codegen_version == codegen_version():
            chosen.append((rid, r.config))
    return chosen


def confirm_best(db, op, tgt, space, measurer, run_id: int | None = None, top: int = CONFIRM_TOP,
                 rounds: int = CONFIRM_ROUNDS, stop=lambda: False, on_round=None,
                 also=()) -> ConfirmResult | None:
    """Time the fastest records again in `rounds` interleaved rounds and store every timing,
    so Database.best() chooses among them by their medians (best_choice). Each round is
    committed whole as soon as it is measured. Returns None when there is nothing to compare
    (fewer than two records) or the newest confirmation already compared these records in
    `rounds` rounds."""
    chosen = candidates(db, op, tgt, space, top, also)
    if len(chosen) < 2 or rounds < 1:
        return None
    compared = db.newest_confirmation(op, tgt, space.version, codegen_version())
    if all(compared.get(rid, 0) >= rounds for rid, _ in chosen):
        return None  # compared already, in as many rounds; a stopped one is done again
    group = uuid.uuid4().hex
    done = 0
    for k in range(rounds):
        if stop():
            break
        shift = k % len(chosen)  # a different record goes first in each round
        order = chosen[shift:] + chosen[:shift]
        results = measurer.measure(op, tgt, [config for _, config in order])
        db.add_confirmations([(rid, _confirmation(group, k, r)) for (rid, _), r in zip(order, results)], run_id)
        done += 1
        if on_round is not None:
            on_round(done, rounds)
    log.info("%s: re-timed the %d fastest records in %d rounds", op.name, len(chosen), done)
    return ConfirmResult(group, tuple(rid for rid, _ in chosen), done)


def _confirmation(group: str, round_: int, r) -> Confirmation:
    if r.error is None and r.seconds is None:
        return Confirmation(group, round_, None, (), "runtime_error", "the re-timing returned no costs", r.timestamp)
    return Confirmation(group, round_, r.seconds, tuple(r.costs), r.error, r.error_message, r.timestamp)
