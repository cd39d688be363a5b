"""Batching, the async part: collects concurrent requests and hands each batch to one predict call.

A request that finds the replica idle goes to the model at once, alone. Otherwise it joins a pending list;
the collector takes the oldest, waits until it has waited max_batch_wait_ms (0 by default: not at all) or
max_batch_size rows are pending, then waits until the batch in flight is done (meanwhile the next batch
keeps growing: under load batches grow by themselves, and an idle replica never waits for one), and runs
`score_batch` for the oldest request and those that merge with it (services/worker/batch_merge.py decides
which) in the worker's thread pool. The model runs off the event loop; there is no thread per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from services.worker import metrics
from services.worker.batch_merge import is_batch_due, plan_batch

log = logging.getLogger(__name__)


@dataclass
class BatchStats:
    """Counters of what batching did, for its log line (podium_worker_batch_size has the sizes too)."""

    batches: int = 0
    requests: int = 0
    rows: int = 0
    largest_rows: int = 0
    # Merged predict calls that failed or whose output could not be split: their requests were scored alone.
    fallbacks: int = 0
    # Requests of a merged call scored again alone: a label the batch could have changed (row_exact.LabelGuard).
    rescored: int = 0
    rows_histogram: dict[int, int] = field(default_factory=dict)   # rows in a batch → batches of that size

    def record(self, requests: int, rows: int) -> None:
        self.batches += 1
        self.requests += requests
        self.rows += rows
        self.largest_rows = max(self.largest_rows, rows)
        self.rows_histogram[rows] = self.rows_histogram.get(rows, 0) + 1


@dataclass
class _Pending:
    part: Any                 # a batch_merge.JsonPart or TensorPart: has .key and .rows
    future: asyncio.Future
    arrived: float


class BatchCollector:
    """`score_batch(parts)` runs in `pool` and returns one result per part (a value, or an exception that the
    part's caller gets raised) and whether the merged call had to fall back to scoring part by part."""

    def __init__(self, score_batch: Callable[[Sequence[Any]], tuple[list, bool]], pool: Executor, concurrent_batches: int,
                 max_batch_size: int, max_batch_wait_ms: float, log_interval_s: float = 30.0):
        self._score_batch = score_batch
        self._pool = pool
        self._threads = asyncio.Semaphore(concurrent_batches)
        self._max_rows = max_batch_size
        self._max_wait_s = max_batch_wait_ms / 1000
        self._pending: list[_Pending] = []
        self._pending_rows = 0
        self._changed = asyncio.Event()
        self._running: set[asyncio.Task] = set()
        self._collector: asyncio.Task | None = None
        self._log_interval_s = log_interval_s
        self._logged_at = time.monotonic()
        self.stats = BatchStats()

    async def submit(self, part: Any) -> Any:
        """The part's result once its batch has run."""
        if not self._max_wait_s and not self._pending and not self._threads.locked():
            # Idle: straight to the model (acquire() does not yield when the semaphore is free). Requests that
            # arrive while it runs wait in the pending list and go together next.
            await self._threads.acquire()
            alone = _Pending(part, asyncio.get_running_loop().create_future(), time.monotonic())
            await self._run([alone])
            return alone.future.result()
        if self._collector is None or self._collector.done():
            if self._collector is not None and not self._collector.cancelled() and self._collector.exception():
                log.error("the batch collector failed; starting a new one", exc_info=self._collector.exception())
            # A collector that died would leave every later request waiting for its deadline: start another.
            self._collector = asyncio.get_running_loop().create_task(self._collect_forever())
        future = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(part, future, time.monotonic()))
        self._pending_rows += part.rows
        if len(self._pending) == 1 or self._pending_rows >= self._max_rows:
            self._changed.set()   # the collector sleeps until its deadline otherwise: no wake-up per request
        return await future

    def close(self) -> None:
        self._log_stats()
        if self._collector is not None:
            self._collector.cancel()
        for task in list(self._running):
            task.cancel()
        for pending in self._pending:
            pending.future.cancel()

    async def _collect_forever(self) -> None:
        while True:
            self._pending = [p for p in self._pending if not p.future.done()]   # callers that gave up
            self._pending_rows = sum(p.part.rows for p in self._pending)
            if not self._pending:
                self._changed.clear()
                await self._changed.wait()
                continue
            age_s = time.monotonic() - self._pending[0].arrived
            if not is_batch_due(self._pending_rows, age_s, self._max_rows, self._max_wait_s):
                self._changed.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), self._max_wait_s - age_s)
                continue
            await self._threads.acquire()   # meanwhile the pending list keeps growing
            batch = self._take()
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    def _take(self) -> list[_Pending]:
        live = [p for p in self._pending if not p.future.done()]
        if not live:
            return []
        chosen = set(plan_batch([(p.part.key, p.part.rows) for p in live], self._max_rows))
        self._pending = [p for i, p in enumerate(live) if i not in chosen]
        self._pending_rows = sum(p.part.rows for p in self._pending)
        return [p for i, p in enumerate(live) if i in chosen]

    async def _run(self, batch: list[_Pending]) -> None:
        try:
            if not batch:
                return
            parts = [p.part for p in batch]
            try:
                results, fell_back = await asyncio.get_running_loop().run_in_executor(
                    self._pool, self._score_batch, parts)
            except Exception as exc:   # noqa: BLE001 - every caller of the batch hears of it
                results, fell_back = [exc] * len(batch), False
            self.stats.record(len(batch), sum(p.rows for p in parts))
            self.stats.fallbacks += fell_back
            for size in [1] * len(batch) if fell_back else [len(batch)]:
                metrics.observe_batch(size)   # podium_worker_batch_size: requests per model call
            for pending, result in zip(batch, results):
                if pending.future.done():
                    continue
                if isinstance(result, BaseException):
                    pending.future.set_exception(result)
                else:
                    pending.future.set_result(result)
            self._maybe_log()
        finally:
            self._threads.release()

    def _maybe_log(self) -> None:
        now = time.monotonic()
        if now - self._logged_at >= self._log_interval_s:
            self._logged_at = now
            self._log_stats()

    def _log_stats(self) -> None:
        s = self.stats
        if s.batches:
            log.info("batching: %d batches, %d requests, %.1f rows per batch, largest %d, %d fallbacks, %d rescored",
                     s.batches, s.requests, s.rows / s.batches, s.largest_rows, s.fallbacks, s.rescored)
