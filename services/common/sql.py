"""SQLAlchemy engines for Podium's stores: SQLite by default (WAL, under the data dir) or PostgreSQL."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import sqlalchemy as sa

log = logging.getLogger(__name__)


def create_engine(database_url: str) -> sa.Engine:
    if database_url.startswith("sqlite:///"):
        path = Path(database_url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        # Token digests and ciphertexts live here: readable by this user only (SQLite's WAL files follow suit).
        os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    if database_url.startswith("postgresql://"):
        database_url = "postgresql+psycopg://" + database_url.removeprefix("postgresql://")
    engine = sa.create_engine(database_url, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL: readers never block the writer; synchronous=NORMAL is durable across process crashes in WAL mode.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def wait_until_reachable(engine: sa.Engine, wait_s: float) -> None:
    """Returns once the database accepts a connection; raises its error after `wait_s`. A database started
    beside the service (compose, Kubernetes) may still be initialising when the service starts."""
    deadline = time.monotonic() + wait_s
    delay = 0.25
    while True:
        try:
            with engine.connect():
                return
        except sa.exc.OperationalError as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("database not reachable yet, retrying in %.1f s: %s", delay, str(exc).splitlines()[0])
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
