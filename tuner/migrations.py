"""Creating the records schema and upgrading older ones in place, keeping their data."""
from __future__ import annotations

from .errors import DatabaseError
from .models import SCHEMA_VERSION, Base, MetaRow

def _v1_to_v2(conn) -> None:
    """Version 2 stores each record's cost-model features; old records keep NULL there."""
    from sqlalchemy import text
    conn.execute(text("ALTER TABLE records ADD COLUMN features TEXT"))


def _v2_to_v3(conn) -> None:
    """Version 3 adds the bench_runs and bench_results tables; create_all has made them."""


def _v3_to_v4(conn) -> None:
    """Version 4 stores each workload's operator definition and the cost model's score of
    each record; older rows keep NULL there (their workload definition is filled in the next
    time a tuning run opens that workload)."""
    from sqlalchemy import text
    conn.execute(text("ALTER TABLE workloads ADD COLUMN definition TEXT"))
    conn.execute(text("ALTER TABLE records ADD COLUMN predicted FLOAT"))


def _v4_to_v5(conn) -> None:
    """Version 5 adds the confirmations table (re-measurements of the fastest records);
    create_all has made it, and older databases simply have none yet."""


# version -> function(connection) that upgrades a schema of that version to version + 1.
MIGRATIONS: dict = {1: _v1_to_v2, 2: _v2_to_v3, 3: _v3_to_v4, 4: _v4_to_v5}


def ensure_schema(engine, url: str) -> None:
    from sqlalchemy.exc import SQLAlchemyError
    try:
        retry_on_race(lambda: Base.metadata.create_all(engine, checkfirst=True))
        _check_version(engine, url)
    except SQLAlchemyError as exc:
        raise DatabaseError(f"cannot open records database {url}: {exc}") from exc


def retry_on_race(fn, attempts: int = 6):
    """Run fn, retrying while another process is creating the same tables at the same moment
    (both see no table, both issue CREATE TABLE, one fails with 'already exists')."""
    import random
    import time

    from sqlalchemy.exc import SQLAlchemyError
    for attempt in range(attempts):
        try:
            return fn()
        except SQLAlchemyError as exc:
            text = str(exc).lower()
            racing = any(w in text for w in ("already exists", "duplicate", "locked", "unique"))
            if not racing or attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1) + random.random() * 0.05)


def _check_version(engine, url: str) -> None:
    from sqlalchemy import select
    from sqlalchemy.exc import IntegrityError
    with engine.begin() as conn:
        row = conn.execute(select(MetaRow.value).where(MetaRow.key == "schema_version")).first()
        if row is None:
            try:
                with conn.begin_nested():
                    conn.execute(MetaRow.__table__.insert().values(key="schema_version",
                                                                   value=str(SCHEMA_VERSION)))
            except IntegrityError:
                pass  # another process initialised it at the same moment
            return
        version = int(row[0])
        if version > SCHEMA_VERSION:
            raise DatabaseError(
                f"records database {url} has schema version {version}, newer than this "
                f"autosched understands ({SCHEMA_VERSION}); upgrade autosched to use it")
        while version < SCHEMA_VERSION:
            MIGRATIONS[version](conn)
            version += 1
            conn.execute(MetaRow.__table__.update().where(MetaRow.key == "schema_version")
                         .values(value=str(version)))
