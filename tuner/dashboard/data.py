"""Reading a records database for the dashboard: read-only, schema-checked, one snapshot."""
from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property

from schedules.errors import AutoschedError

from ..models import SCHEMA_VERSION


class DashboardError(AutoschedError):
    """A database the dashboard cannot read, with what to do about it."""


@dataclass(frozen=True)
class Record:
    id: int
    run_id: int | None
    config: str                  # canonical JSON
    seconds: float | None
    error: str | None
    error_message: str
    compile_seconds: float
    measured_at: dt.datetime
    space_version: str
    codegen_version: str
    predicted: float | None


@dataclass(frozen=True)
class Run:
    id: int
    strategy: str
    seed: int
    host: str
    started_at: dt.datetime


@dataclass(frozen=True)
class BenchEntry:
    """One workload of one bench run: every implementation's median time, same process."""
    run_id: int
    started_at: dt.datetime
    label: str
    peak_gflops: float
    seconds: dict                # implementation -> median seconds (None: did not run)
    gflops: dict
    detail: dict

    @property
    def ours(self) -> float | None:
        return self.seconds.get("autosched")

    def speedups(self) -> dict:
        """baseline -> its time over autosched's (above 1: autosched is faster)."""
        ours = self.ours
        return {impl: (t / ours if ours and t else None)
                for impl, t in self.seconds.items() if impl != "autosched"}


@dataclass(frozen=True)
class Entry:
    """One workload on one target: its records, runs and bench history."""
    workload_id: int
    target_id: int
    workload_key: str
    op_name: str
    shapes: dict
    definition: str | None
    records: tuple               # Record, oldest first
    runs: dict                   # run id -> Run
    bench: tuple                 # BenchEntry, newest first
    # (row id, group, record id, round, seconds, measured_at) of the re-timings of its records
    confirmations: tuple = ()

    @property
    def slug(self) -> str:
        return f"w{self.workload_id}-t{self.target_id}"

    @property
    def label(self) -> str:
        if self.bench:
            return compact_label(self.bench[0].label)
        ins = self.shapes.get("inputs", [])
        return f"{self.op_name} " + " ".join("x".join(str(d) for d in shape) for _, shape, _ in ins)

    @property
    def valid(self) -> list:
        return [r for r in self.records if r.error is None and r.seconds is not None]

    @cached_property
    def fastest(self) -> Record | None:
        """The record with the fastest single timing: what tuning progress is measured by."""
        return min(self.valid, key=lambda r: (r.seconds, r.id), default=None)

    @cached_property
    def best(self) -> Record | None:
        """The record build_best builds when no version filter applies: the fastest, or the
        winner of the newest confirmation that re-timed it (best_choice)."""
        from ..best_choice import choose_best
        fastest = self.fastest
        if fastest is None:
            return None
        valid = {r.id: r for r in self.valid}
        rows = [c for c in self.confirmations if c[2] in valid]
        newest = max(rows, key=lambda c: (c[5], c[0]), default=None)  # by when it was measured
        group = [] if newest is None else [(rid, rnd, sec) for _, g, rid, rnd, sec, _ in rows if g == newest[1]]
        return valid[choose_best(fastest.id, group).record_id]

    @property
    def newest_run(self) -> Run | None:
        return max(self.runs.values(), key=lambda r: (r.started_at, r.id), default=None)

    @cached_property
    def previous_best(self) -> float | None:
        """The best correct time before the newest tuning run started: what that run improved
        on. None when no correct record is older (the newest run is the first)."""
        run = self.newest_run
        if run is None:
            return None
        older = [r.seconds for r in self.valid if r.run_id != run.id and r.measured_at <= run.started_at]
        return min(older, default=None)

    @property
    def gain(self) -> float | None:
        """How many times faster the fastest timing got in the newest run (1.0: no better)."""
        fastest, before = self.fastest, self.previous_best
        return before / fastest.seconds if fastest is not None and before else None

    @property
    def errors(self) -> Counter:
        return Counter(r.error for r in self.records if r.error is not None)

    @property
    def last_measured(self) -> dt.datetime | None:
        return max((r.measured_at for r in self.records), default=None)

    @cached_property
    def flops(self) -> float | None:
        """From the stored operator definition, else from a bench run's GFLOPS and time."""
        op = self.operator
        if op is not None:
            return float(op.flops())
        for b in self.bench:
            t, g = b.ours, b.gflops.get("autosched")
            if t and g:
                return g * 1e9 * t
        return None

    @cached_property
    def operator(self):
        """The Operator rebuilt from its stored definition; None for rows written before
        definitions were stored (tuning the workload again fills it in)."""
        if not self.definition:
            return None
        from schedules import Operator
        from schedules.operator_json import OperatorDecodeError
        try:
            return Operator.from_json(self.definition)
        except OperatorDecodeError:
            return None


