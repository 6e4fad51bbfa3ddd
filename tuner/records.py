"""The records database: TuningRecord values in, TuningRecord values out, through SQLAlchemy."""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import socket
import threading
from dataclasses import dataclass, field

from schedules import Config, as_target

from .errors import DatabaseError
from .versions import AUTOSCHED_VERSION, codegen_version

ERROR_KINDS = ("invalid_config", "compile_error", "runtime_error", "timeout", "wrong_answer")


@dataclass(frozen=True)
class TuningRecord:
    """One measured candidate of (workload, target); error is None when it ran correctly."""

    workload_key: str
    target_key: str
    config: Config
    seconds: float | None
    costs: tuple = ()
    error: str | None = None
    error_message: str = ""
    compile_seconds: float = 0.0
    measured_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).replace(tzinfo=None))
    autosched_version: str = AUTOSCHED_VERSION
    space_version: str = ""
    codegen_version: str = field(default_factory=codegen_version)
    op_name: str = ""
    features: tuple | None = None   # cost-model features, when they were computed
    predicted: float | None = None  # the cost model's score when it proposed this config
    # Filled by Database.best(): the median of this record's re-timings in the confirmation
    # that chose it (tuner.confirm), None when no confirmation compared it.
    confirmed_seconds: float | None = None
    # Filled by Database.all_records() and by reading an exported line: this record's rows of
    # every confirmation, so export and import carry them.
    confirmations: tuple = ()

    def to_json(self) -> str:
        extra = {"confirmations": [c.to_dict() for c in self.confirmations]} if self.confirmations else {}
        return json.dumps({**extra, 
            "workload_key": self.workload_key, "target_key": self.target_key, "op_name": self.op_name,
            "config": json.loads(self.config.to_json()), "seconds": self.seconds,
            "costs": list(self.costs), "error": self.error, "error_message": self.error_message,
            "compile_seconds": self.compile_seconds, "measured_at": self.measured_at.isoformat(),
            "autosched_version": self.autosched_version, "space_version": self.space_version,
            "codegen_version": self.codegen_version,
            "features": None if self.features is None else [round(float(x), 6) for x in self.features],
            "predicted": self.predicted},
            sort_keys=True)


@dataclass(frozen=True)
class Confirmation:
    """One re-timing of a record in one round of one confirmation (tuner.confirm)."""

    group: str                  # the confirmation: the records it compared share it
    round: int
    seconds: float | None       # median of the round's costs; None when the run failed
    costs: tuple = ()
    error: str | None = None
    error_message: str = ""
    measured_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).replace(tzinfo=None))

    def to_dict(self) -> dict:
        return {"group": self.group, "round": self.round, "seconds": self.seconds,
                "costs": list(self.costs), "error": self.error, "error_message": self.error_message,
                "measured_at": self.measured_at.isoformat()}


def config_hash(config: Config) -> str:
    return hashlib.sha256(config.to_json().encode()).hexdigest()


def _row(record: TuningRecord, wid: int, tid: int, run_id):
    from .models import RecordRow
    return RecordRow(workload_id=wid, target_id=tid, run_id=run_id,
                     config=record.config.to_json(), config_hash=config_hash(record.config),
                     seconds=record.seconds, costs=json.dumps(list(record.costs)),
                     error_kind=record.error, error_message=record.error_message[:4000],
                     compile_seconds=record.compile_seconds, measured_at=record.measured_at,
                     autosched_version=record.autosched_version,
                     space_version=record.space_version, codegen_version=record.codegen_version,
                     features=None if record.features is None else json.dumps([round(float(x), 6) for x in record.features]),
                     predicted=record.predicted)


def _confirmation_row(record_id: int, run_id, c: Confirmation):
    from .models import ConfirmationRow
    return ConfirmationRow(group_key=c.group, record_id=record_id, run_id=run_id, round=c.round,
                           seconds=c.seconds, costs=json.dumps(list(c.costs)), error_kind=c.error,
                           error_message=c.error_message[:4000], measured_at=c.measured_at)


