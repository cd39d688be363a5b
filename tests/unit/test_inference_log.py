"""The inference log on a real SQLite file: written off the request path, payloads encrypted at rest,
bounded, pruned after the retention, and read back page by page."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from services.common.secret_box import Cipher
from services.router.inference_log import InferenceLog, InferenceRecord
from services.router.inference_store import InferenceStore

NOW_MS = 1_800_000_000_000


def _record(i: int, *, endpoint="e", requester="alice", ts=NOW_MS, payload=True, status=200) -> InferenceRecord:
    return InferenceRecord(
        request_id=f"req-{i}", endpoint_id=f"id-{endpoint}", endpoint_name=endpoint, served_entity_name="gpt", requester=requester,
        timestamp_ms=ts + i, status_code=status, execution_duration_ms=5,
        request=f'{{"prompt": "private prompt {i}"}}'.encode() if payload else None,
        response=f'{{"text": "private answer {i}"}}'.encode() if payload else None,
        input_token_count=2, output_token_count=3, client_request_id=f"c-{i}")


@pytest.fixture
def store(tmp_path):
    store = InferenceStore(f"sqlite:///{tmp_path / 'inference.db'}", Cipher.from_key(bytes(range(32))))
    yield store
    store.close()


def test_payloads_are_encrypted_at_rest_and_read_back(store, tmp_path):
    store.write([_record(i) for i in range(3)])
    on_disk = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert b"private prompt" not in on_disk and b"private answer" not in on_disk
    rows, next_token = store.read("id-e", 0, 2**62, 10, 0)
    assert next_token is None and [r["databricks_request_id"] for r in rows] == ["req-0", "req-1", "req-2"]
    assert rows[1]["request"] == '{"prompt": "private prompt 1"}' and rows[1]["response"] == '{"text": "private answer 1"}'
    assert rows[1]["client_request_id"] == "c-1" and rows[1]["input_token_count"] == 2


def test_pages_time_windows_and_uncaptured_rows(store):
    store.write([_record(i) for i in range(5)] + [_record(9, payload=False), _record(7, endpoint="other")])
    first, token = store.read("id-e", 0, 2**62, 2, 0)
    second, token2 = store.read("id-e", 0, 2**62, 2, token)
    third, token3 = store.read("id-e", 0, 2**62, 2, token2)
    assert [r["databricks_request_id"] for r in first + second + third] == [f"req-{i}" for i in range(5)]
    assert token3 is None  # req-9 was usage only: no payload, not in the inference table
    window, _ = store.read("id-e", NOW_MS + 1, NOW_MS + 3, 10, 0)
    assert [r["databricks_request_id"] for r in window] == ["req-1", "req-2"]


def test_usage_per_requester(store):
    blocked = dataclasses.replace(_record(5, status=400), logging_error_codes=["GUARDRAIL_INPUT_BLOCKED"])
    fell_back = dataclasses.replace(_record(6, requester="bob"), logging_error_codes=["SERVED_BY_FALLBACK"])
    store.write([_record(0), _record(1, requester="bob"), _record(2, payload=False), _record(3, status=429),
                 _record(4, endpoint="other"), blocked, fell_back])
    assert store.usage("id-e", "e", 0, 2**62) == [
        {"endpoint_name": "e", "requester": "alice", "request_count": 4, "error_count": 2, "blocked_count": 1,
         "fallback_count": 0, "input_token_count": 8, "output_token_count": 12, "total_token_count": 20},
        {"endpoint_name": "e", "requester": "bob", "request_count": 2, "error_count": 0, "blocked_count": 0,
         "fallback_count": 1, "input_token_count": 4, "output_token_count": 6, "total_token_count": 10}]


async def test_recording_never_waits_and_the_writer_catches_up(store):
    log = InferenceLog(store, queue_size=1000, batch_size=50, retention_s=3600, clock=lambda: NOW_MS / 1000)
    log.start()
    for i in range(300):
        log.record(_record(i))
    assert store.read("id-e", 0, 2**62, 1000, 0)[0] == []  # recorded without I/O: written only once the loop runs
    for _ in range(200):
        if len(store.read("id-e", 0, 2**62, 1000, 0)[0]) == 300:
            break
        await asyncio.sleep(0.02)
    assert len(store.read("id-e", 0, 2**62, 1000, 0)[0]) == 300
    await log.close()


async def test_a_full_queue_drops_and_counts_and_close_drains(tmp_path):
    store = InferenceStore(f"sqlite:///{tmp_path / 'i.db'}", Cipher.from_key(bytes(32)))
    log = InferenceLog(store, queue_size=10, batch_size=3, retention_s=3600)  # writer not started
    for i in range(15):
        log.record(_record(i))
    assert log.dropped == 5
    await log.close()  # drains all 10, in batches of 3
    reopened = InferenceStore(f"sqlite:///{tmp_path / 'i.db'}", Cipher.from_key(bytes(32)))
    assert len(reopened.read("id-e", 0, 2**62, 100, 0)[0]) == 10
    reopened.close()


async def test_rows_past_the_retention_are_pruned(store):
    store.write([_record(0, ts=NOW_MS - 2 * 86_400_000), _record(1, ts=NOW_MS - 1000)])
    log = InferenceLog(store, queue_size=10, batch_size=10, retention_s=86_400, clock=lambda: NOW_MS / 1000)
    log.start()
    log.record(_record(2))  # the writer prunes as it writes
    for _ in range(200):
        if [r["databricks_request_id"] for r in store.read("id-e", 0, 2**62, 10, 0)[0]] == ["req-1", "req-2"]:
            break
        await asyncio.sleep(0.02)
    assert [r["databricks_request_id"] for r in store.read("id-e", 0, 2**62, 10, 0)[0]] == ["req-1", "req-2"]
    await log.close()


def test_records_belong_to_the_endpoint_id_not_its_name(store):
    """A new endpoint with a deleted one's name (another id) reads none of the old endpoint's records."""
    store.write([_record(0), _record(1)])
    assert len(store.read("id-e", 0, 2**62, 10, 0)[0]) == 2
    assert store.read("id-new", 0, 2**62, 10, 0)[0] == []
    assert store.usage("id-new", "e", 0, 2**62) == []


def test_a_table_from_before_endpoint_ids_gets_the_column(tmp_path):
    import sqlalchemy as sa

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:   # the earlier shape of the table, with one row
        conn.execute(sa.text(
            "CREATE TABLE podium_inference_log (id INTEGER PRIMARY KEY AUTOINCREMENT, request_id VARCHAR(64) NOT "
            "NULL, client_request_id VARCHAR(256) NOT NULL, endpoint_name VARCHAR(63) NOT NULL, served_entity_name "
            "VARCHAR(63) NOT NULL, requester VARCHAR(256) NOT NULL, timestamp_ms BIGINT NOT NULL, status_code "
            "INTEGER NOT NULL, execution_duration_ms INTEGER NOT NULL, input_token_count INTEGER NOT NULL, "
            "output_token_count INTEGER NOT NULL, logging_error_codes VARCHAR(256) NOT NULL, request TEXT, "
            "response TEXT)"))
        conn.execute(sa.text("INSERT INTO podium_inference_log (request_id, client_request_id, endpoint_name, "
                             "served_entity_name, requester, timestamp_ms, status_code, execution_duration_ms, "
                             "input_token_count, output_token_count, logging_error_codes) VALUES "
                             "('old', '', 'e', 'gpt', 'admin', 1, 200, 1, 1, 1, '')"))
    engine.dispose()
    store = InferenceStore(url, Cipher.from_key(bytes(range(32))))
    try:
        store.write([_record(0)])
        assert [r["databricks_request_id"] for r in store.read("id-e", 0, 2**62, 10, 0)[0]] == ["req-0"]
        assert store.usage("", "e", 0, 2**62)[0]["request_count"] == 1   # the old row: reached by no endpoint id
    finally:
        store.close()