@dataclass(frozen=True)
class Target:
    id: int
    key: str
    kind: str
    entries: tuple               # Entry, by label

    @property
    def slug(self) -> str:
        return f"t{self.id}"

    @property
    def peak_gflops(self) -> float | None:
        """The FMA peak measured by the newest bench run on this target."""
        runs = [b for e in self.entries for b in e.bench]
        return max(runs, key=lambda b: (b.started_at, b.run_id)).peak_gflops if runs else None

    @property
    def record_count(self) -> int:
        return sum(len(e.records) for e in self.entries)


@dataclass(frozen=True)
class Snapshot:
    """Everything the pages show, read in one pass; `version` changes when data arrives."""
    url: str
    label: str
    targets: tuple
    version: str
    read_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).replace(tzinfo=None))

    @property
    def empty(self) -> bool:
        return not any(t.entries for t in self.targets)

    def entry(self, slug: str) -> Entry | None:
        return next((e for t in self.targets for e in t.entries if e.slug == slug), None)


def compact_label(label: str) -> str:
    """'conv2d(N=1,C=64,...,padding=1,bias=True,activation=relu)' -> 'conv2d N1 C64 ... p1 bias relu'."""
    import re
    m = re.fullmatch(r"(\w+)\((.*)\)", label)
    if not m:
        return label
    parts = []
    for item in filter(None, m.group(2).split(",")):
        key, _, value = item.partition("=")
        if value == "True":
            parts.append(key)
        elif value in ("False", "None", ""):
            continue
        elif key == "activation":
            parts.append(value)
        elif key in ("padding", "stride", "dilation"):
            parts.append(f"{key[0]}{value}")
        else:
            parts.append(f"{key}{value}")
    return " ".join([m.group(1)] + parts)


def open_engine(url: str):
    """An engine on an existing database; never creates a file or a table."""
    import os

    from sqlalchemy import create_engine
    from ..records import _url
    full = _url(url)
    if full.startswith("sqlite:///"):
        path = full[len("sqlite:///"):]
        if not os.path.exists(path):
            raise DashboardError(f"no records database at {path}; fill one with `autosched tune "
                                 f"--database {url} ...` or `autosched demo`, or pass an existing file")
        full = f"sqlite:///file:{path}?mode=ro&uri=true"
    try:
        return create_engine(full)
    except Exception as exc:
        raise DashboardError(f"cannot open records database {url!r}: {exc}") from exc


def schema_state(engine, url: str) -> str:
    """'empty' (no tables yet) or 'ok'; raises DashboardError for any other schema."""
    from sqlalchemy import inspect, text
    from sqlalchemy.exc import SQLAlchemyError
    try:
        tables = set(inspect(engine).get_table_names())
        if not tables:
            return "empty"
        if "autosched_meta" not in tables:
            raise DashboardError(f"{url} is not an autosched records database (tables: "
                                 f"{', '.join(sorted(tables)[:8])}); pass the file that "
                                 f"`autosched tune --database` wrote")
        with engine.connect() as conn:
            row = conn.execute(text("SELECT value FROM autosched_meta WHERE key = 'schema_version'")).first()
    except SQLAlchemyError as exc:
        raise DashboardError(f"cannot read records database {url}: {exc.__class__.__name__}: "
                             f"{str(exc).splitlines()[0]}") from exc
    version = int(row[0]) if row else 0
    if version < SCHEMA_VERSION:
        raise DashboardError(
            f"records database {url} has schema version {version}, older than the version "
            f"{SCHEMA_VERSION} this dashboard reads. Upgrade it in place, keeping every record, "
            f"with `autosched upgrade --database {url}`, then run the dashboard again")
    if version > SCHEMA_VERSION:
        raise DashboardError(f"records database {url} has schema version {version}, newer than "
                             f"this autosched understands ({SCHEMA_VERSION}); upgrade autosched")
    return "ok"


