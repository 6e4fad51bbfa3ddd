"""The records database on a real PostgreSQL server (started by .ci/run on 127.0.0.1)."""
import os
import uuid

import pytest

from schedules import ops
from tuner import Database, MeasureOptions, build_best, tune
from tuner.logs import export_jsonl, import_jsonl

URL = os.environ.get("AUTOSCHED_TEST_POSTGRES_URL")


@pytest.fixture
def pg_url():
    if not URL:
        if os.environ.get("CI"):
            pytest.fail("CI must provide AUTOSCHED_TEST_POSTGRES_URL (see .ci/postgres.sh)")
        pytest.skip("no PostgreSQL server: set AUTOSCHED_TEST_POSTGRES_URL, or eval .ci/postgres.sh")
    from sqlalchemy import create_engine, text
    name = f"autosched_{uuid.uuid4().hex[:10]}"
    admin = create_engine(URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    yield URL.rsplit("/", 1)[0] + "/" + name
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_tune_into_postgres_and_build_best(pg_url):
    op = ops.elementwise([(8, 16), (16,)], lambda a, b: a * b + 1.0, name="pg_ew")
    db = Database(pg_url)
    r = tune(op, "cpu", database=db, trials=8, seed=0, strategy="tpe",
             options=MeasureOptions(min_seconds=0.001, min_repeats=1))
    assert r.total_measured == 8 and len(db.records(op, "cpu")) == 8
    assert db.best(op, "cpu").config == r.best_config
    assert build_best(op, "cpu", db).config == r.best_config
    again = tune(op, "cpu", database=Database(pg_url), trials=10, seed=0, strategy="tpe",
                 options=MeasureOptions(min_seconds=0.001, min_repeats=1))
    assert len(again.history) == 2 and len({x.config for x in db.records(op, "cpu")}) == 10


def test_two_processes_into_postgres(pg_url):
    from test_tuner_faults import _count, _tune_process
    procs = [_tune_process(name, pg_url, 8) for name in ("pg_first", "pg_second")]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    assert _count(pg_url, "pg_first")[1] == 8 and _count(pg_url, "pg_second")[1] == 8


def test_export_from_sqlite_import_into_postgres(pg_url, tmp_path):
    from tuner.simulate import ReplayMeasurer
    op = ops.matmul(16, 16, 16)
    src = Database(str(tmp_path / "src.db"))
    tune(op, "cpu", database=src, trials=12, seed=0, strategy="random", measurer=ReplayMeasurer())
    path = tmp_path / "log.jsonl"
    assert export_jsonl(src, path) == 12
    dst = Database(pg_url)
    assert import_jsonl(dst, path) == (12, 0)
    assert {r.config for r in dst.records(op, "cpu")} == {r.config for r in src.records(op, "cpu")}
    assert dst.best(op, "cpu").config == src.best(op, "cpu").config


def test_dashboard_reads_a_postgres_database(pg_url):
    from tuner.dashboard import load_snapshot, render_site
    from tuner.dashboard.serve import LiveSite
    assert load_snapshot(pg_url).empty  # a new database: no tables yet
    op = ops.softmax(4, 16)
    db = Database(pg_url)
    tune(op, "cpu", database=db, trials=3, seed=0, strategy="random",
         options=MeasureOptions(min_seconds=0.001, min_repeats=1))
    snap = load_snapshot(pg_url)
    [target] = snap.targets
    [entry] = target.entries
    assert entry.best.seconds == db.best(op, "cpu").seconds and entry.operator.workload_key == op.workload_key
    pages = render_site(snap)
    assert f"explorer-{entry.slug}.html" in pages and "softmax 4x16" in pages[f"target-{target.slug}.html"]
    site = LiveSite(pg_url)
    first = site.version()
    tune(op, "cpu", database=db, trials=4, seed=0, strategy="random",
         options=MeasureOptions(min_seconds=0.001, min_repeats=1))
    assert site.version() != first
    site.close()
