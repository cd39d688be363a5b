"""The control plane waits for a database that does not accept connections yet, for a bounded time."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from services.common.sql import create_engine, wait_until_reachable


def test_a_reachable_database_returns_at_once(tmp_path):
    started = time.monotonic()
    wait_until_reachable(create_engine(f"sqlite:///{tmp_path / 'podium.db'}"), wait_s=5)
    assert time.monotonic() - started < 1


def test_an_unreachable_database_is_retried_until_the_wait_ends_then_raises(caplog):
    engine = create_engine("postgresql+psycopg://nobody:x@127.0.0.1:1/none")  # nothing listens on port 1
    started = time.monotonic()
    with pytest.raises(sa.exc.OperationalError):
        wait_until_reachable(engine, wait_s=1.0)
    assert 0.5 <= time.monotonic() - started < 3
    assert sum("database not reachable yet" in r.message for r in caplog.records) >= 2
