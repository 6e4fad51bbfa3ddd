"""Polishing the best: the last trials of a budget spent on the best record's runtime knobs."""
from __future__ import annotations

from .search import Proposal
from .versions import codegen_version

# The last trials of a budget (at most a quarter of it) go to the runtime neighbours of the
# best record: cache blocks and parallel splits need no compile, and the search can leave the
# best structure's blocks unexplored (matmul 2048: kc 512 ran 81-83 ms against 87-89 ms for
# the built record's kc 256, and 73 trials had not tried it).
POLISH_TRIALS = 16


def runtime_neighbor_proposals(db, op, tgt, space, measured: dict, n: int) -> tuple:
    """(centre, proposals): the config build_best would build now, and up to n of its
    unmeasured runtime neighbours (Space.runtime_neighbors), each marked measured in
    `measured`. The centre is None when nothing is recorded yet."""
    best = db.best(op, tgt, space.version, codegen_version())
    if best is None or n <= 0:
        return None, []
    centre, out = space.canonical(best.config), []
    for config in space.runtime_neighbors(centre):
        if len(out) == n:
            break
        if config not in measured:
            measured[config] = None
            out.append(Proposal(config, None))
    return centre, out


def polish_extras(centres, polished) -> list:
    """The configs the end-of-tuning re-timing must compare besides the fastest: every centre
    of the polish (the pick built before it, and any it moved to), and the fastest of the
    runtime neighbours it measured (Trials)."""
    timed = [t for t in polished if t.seconds is not None]
    extras = list(dict.fromkeys(centres))
    if timed:
        fastest = min(timed, key=lambda t: t.seconds).config
        if fastest not in extras:
            extras.append(fastest)
    return extras
