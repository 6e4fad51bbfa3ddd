"""Bench runs in the records database (bench_runs, bench_results), for dashboards and history."""
from __future__ import annotations

import json

from schedules import as_target


def store_report(db, target, report, suite_name: str) -> int:
    """Write one bench run and all its timings in a single transaction; returns the run id
    (None for a run with no workloads)."""
    from .commands import make_operator
    from .models import BenchResultRow, BenchRunRow
    if not report.rows:
        return None
    tgt = as_target(target)
    ids = {}
    for r in report.rows:  # workload and target rows first (their own small transactions)
        op = make_operator(r.workload.op_name, dict(r.workload.params))
        ids[r.label] = db._workload_and_target(op, tgt)
    tid = next(iter(ids.values()))[1]
    with db.session() as s:
        run = BenchRunRow(target_id=tid, host=report.machine.get("host", ""),
                          machine=json.dumps(report.machine), versions=json.dumps(report.versions),
                          peak_gflops=float(report.peak_gflops), suite=suite_name[:512])
        s.add(run)
        s.flush()
        for r in report.rows:
            wid = ids[r.label][0]
            for t in (r.ours,) + tuple(r.baselines):
                s.add(BenchResultRow(run_id=run.id, workload_id=wid, label=r.label[:256],
                                     implementation=t.implementation, seconds=t.seconds,
                                     costs=json.dumps(list(t.costs)), gflops=r.gflops(t), detail=t.detail))
        s.commit()
        return run.id


def bench_runs(db) -> list:
    """Every bench run, newest first, with its results: a list of plain dicts."""
    from sqlalchemy import select

    from .models import BenchResultRow, BenchRunRow, TargetRow, WorkloadRow
    with db.session() as s:
        runs = s.execute(select(BenchRunRow, TargetRow.key).join(TargetRow, TargetRow.id == BenchRunRow.target_id)
                         .order_by(BenchRunRow.id.desc())).all()
        out = []
        for run, tkey in runs:
            results = s.execute(select(BenchResultRow, WorkloadRow.key, WorkloadRow.op_name)
                                .join(WorkloadRow, WorkloadRow.id == BenchResultRow.workload_id)
                                .where(BenchResultRow.run_id == run.id).order_by(BenchResultRow.id)).all()
            out.append({"id": run.id, "target_key": tkey, "host": run.host, "suite": run.suite,
                        "machine": json.loads(run.machine), "versions": json.loads(run.versions),
                        "peak_gflops": run.peak_gflops, "started_at": run.started_at,
                        "results": [{"workload_key": wkey, "op_name": op_name, "label": r.label,
                                     "implementation": r.implementation, "seconds": r.seconds,
                                     "costs": json.loads(r.costs), "gflops": r.gflops, "detail": r.detail}
                                    for r, wkey, op_name in results]})
        return out
