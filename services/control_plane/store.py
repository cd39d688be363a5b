"""Durable endpoint specs in SQL (SQLite by default, PostgreSQL in production), through SQLAlchemy.

Blocking calls: the core runs them in a worker thread. Each endpoint is one row whose `document` is the
stored JSON (spec and state); the name is a unique column so a duplicate create fails in the database
itself, not in a check-then-insert race.
"""

from __future__ import annotations

import orjson
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from services.common.errors import AlreadyExists
from services.common.sql import create_engine as open_engine

metadata = sa.MetaData()

endpoints_table = sa.Table(
    "podium_endpoints",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(63), nullable=False, unique=True),
    sa.Column("document", sa.Text, nullable=False),
)


class EndpointStore:
    def __init__(self, database_url: str | sa.Engine):
        self._engine = open_engine(database_url) if isinstance(database_url, str) else database_url
        metadata.create_all(self._engine)

    @property
    def engine(self) -> sa.Engine:
        """Shared with the identity store: one database, one engine per process."""
        return self._engine

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

