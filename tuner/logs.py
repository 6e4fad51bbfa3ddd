"""Tuning logs as JSON lines: export a database, and import with strict validation.

Import is all-or-nothing: if any line is invalid, nothing is imported and every bad line is
reported with its number. Lines are parsed as JSON data only; nothing is evaluated or unpickled.
"""
from __future__ import annotations

import datetime as dt
import json
import math

from schedules import Config

from .errors import ImportFileError
from .records import ERROR_KINDS, Confirmation, TuningRecord

_REQUIRED = {"workload_key": str, "target_key": str, "config": dict, "space_version": str,
             "codegen_version": str, "autosched_version": str}
_MAX_LINE = 1 << 20


def export_jsonl(db, path, best: int | None = None) -> int:
    """Write the database's records, oldest first; `best` keeps only the fastest of each
    workload (see fastest_records). Returns how many were written."""
    records = db.all_records()
    if best is not None:
        records = fastest_records(records, best)
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(r.to_json() + "\n")
    return len(records)


def fastest_records(records: list, best: int) -> list:
    """The `best` fastest correct records of each workload and target (per space and code
    generator version), and every record a re-timing compared, in their order. An empty
    database that imports them builds the same kernels as the one they came from: the fastest
    timing and the newest confirmation are both kept. What is dropped (slower and failed
    candidates) no longer trains the cost model, and tuning from the import measures those
    configs again."""
    if best < 1:
        raise ValueError(f"best must be at least 1, got {best}")
    groups: dict = {}
    for k, r in enumerate(records):
        if r.error is None and r.seconds is not None:
            groups.setdefault((r.workload_key, r.target_key, r.space_version, r.codegen_version),
                              []).append((r.seconds, k))
    kept = {k for group in groups.values() for _, k in sorted(group)[:best]}
    return [r for k, r in enumerate(records) if k in kept or r.confirmations]


def parse_line(text: str) -> TuningRecord:
    """One record from one line, or ValueError saying what is wrong with it."""
    if len(text) > _MAX_LINE:
        raise ValueError(f"line longer than {_MAX_LINE} characters")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(data, dict):
        raise ValueError("a record must be a JSON object")
    for name, typ in _REQUIRED.items():
        if not isinstance(data.get(name), typ) or (typ is str and not data[name]):
            raise ValueError(f"field {name!r} must be a non-empty {typ.__name__}")
    for k, v in data["config"].items():
        ok = isinstance(v, (bool, int, str)) or (isinstance(v, float) and math.isfinite(v)) or (
            isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in v))
        if not ok:
            raise ValueError(f"config value of {k!r} must be a number, string, boolean or list of integers")
    seconds, error, costs, measured_at = _timing(data)
    compile_seconds = data.get("compile_seconds", 0.0)
    if not isinstance(compile_seconds, (int, float)) or isinstance(compile_seconds, bool):
        raise ValueError("field 'compile_seconds' must be a number")
    features = data.get("features")
    if features is not None and (not isinstance(features, list) or not all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in features)):
        raise ValueError("field 'features' must be null or a list of finite numbers")
    predicted = data.get("predicted")
    if predicted is not None and (not isinstance(predicted, (int, float)) or isinstance(predicted, bool)
                                  or not math.isfinite(predicted)):
        raise ValueError("field 'predicted' must be null or a finite number")
    return TuningRecord(
        features=None if features is None else tuple(float(x) for x in features),
        predicted=None if predicted is None else float(predicted),
        workload_key=data["workload_key"], target_key=data["target_key"], config=Config(data["config"]),
        seconds=seconds, costs=costs,
        error=error, error_message=str(data.get("error_message", ""))[:4000],
        compile_seconds=float(compile_seconds), measured_at=measured_at,
        autosched_version=data["autosched_version"], space_version=data["space_version"],
        codegen_version=data["codegen_version"], op_name=str(data.get("op_name", "")),
        confirmations=_confirmations(data.get("confirmations", [])))


def _timing(data: dict, where: str = "") -> tuple:
    """(seconds, error, costs, measured_at) of a record or a re-timing, validated; `where`
    names a re-timing in the messages."""
    name = f"{where}: " if where else "field "
    seconds, error = data.get("seconds"), data.get("error")
    if seconds is not None and (not isinstance(seconds, (int, float)) or isinstance(seconds, bool)
                                or not math.isfinite(seconds) or seconds <= 0):
        raise ValueError(f"{name}'seconds' must be a positive number or null")
    if error is not None and error not in ERROR_KINDS:
        raise ValueError(f"{name}'error' must be null or one of {', '.join(ERROR_KINDS)}")
    if (seconds is None) == (error is None):
        raise ValueError(f"{where + ': ' if where else ''}exactly one of 'seconds' and 'error' must be set")
    costs = data.get("costs", [])
    if not isinstance(costs, list) or not all(isinstance(c, (int, float)) and not isinstance(c, bool)
                                              and math.isfinite(c) for c in costs):
        raise ValueError(f"{name}'costs' must be a list of numbers")
    try:
        measured_at = dt.datetime.fromisoformat(data.get("measured_at", ""))
    except (TypeError, ValueError):
        raise ValueError(f"{name}'measured_at' must be an ISO-8601 timestamp") from None
    return (None if seconds is None else float(seconds), error, tuple(float(c) for c in costs),
            measured_at.replace(tzinfo=None))


def _confirmations(items) -> tuple:
    """The re-timings an exported record carries (tuner.confirm), validated like the record."""
    if not isinstance(items, list):
        raise ValueError("field 'confirmations' must be a list")
    out = []
    for i, c in enumerate(items):
        where = f"confirmations[{i}]"
        if not isinstance(c, dict) or not isinstance(c.get("group"), str) or not c["group"]:
            raise ValueError(f"{where} must be an object with a non-empty 'group'")
        if not isinstance(c.get("round"), int) or isinstance(c["round"], bool) or c["round"] < 0:
            raise ValueError(f"{where}: 'round' must be a non-negative integer")
        seconds, error, costs, measured_at = _timing(c, f"confirmations[{i}]")
        out.append(Confirmation(c["group"][:64], c["round"], seconds, costs, error,
                                str(c.get("error_message", ""))[:4000], measured_at))
    return tuple(out)


def import_jsonl(db, path) -> tuple:
    """(added, already_present); raises ImportFileError listing bad lines, importing nothing."""
    records, problems = [], []
    try:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    records.append(parse_line(line))
                except ValueError as exc:
                    problems.append(f"line {number}: {exc}")
    except UnicodeDecodeError as exc:
        raise ImportFileError(f"{path}: not UTF-8 text ({exc.reason}); nothing was imported") from None
    except OSError as exc:
        raise ImportFileError(f"cannot read {path}: {exc.strerror}") from None
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise ImportFileError(f"{path}: {len(problems)} invalid line(s); nothing was imported:\n  {shown}{more}")
    return db.import_records(records)
