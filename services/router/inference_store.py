"""The inference table and usage records: one SQL table under the data dir, payloads encrypted at rest.

Blocking calls (the writer and readers run them in a thread). Request and response bodies are stored only
as AES-256-GCM ciphertext, bound to their row's request id; what queries filter and add up on (endpoint,
time, status, requester, token counts) is kept in clear. Several routers may write the same SQLite file
(WAL), so any of them answers reads for all.

Rows belong to the endpoint's id, not its name: once an endpoint is deleted, its rows are reached through no
endpoint (a new endpoint of the same name has a new id), and the retention pruning deletes them. Rows
written before ids were recorded have an empty id and are reached by none.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa

from services.common.secret_box import Cipher
from services.common.sql import create_engine

if TYPE_CHECKING:
    from services.router.inference_log import InferenceRecord

metadata = sa.MetaData()

inference_table = sa.Table(
    "podium_inference_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(64), nullable=False),
    sa.Column("client_request_id", sa.String(256), nullable=False, default=""),
    sa.Column("endpoint_id", sa.String(64), nullable=False, server_default=""),
    sa.Column("endpoint_name", sa.String(63), nullable=False),
    sa.Column("served_entity_name", sa.String(63), nullable=False),
    sa.Column("requester", sa.String(256), nullable=False),
    sa.Column("timestamp_ms", sa.BigInteger, nullable=False),
    sa.Column("status_code", sa.Integer, nullable=False),
    sa.Column("execution_duration_ms", sa.Integer, nullable=False),
    sa.Column("input_token_count", sa.Integer, nullable=False, default=0),
    sa.Column("output_token_count", sa.Integer, nullable=False, default=0),
    sa.Column("logging_error_codes", sa.String(256), nullable=False, default=""),
    sa.Column("request", sa.Text, nullable=True),     # ciphertext; NULL: not captured
    sa.Column("response", sa.Text, nullable=True),    # ciphertext; NULL: not captured
    sa.Index("ix_podium_inference_endpoint_time", "endpoint_name", "timestamp_ms"),
)
by_endpoint_id = sa.Index("ix_podium_inference_endpoint_id_time", inference_table.c.endpoint_id,
                          inference_table.c.timestamp_ms)


class InferenceStore:
    def __init__(self, database_url: str, cipher: Cipher):
        self._engine = create_engine(database_url)
        self._cipher = cipher
        metadata.create_all(self._engine)
        self._add_endpoint_id()

    def _add_endpoint_id(self) -> None:
        """A table from before rows carried their endpoint's id gets the column (its old rows: "")."""
        columns = {c["name"] for c in sa.inspect(self._engine).get_columns(inference_table.name)}
        with self._engine.begin() as conn:
            if "endpoint_id" not in columns:
                conn.execute(sa.text(f"ALTER TABLE {inference_table.name} "
                                     "ADD COLUMN endpoint_id VARCHAR(64) NOT NULL DEFAULT ''"))
            by_endpoint_id.create(conn, checkfirst=True)

    def write(self, records: "list[InferenceRecord]") -> None:
        rows = [{
            "request_id": r.request_id, "client_request_id": r.client_request_id[:256],
            "endpoint_id": r.endpoint_id, "endpoint_name": r.endpoint_name, "served_entity_name": r.served_entity_name,
            "requester": r.requester[:256], "timestamp_ms": r.timestamp_ms, "status_code": r.status_code,
            "execution_duration_ms": r.execution_duration_ms, "input_token_count": r.input_token_count,
            "output_token_count": r.output_token_count, "logging_error_codes": ",".join(r.logging_error_codes),
            "request": self._seal(r.request, r.request_id, "request"),
            "response": self._seal(r.response, r.request_id, "response"),
        } for r in records]
        with self._engine.begin() as conn:
            conn.execute(inference_table.insert(), rows)

    def _seal(self, payload: bytes | None, request_id: str, part: str) -> str | None:
        if payload is None:
            return None
        return self._cipher.encrypt(payload, f"{request_id}:{part}".encode())

    def _open(self, token: str | None, request_id: str, part: str) -> str | None:
        if token is None:
            return None
        return self._cipher.decrypt(token, f"{request_id}:{part}".encode()).decode("utf-8", errors="replace")

    def delete_before(self, timestamp_ms: int) -> int:
        with self._engine.begin() as conn:
            return conn.execute(inference_table.delete().where(inference_table.c.timestamp_ms < timestamp_ms)).rowcount

    def read(self, endpoint_id: str, start_ms: int, end_ms: int, max_results: int, after_id: int
             ) -> tuple[list[dict], int | None]:
        """Captured rows of one endpoint (by id) in [start_ms, end_ms), oldest first, and the next page's token."""
        t = inference_table
        query = (sa.select(t).where(t.c.endpoint_id == endpoint_id, t.c.timestamp_ms >= start_ms,
                                    t.c.timestamp_ms < end_ms, t.c.id > after_id, t.c.request.is_not(None))
                 .order_by(t.c.id).limit(max_results + 1))
        with self._engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        page = rows[:max_results]
        out = [{
            "databricks_request_id": row["request_id"],
            "client_request_id": row["client_request_id"],
            "timestamp_ms": row["timestamp_ms"],
            "status_code": row["status_code"],
            "execution_duration_ms": row["execution_duration_ms"],
            "served_entity_name": row["served_entity_name"],
            "requester": row["requester"],
            "request": self._open(row["request"], row["request_id"], "request"),
            "response": self._open(row["response"], row["request_id"], "response"),
            "input_token_count": row["input_token_count"],
            "output_token_count": row["output_token_count"],
            "logging_error_codes": [c for c in row["logging_error_codes"].split(",") if c],
        } for row in page]
        return out, (page[-1]["id"] if len(rows) > max_results else None)

    def usage(self, endpoint_id: str, endpoint_name: str, start_ms: int, end_ms: int) -> list[dict]:
        """Requests and tokens per requester of one endpoint (by id; named `endpoint_name`) in [start_ms, end_ms)."""
        t = inference_table
        query = (sa.select(t.c.requester, sa.func.count().label("request_count"),
                           sa.func.sum(sa.case((t.c.status_code >= 400, 1), else_=0)).label("error_count"),
                           sa.func.sum(sa.case((t.c.logging_error_codes.like("%GUARDRAIL_%_BLOCKED%"), 1),
                                               else_=0)).label("blocked_count"),
                           sa.func.sum(sa.case((t.c.logging_error_codes.like("%SERVED_BY_FALLBACK%"), 1),
                                               else_=0)).label("fallback_count"),
                           sa.func.sum(t.c.input_token_count).label("input_token_count"),
                           sa.func.sum(t.c.output_token_count).label("output_token_count"))
                 .where(t.c.endpoint_id == endpoint_id, t.c.timestamp_ms >= start_ms, t.c.timestamp_ms < end_ms,
                        ~t.c.logging_error_codes.like("SHADOW_%"))   # a shadow's copy is no caller's request
                 .group_by(t.c.requester).order_by(t.c.requester))
        with self._engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [{"endpoint_name": endpoint_name, "requester": row["requester"],
                 "request_count": int(row["request_count"]), "error_count": int(row["error_count"] or 0),
                 "blocked_count": int(row["blocked_count"] or 0), "fallback_count": int(row["fallback_count"] or 0),
                 "input_token_count": int(row["input_token_count"] or 0),
                 "output_token_count": int(row["output_token_count"] or 0),
                 "total_token_count": int((row["input_token_count"] or 0) + (row["output_token_count"] or 0))}
                for row in rows]

    def close(self) -> None:
        self._engine.dispose()
