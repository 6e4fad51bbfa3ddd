"""build_best(): the kernel of the best compatible record, or the default schedule."""
from __future__ import annotations

import logging
import threading

from schedules import as_target
from schedules.errors import ConfigError, ScheduleError

from .versions import codegen_version

log = logging.getLogger("autosched.build_best")
_cache: dict = {}
_missed: set = set()   # lookups already reported as missing, so the log line is said once
_lock = threading.Lock()


def build_best(op, target="cpu", database=None, constants=None):
    """Build `op` from its fastest correct record for `target` in `database`.

    Only records of the current space and code-generator versions apply; older ones stay in the
    database untouched. With no applicable record, the default schedule is built and one
    info-level line says so. The lookup is one indexed query, cached per process. `constants`
    names inputs to build as constants (codegen.build), for `Kernel.bind`; None takes the
    operator's own.
    """
    from codegen import build

    from .tune import open_database
    tgt = as_target(target)
    db = open_database(database)
    space = op.space(tgt)
    key = (db.url, op.workload_key, tgt.key, space.version)
    with _lock:
        config = _cache.get(key)
    if config is None:
        record = db.best(op, tgt, space.version, codegen_version())
        config = record.config if record else False
        if record is not None:  # a miss is not cached: tuning may add records any time
            with _lock:
                _cache[key] = config
        elif key not in _missed:
            _missed.add(key)
            log.info("build_best: no tuned record for %s (%s) on %s in %s; using the default schedule",
                     op.name, op.workload_key, tgt.key, db.url)
    if config is False:
        return build(op, tgt, None, constants=constants)
    try:
        return build(op, tgt, config, constants=constants)
    except (ConfigError, ScheduleError) as exc:
        log.warning("build_best: the best record of %s no longer applies (%s); using the default", op.name, exc)
        return build(op, tgt, None, constants=constants)


def clear_cache() -> None:
    with _lock:
        _cache.clear()
        _missed.clear()
