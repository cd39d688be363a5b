"""Durable endpoint specs in SQL (SQLite by default, PostgreSQL in production), through SQLAlchemy.

Blocking calls: the core runs them in a worker thread. Each endpoint is one row whose `document` is the
stored JSON (spec and state); the name is a unique column so a duplicate create fails in the database
itself, not in a check-then-insert race.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from services.common.errors import AlreadyExists

metadata = sa.MetaData()

endpoints_table = sa.Table(
    "podium_endpoints",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(63), nullable=False, unique=True),
    sa.Column("document", sa.Text, nullable=False),
)


class EndpointStore:
    def __init__(self, database_url: str):
        if database_url.startswith("sqlite:///"):
            Path(database_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        if database_url.startswith("postgresql://"):
            database_url = "postgresql+psycopg://" + database_url.removeprefix("postgresql://")
        self._engine = sa.create_engine(database_url, pool_pre_ping=True)
        if self._engine.dialect.name == "sqlite":
            sa.event.listen(self._engine, "connect", _sqlite_pragmas)
        metadata.create_all(self._engine)

    def load_all(self) -> list[dict]:
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(endpoints_table.c.document)).scalars().all()
        return [orjson.loads(row) for row in rows]

    def insert(self, endpoint: dict) -> None:
        try:
            with self._engine.begin() as conn:
                conn.execute(endpoints_table.insert().values(
                    id=endpoint["id"], name=endpoint["name"], document=orjson.dumps(endpoint).decode()))
        except IntegrityError as exc:
            raise AlreadyExists(f"Endpoint with name '{endpoint['name']}' already exists") from exc

    def update(self, endpoint: dict) -> None:
        with self._engine.begin() as conn:
            conn.execute(endpoints_table.update().where(endpoints_table.c.id == endpoint["id"])
                         .values(document=orjson.dumps(endpoint).decode()))

    def delete(self, endpoint_id: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(endpoints_table.delete().where(endpoints_table.c.id == endpoint_id))

    def close(self) -> None:
        self._engine.dispose()


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL: readers never block the writer; synchronous=NORMAL is durable across process crashes in WAL mode.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()