def data_version(engine) -> str:
    """Changes whenever a record, run, re-timing or bench result is added: the live server's
    refresh key."""
    from sqlalchemy import text
    parts = []
    with engine.connect() as conn:
        for table in ("records", "tuning_runs", "bench_results", "workloads", "confirmations"):
            n, top = conn.execute(text(f"SELECT count(*), max(id) FROM {table}")).one()
            parts.append(f"{n}.{top or 0}")
    return "-".join(parts)


def load_snapshot(url: str, label: str | None = None) -> Snapshot:
    engine = open_engine(url)
    try:
        if schema_state(engine, url) == "empty":
            return Snapshot(url=url, label=label or url, targets=(), version="empty")
        return _read(engine, url, label or url)
    finally:
        engine.dispose()


def _read(engine, url: str, label: str) -> Snapshot:
    from sqlalchemy import select

    from ..models import (BenchResultRow, BenchRunRow, ConfirmationRow, RecordRow, RunRow, TargetRow,
                          WorkloadRow)
    version = data_version(engine)
    with engine.connect() as conn:
        targets = conn.execute(select(TargetRow.id, TargetRow.key, TargetRow.kind)).all()
        workloads = {w.id: w for w in conn.execute(select(
            WorkloadRow.id, WorkloadRow.key, WorkloadRow.op_name, WorkloadRow.shapes, WorkloadRow.definition))}
        runs = {r.id: Run(r.id, r.strategy, r.seed, r.host, r.started_at)
                for r in conn.execute(select(RunRow))}
        records: dict = {}
        cols = (RecordRow.id, RecordRow.workload_id, RecordRow.target_id, RecordRow.run_id,
                RecordRow.config, RecordRow.seconds, RecordRow.error_kind, RecordRow.error_message,
                RecordRow.compile_seconds, RecordRow.measured_at, RecordRow.space_version,
                RecordRow.codegen_version, RecordRow.predicted)
        for r in conn.execute(select(*cols).order_by(RecordRow.id)):
            records.setdefault((r.workload_id, r.target_id), []).append(Record(
                r.id, r.run_id, r.config, r.seconds, r.error_kind, r.error_message or "",
                r.compile_seconds or 0.0, r.measured_at, r.space_version, r.codegen_version, r.predicted))
        confirmations: dict = {}
        owner = {r.id: key for key, recs in records.items() for r in recs}
        for c in conn.execute(select(ConfirmationRow.id, ConfirmationRow.group_key, ConfirmationRow.record_id,
                                     ConfirmationRow.round, ConfirmationRow.seconds,
                                     ConfirmationRow.measured_at)):
            if c.record_id in owner:
                confirmations.setdefault(owner[c.record_id], []).append(tuple(c))
        bench_runs = {b.id: b for b in conn.execute(select(BenchRunRow))}
        bench: dict = {}
        for res in conn.execute(select(BenchResultRow).order_by(BenchResultRow.id)):
            run = bench_runs[res.run_id]
            bench.setdefault((res.workload_id, run.target_id, run.id), []).append(res)
    bench_entries: dict = {}
    for (wid, tid, rid), rows in bench.items():
        run = bench_runs[rid]
        bench_entries.setdefault((wid, tid), []).append(BenchEntry(
            rid, run.started_at, rows[0].label, run.peak_gflops,
            {r.implementation: r.seconds for r in rows}, {r.implementation: r.gflops for r in rows},
            {r.implementation: r.detail for r in rows}))
    out = []
    for t in targets:
        keys = {k[0] for k in records if k[1] == t.id} | {k[0] for k in bench_entries if k[1] == t.id}
        entries = []
        for wid in keys:
            w = workloads[wid]
            recs = tuple(records.get((wid, t.id), ()))
            entries.append(Entry(
                wid, t.id, w.key, w.op_name, _json(w.shapes), w.definition, recs,
                {r.run_id: runs[r.run_id] for r in recs if r.run_id in runs},
                tuple(sorted(bench_entries.get((wid, t.id), ()), key=lambda b: (b.started_at, b.run_id),
                             reverse=True)),
                tuple(confirmations.get((wid, t.id), ()))))
        out.append(Target(t.id, t.key, t.kind, tuple(sorted(entries, key=lambda e: (e.op_name, e.label)))))
    return Snapshot(url=url, label=label, targets=tuple(out), version=version)


def _json(text: str) -> dict:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
