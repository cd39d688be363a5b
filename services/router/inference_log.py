"""Inference-table and usage records, written off the request path.

A request only puts its record on a bounded queue (no I/O, never waits); one background task takes
records off in batches and writes them in a worker thread, and now and then deletes rows past the
retention. When the queue is full (the store cannot keep up) records are dropped and counted, never
queued without bound, and the request still succeeds. Closing drains what is queued.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.router.inference_store import InferenceStore

log = logging.getLogger(__name__)


@dataclass
class InferenceRecord:
    request_id: str
    endpoint_id: str                    # the records belong to the endpoint's id: a new one of the same name sees none
    endpoint_name: str
    served_entity_name: str
    requester: str
    timestamp_ms: int
    status_code: int
    execution_duration_ms: int
    request: bytes | None = None        # None: usage tracking only, the payloads are not captured
    response: bytes | None = None
    input_token_count: int = 0
    output_token_count: int = 0
    client_request_id: str = ""
    logging_error_codes: list[str] = field(default_factory=list)


class InferenceLog:
    def __init__(self, store: "InferenceStore", *, queue_size: int, batch_size: int, retention_s: float,
                 prune_interval_s: float = 600.0, clock: Callable[[], float] = time.time):
        self._store = store
        self._queue: asyncio.Queue[InferenceRecord] = asyncio.Queue(maxsize=queue_size)
        self._batch_size = batch_size
        self._retention_s = retention_s
        self._prune_interval_s = prune_interval_s
        self._clock = clock
        self._task: asyncio.Task | None = None
        self.dropped = 0

    def record(self, record: InferenceRecord) -> None:
        try:
            self._queue.put_nowait(record)
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped & (self.dropped - 1) == 0:  # 1st, 2nd, 4th, 8th...: say it, without flooding
                log.warning("inference log queue full: %d records dropped so far", self.dropped)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="inference-log-writer")

    async def close(self) -> None:
        """Writes what is queued, then stops the writer."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        while not self._queue.empty():
            await self._write(self._take_queued())
        await asyncio.to_thread(self._store.close)

    async def _run(self) -> None:
        last_prune = 0.0
        while True:
            batch = [await self._queue.get()] + self._take_queued()
            await self._write(batch)
            now = time.monotonic()
            if now - last_prune >= self._prune_interval_s:
                last_prune = now
                await self._prune()

    def _take_queued(self) -> list[InferenceRecord]:
        batch = []
        while len(batch) < self._batch_size and not self._queue.empty():
            batch.append(self._queue.get_nowait())
        return batch

    async def _write(self, batch: list[InferenceRecord]) -> None:
        if not batch:
            return
        try:
            await asyncio.to_thread(self._store.write, batch)
        except Exception:  # a full disk or a locked database must not stop the writer for good
            log.exception("could not write %d inference records", len(batch))

    async def _prune(self) -> None:
        cutoff_ms = int((self._clock() - self._retention_s) * 1000)
        try:
            deleted = await asyncio.to_thread(self._store.delete_before, cutoff_ms)
        except Exception:
            log.exception("could not prune the inference log")
            return
        if deleted:
            log.info("pruned %d inference records older than the retention", deleted)