def _url(url: str) -> str:
    if "://" in url:
        return url
    return "sqlite:///" + os.path.abspath(url)


class Database:
    """Records of measured candidates. `url` is any SQLAlchemy URL or a path to a SQLite file.

    SQLite files are opened in WAL mode with a busy timeout, so several tuning processes can
    write to one file. Every record is committed as soon as it is added.
    """

    def __init__(self, url: str = "autosched.db", busy_timeout_ms: int = 30000):
        from sqlalchemy import create_engine, event
        self.url = _url(url)
        self._ids: dict = {}
        self._lock = threading.Lock()
        is_sqlite = self.url.startswith("sqlite")
        kwargs = {"connect_args": {"timeout": busy_timeout_ms / 1000}} if is_sqlite else {"pool_pre_ping": True}
        try:
            self.engine = create_engine(self.url, **kwargs)
        except Exception as exc:
            raise DatabaseError(f"cannot open records database {self.url!r}: {exc}") from exc
        if is_sqlite:
            @event.listens_for(self.engine, "connect")
            def _pragmas(dbapi_conn, _record):
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.close()
        from .migrations import ensure_schema
        ensure_schema(self.engine, self.url)

    def __repr__(self):
        return f"Database({self.engine.url.render_as_string(hide_password=True)!r})"

    def close(self) -> None:
        self.engine.dispose()

    def session(self):
        from sqlalchemy.orm import Session
        return Session(self.engine, expire_on_commit=False)

    # -- keys ------------------------------------------------------------------------------------
    def _workload_and_target(self, op, target) -> tuple:
        tgt = as_target(target)
        shapes = json.dumps({"inputs": [[t.name, list(t.shape), t.dtype] for t in op.inputs],
                             "outputs": [[t.name, list(t.shape), t.dtype] for t in op.outputs]})
        return self._ids_for_keys(op.workload_key, op.name, shapes, tgt.key, tgt.kind, op.to_json())

    def _ids_for_keys(self, workload_key, op_name, shapes, target_key, target_kind,
                      definition: str | None = None) -> tuple:
        from .models import TargetRow, WorkloadRow
        key = (workload_key, target_key)
        with self._lock:
            if key in self._ids:
                return self._ids[key]
        wid = self._get_or_create(WorkloadRow, WorkloadRow.key == workload_key,
                                  dict(key=workload_key, op_name=op_name, shapes=shapes,
                                       definition=definition), fill=("definition",))
        tid = self._get_or_create(TargetRow, TargetRow.key == target_key,
                                  dict(key=target_key, kind=target_kind))
        with self._lock:
            self._ids[key] = (wid, tid)
        return wid, tid

    def _get_or_create(self, model, where, values, fill=()) -> int:
        """The id of the row matching `where`, created from `values` if none exists; columns
        named in `fill` that an existing row lacks (written by an older version) are set."""
        from sqlalchemy import select
        from sqlalchemy.exc import IntegrityError
        for _ in range(3):
            with self.session() as s:
                row = s.scalars(select(model).where(where)).first()
                if row is not None:
                    missing = {c: values[c] for c in fill
                               if getattr(row, c) is None and values.get(c) is not None}
                    if missing:
                        for c, v in missing.items():
                            setattr(row, c, v)
                        s.commit()
                    return row.id
                s.add(model(**values))
                try:
                    s.commit()
                except IntegrityError:  # another process created it first
                    s.rollback()
                    continue
        with self.session() as s:
            return s.scalars(select(model).where(where)).one().id

    # -- writing ---------------------------------------------------------------------------------
    def start_run(self, op, target, strategy: str, seed: int) -> int:
        from .models import RunRow
        wid, tid = self._workload_and_target(op, target)
        with self.session() as s:
            run = RunRow(workload_id=wid, target_id=tid, strategy=strategy, seed=int(seed),
                         host=socket.gethostname(), pid=os.getpid())
            s.add(run)
            s.commit()
            return run.id

    def add(self, op, target, record: TuningRecord, run_id: int | None = None) -> bool:
        """Commit one record now. Returns False when this config was already measured."""
        from sqlalchemy.exc import IntegrityError
        if record.error is not None and record.error not in ERROR_KINDS:
            raise ValueError(f"unknown error kind {record.error!r}; use one of {ERROR_KINDS}")
        wid, tid = self._workload_and_target(op, target)
        row = _row(record, wid, tid, run_id)
        with self.session() as s:
            s.add(row)
            try:
                s.commit()
            except IntegrityError:
                s.rollback()
                return False
        return True

    def import_records(self, records) -> tuple:
        """Add records keyed by their own workload and target keys, in one transaction, with
        the confirmation rows they carry (those already present are skipped).

        Returns (added, already_present). Either every new record is committed or none is.
        """
        from sqlalchemy import select

        from .models import ConfirmationRow, RecordRow
        added = present = 0
        rows = []
        for r in records:
            kind = r.target_key.split("|", 1)[0]
            wid, tid = self._ids_for_keys(r.workload_key, r.op_name or r.workload_key.rsplit("-", 1)[0],
                                          "{}", r.target_key, kind)
            rows.append((_row(r, wid, tid, None), r.confirmations))
        with self.session() as s:
            with s.begin():
                for row, confirmations in rows:
                    found = s.execute(select(RecordRow.id, RecordRow.codegen_version).where(
                        RecordRow.workload_id == row.workload_id, RecordRow.target_id == row.target_id,
                        RecordRow.space_version == row.space_version,
                        RecordRow.config_hash == row.config_hash)).first()
                    record_id = None if found is None else found[0]
                    if found is not None:
                        present += 1
                        if found[1] != row.codegen_version:
                            continue  # re-timings of another code generator's kernel
                    else:
                        s.add(row)
                        s.flush()
                        record_id = row.id
                        added += 1
                    for c in confirmations:
                        known = s.scalars(select(ConfirmationRow.id).where(
                            ConfirmationRow.group_key == c.group, ConfirmationRow.record_id == record_id,
                            ConfirmationRow.round == c.round)).first()
                        if known is None:
                            s.add(_confirmation_row(record_id, None, c))
                    s.flush()
        return added, present

    # -- reading ---------------------------------------------------------------------------------
    def _select(self):
        from sqlalchemy import select

        from .models import RecordRow, TargetRow, WorkloadRow
        return (select(RecordRow, WorkloadRow.key, TargetRow.key, WorkloadRow.op_name)
                .join(WorkloadRow, RecordRow.workload_id == WorkloadRow.id)
                .join(TargetRow, RecordRow.target_id == TargetRow.id))

    @staticmethod
    def _record(row, wkey, tkey, op_name) -> TuningRecord:
        return TuningRecord(
            workload_key=wkey, target_key=tkey, config=Config.from_json(row.config),
            seconds=row.seconds, costs=tuple(json.loads(row.costs or "[]")), error=row.error_kind,
            error_message=row.error_message or "", compile_seconds=row.compile_seconds or 0.0,
            measured_at=row.measured_at, autosched_version=row.autosched_version,
            space_version=row.space_version, codegen_version=row.codegen_version, op_name=op_name,
            features=None if row.features is None else tuple(json.loads(row.features)),
            predicted=row.predicted)

    def records(self, op, target) -> list:
        """Every record of (op, target), oldest first."""
        from .models import RecordRow
        wid, tid = self._workload_and_target(op, target)
        stmt = self._select().where(RecordRow.workload_id == wid, RecordRow.target_id == tid) \
            .order_by(RecordRow.id)
        with self.session() as s:
            return [self._record(*r) for r in s.execute(stmt).all()]

    def _valid(self, wid: int, tid: int, space_version, codegen_version) -> list:
        """WHERE clauses of the correct records of (workload, target), optionally of versions."""
        from .models import RecordRow
        where = [RecordRow.workload_id == wid, RecordRow.target_id == tid,
                 RecordRow.error_kind.is_(None), RecordRow.seconds.is_not(None)]
        if space_version is not None:
            where.append(RecordRow.space_version == space_version)
        if codegen_version is not None:
            where.append(RecordRow.codegen_version == codegen_version)
        return where

    def best(self, op, target, space_version: str | None = None,
             codegen_version: str | None = None) -> TuningRecord | None:
        """The record to build, optionally only among compatible versions: the fastest correct
        one, or the winner of the newest confirmation that re-timed it (best_choice)."""
        wid, tid = self._workload_and_target(op, target)
        with self.session() as s:
            return self._best(s, self._valid(wid, tid, space_version, codegen_version))

    def _best(self, s, where) -> TuningRecord | None:
        from .best_choice import choose_best
        from .models import RecordRow
        row = s.execute(self._select().where(*where).order_by(RecordRow.seconds, RecordRow.id).limit(1)).first()
        if row is None:
            return None
        choice = choose_best(row[0].id, self._newest_confirmation(s, where))
        if choice.record_id != row[0].id:
            row = s.execute(self._select().where(RecordRow.id == choice.record_id)).first()
        return dataclasses.replace(self._record(*row), confirmed_seconds=choice.confirmed_seconds)

    @staticmethod
    def _newest_confirmation(s, where) -> list:
        """(record_id, round, seconds) of the newest confirmation among records matching `where`."""
        from sqlalchemy import select

        from .models import ConfirmationRow, RecordRow
        joined = select(ConfirmationRow.group_key).join(RecordRow, ConfirmationRow.record_id == RecordRow.id)
        # Newest by when it was measured, not by row id: imported re-timings get the newest ids.
        group = s.execute(joined.where(*where).order_by(ConfirmationRow.measured_at.desc(),
                                                        ConfirmationRow.id.desc()).limit(1)).scalar()
        if group is None:
            return []
        stmt = (select(ConfirmationRow.record_id, ConfirmationRow.round, ConfirmationRow.seconds)
                .join(RecordRow, ConfirmationRow.record_id == RecordRow.id)
                .where(ConfirmationRow.group_key == group, *where))
        return [tuple(r) for r in s.execute(stmt).all()]

    def fastest(self, op, target, space_version: str, codegen_version: str, n: int) -> list:
        """Up to n (record id, record) of the fastest correct records of these versions."""
        from .models import RecordRow
        wid, tid = self._workload_and_target(op, target)
        stmt = (self._select().where(*self._valid(wid, tid, space_version, codegen_version))
                .order_by(RecordRow.seconds, RecordRow.id).limit(n))
        with self.session() as s:
            return [(r[0].id, self._record(*r)) for r in s.execute(stmt).all()]

    def record_of(self, op, target, space_version: str, config: Config) -> tuple | None:
        """(record id, record) of `config` in this space version, if it was measured."""
        from .models import RecordRow
        wid, tid = self._workload_and_target(op, target)
        stmt = self._select().where(RecordRow.workload_id == wid, RecordRow.target_id == tid,
                                    RecordRow.space_version == space_version,
                                    RecordRow.config_hash == config_hash(config))
        with self.session() as s:
            row = s.execute(stmt).first()
        return (row[0].id, self._record(*row)) if row else None

    def newest_confirmation(self, op, target, space_version: str, codegen_version: str) -> dict:
        """Record id -> rounds it was re-timed in, for the newest confirmation of these versions."""
        wid, tid = self._workload_and_target(op, target)
        with self.session() as s:
            rows = self._newest_confirmation(s, self._valid(wid, tid, space_version, codegen_version))
        out: dict = {}
        for record_id, _round, _seconds in rows:
            out[record_id] = out.get(record_id, 0) + 1
        return out

    def add_confirmations(self, rows, run_id: int | None = None) -> None:
        """Commit re-timings, (record id, Confirmation) pairs, in one transaction: a round of
        a confirmation is stored whole or not at all."""
        with self.session() as s, s.begin():
            for record_id, c in rows:
                s.add(_confirmation_row(record_id, run_id, c))

    def measured_configs(self, op, target, space_version: str) -> list:
        """Configs already measured for this space version, oldest first (errors included)."""
        from sqlalchemy import select

        from .models import RecordRow
        wid, tid = self._workload_and_target(op, target)
        stmt = select(RecordRow.config).where(
            RecordRow.workload_id == wid, RecordRow.target_id == tid,
            RecordRow.space_version == space_version).order_by(RecordRow.id)
        with self.session() as s:
            return [Config.from_json(c) for c in s.scalars(stmt).all()]

    def training_data(self, target, exclude_workload: str | None = None, feature_count: int | None = None):
        """(features, seconds, group ids) of every record with features for `target`, for
        training the cost model across workloads; failed candidates have seconds = inf."""
        import numpy as np

        from .models import RecordRow, TargetRow, WorkloadRow
        tgt = as_target(target)
        stmt = (self._select().where(TargetRow.key == tgt.key, RecordRow.features.is_not(None)))
        if exclude_workload is not None:
            stmt = stmt.where(WorkloadRow.key != exclude_workload)
        X, y, g, groups = [], [], [], {}
        with self.session() as s:
            for row, wkey, _tkey, _name in s.execute(stmt).all():
                feats = json.loads(row.features)
                if feature_count is not None and len(feats) != feature_count:
                    continue
                X.append(feats)
                y.append(row.seconds if row.seconds is not None and row.error_kind is None else float("inf"))
                g.append(groups.setdefault(wkey, len(groups)))
        width = len(X[0]) if X else (feature_count or 0)
        return (np.array(X, dtype=np.float32).reshape(len(X), width), np.array(y, dtype=np.float64),
                np.array(g, dtype=np.int64))

    def all_records(self) -> list:
        """Every record, oldest first, each with its confirmation rows (for export)."""
        from sqlalchemy import select

        from .models import ConfirmationRow, RecordRow
        with self.session() as s:
            rows = s.execute(self._select().order_by(RecordRow.id)).all()
            confirmations: dict = {}
            for c in s.scalars(select(ConfirmationRow).order_by(ConfirmationRow.id)):
                confirmations.setdefault(c.record_id, []).append(Confirmation(
                    c.group_key, c.round, c.seconds, tuple(json.loads(c.costs or "[]")), c.error_kind,
                    c.error_message or "", c.measured_at))
        return [dataclasses.replace(self._record(*r), confirmations=tuple(confirmations.get(r[0].id, ())))
                for r in rows]

    def summary(self) -> list:
        """Per (workload, target): op name, record counts, the fastest single timing of any
        version, and the record best() chooses among this code generator's records (what
        build_best builds unless the space changed since)."""
        from sqlalchemy import func, select

        from .models import RecordRow, TargetRow, WorkloadRow
        stmt = (select(WorkloadRow.key, WorkloadRow.op_name, TargetRow.key, func.count(RecordRow.id),
                       func.count(RecordRow.error_kind), func.min(RecordRow.seconds),
                       WorkloadRow.id, TargetRow.id)
                .join(WorkloadRow, RecordRow.workload_id == WorkloadRow.id)
                .join(TargetRow, RecordRow.target_id == TargetRow.id)
                .group_by(WorkloadRow.key, WorkloadRow.op_name, TargetRow.key, WorkloadRow.id, TargetRow.id)
                .order_by(WorkloadRow.op_name, WorkloadRow.key))
        with self.session() as s:
            out = []
            for w, n, t, c, e, fastest, wid, tid in s.execute(stmt).all():
                chosen = self._best(s, self._valid(wid, tid, None, codegen_version()))
                out.append(dict(workload_key=w, op_name=n, target_key=t, records=c, errors=e,
                                best_seconds=fastest, built_seconds=chosen.seconds if chosen else None,
                                confirmed_seconds=chosen.confirmed_seconds if chosen else None))
            return out
