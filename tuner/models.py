"""SQLAlchemy ORM models of the records database; rows never leave the records module."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import (DateTime, Float, ForeignKey, Index, Integer, String, Text,
                        UniqueConstraint)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Bump with a migration in records.py whenever a table changes shape.
SCHEMA_VERSION = 5


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class MetaRow(Base):
    __tablename__ = "autosched_meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))


class TargetRow(Base):
    __tablename__ = "targets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(512), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class WorkloadRow(Base):
    __tablename__ = "workloads"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(256), unique=True)
    op_name: Mapped[str] = mapped_column(String(128))
    shapes: Mapped[str] = mapped_column(Text)          # JSON: input and output shapes and dtypes
    # Operator.to_json(): lets tools with only the database rebuild the operator (sources, FLOPs).
    definition: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class RunRow(Base):
    """One invocation of tune(): who measured, with what strategy and seed."""
    __tablename__ = "tuning_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workload_id: Mapped[int] = mapped_column(ForeignKey("workloads.id"))
    target_id: Mapped[int] = mapped_column(ForeignKey("targets.id"))
    strategy: Mapped[str] = mapped_column(String(64))
    seed: Mapped[int] = mapped_column(Integer)
    host: Mapped[str] = mapped_column(String(256))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class RecordRow(Base):
    __tablename__ = "records"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workload_id: Mapped[int] = mapped_column(ForeignKey("workloads.id"))
    target_id: Mapped[int] = mapped_column(ForeignKey("targets.id"))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("tuning_runs.id"), nullable=True)
    config: Mapped[str] = mapped_column(Text)               # canonical JSON
    config_hash: Mapped[str] = mapped_column(String(64))
    seconds: Mapped[float | None] = mapped_column(Float, nullable=True)   # median cost
    costs: Mapped[str] = mapped_column(Text, default="[]")                # JSON list of seconds
    error_kind: Mapped[str | None] = mapped_column(String(32), nullable=True)
    error_message: Mapped[str] = mapped_column(Text, default="")
    compile_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    measured_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    autosched_version: Mapped[str] = mapped_column(String(32))
    space_version: Mapped[str] = mapped_column(String(32))
    codegen_version: Mapped[str] = mapped_column(String(32))
    # Cost-model features of the candidate (JSON list), so other workloads can learn from it.
    features: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The cost model's score when it proposed this candidate (higher: predicted faster);
    # NULL for candidates no model ranked. The dashboard's cost-model accuracy reads it.
    predicted: Mapped[float | None] = mapped_column(Float, nullable=True)

    __table_args__ = (
        # One measurement per config of one space version: a rerun never measures it again.
        UniqueConstraint("workload_id", "target_id", "space_version", "config_hash",
                         name="uq_record_config"),
        # build_best: the fastest valid record of (workload, target, versions).
        Index("ix_records_best", "workload_id", "target_id", "space_version", "codegen_version",
              "error_kind", "seconds"),
    )


class ConfirmationRow(Base):
    """One re-measurement of a record in one round of a confirmation: the fastest records of a
    workload timed again, interleaved, so the best is chosen on one fair comparison."""
    __tablename__ = "confirmations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    group_key: Mapped[str] = mapped_column(String(64))      # one confirmation: its records and rounds
    record_id: Mapped[int] = mapped_column(ForeignKey("records.id"))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("tuning_runs.id"), nullable=True)
    round: Mapped[int] = mapped_column(Integer)
    seconds: Mapped[float | None] = mapped_column(Float, nullable=True)   # median; None on error
    costs: Mapped[str] = mapped_column(Text, default="[]")
    error_kind: Mapped[str | None] = mapped_column(String(32), nullable=True)
    error_message: Mapped[str] = mapped_column(Text, default="")
    measured_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    __table_args__ = (
        UniqueConstraint("group_key", "record_id", "round", name="uq_confirmation_round"),
        Index("ix_confirmations_record", "record_id"),
    )


class BenchRunRow(Base):
    """One `autosched bench` invocation: where it ran, the machine's measured peak, versions."""
    __tablename__ = "bench_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    target_id: Mapped[int] = mapped_column(ForeignKey("targets.id"))
    host: Mapped[str] = mapped_column(String(256))
    machine: Mapped[str] = mapped_column(Text)          # JSON: cpu model, cores, threads
    versions: Mapped[str] = mapped_column(Text)         # JSON: autosched, numpy, torch, ...
    peak_gflops: Mapped[float] = mapped_column(Float)
    suite: Mapped[str] = mapped_column(String(512))
    started_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class BenchResultRow(Base):
    """One implementation (autosched or a baseline) of one workload in one bench run."""
    __tablename__ = "bench_results"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("bench_runs.id"))
    workload_id: Mapped[int] = mapped_column(ForeignKey("workloads.id"))
    label: Mapped[str] = mapped_column(String(256))
    implementation: Mapped[str] = mapped_column(String(64))   # "autosched", "numpy", "pytorch", ...
    seconds: Mapped[float | None] = mapped_column(Float, nullable=True)   # median; None: not run
    costs: Mapped[str] = mapped_column(Text, default="[]")
    gflops: Mapped[float | None] = mapped_column(Float, nullable=True)
    detail: Mapped[str] = mapped_column(Text, default="")     # config source, or why it did not run

    __table_args__ = (Index("ix_bench_results_run", "run_id", "workload_id"),)
