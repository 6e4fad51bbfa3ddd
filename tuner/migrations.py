"""Creating the records schema and upgrading older ones in place, keeping their data."""
from __future__ import annotations

from .errors import DatabaseError
from .models import SCHEMA_VERSION, Base, MetaRow

# version -> function(connection) that upgrades a schema of that version to version + 1.
MIGRATIONS: dict = {}


def ensure_schema(engine, url: str) -> None:
    from sqlalchemy import select
    from sqlalchemy.exc import IntegrityError, SQLAlchemyError
    try:
        Base.metadata.create_all(engine, checkfirst=True)
        with engine.begin() as conn:
            row = conn.execute(select(MetaRow.value).where(MetaRow.key == "schema_version")).first()
            if row is None:
                try:
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
    except SQLAlchemyError as exc:
        raise DatabaseError(f"cannot open records database {url}: {exc}") from exc
