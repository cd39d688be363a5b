"""Load generators for the benchmarks: wrk for HTTP throughput, asyncio clients for latency and gRPC.

Every run is bounded by a duration or a request count, and targets 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import grpc


@dataclass(frozen=True)
class LoadResult:
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def has_wrk() -> bool:
    return shutil.which("wrk") is not None


_WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("{body}", "rb"); wrk.body = f:read("*a"); f:close()
"""


def wrk(url: str, body: bytes, concurrency: int, duration_s: float, headers: dict | None = None) -> LoadResult:
    """Closed-loop HTTP load with `concurrency` connections for duration_s (wrk --latency)."""
    with tempfile.TemporaryDirectory() as tmp:
        body_path, script = Path(tmp) / "body.json", Path(tmp) / "post.lua"
        body_path.write_bytes(body)
        extra = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in (headers or {}).items())
        script.write_text(_WRK_SCRIPT.format(body=body_path) + extra)
        threads = max(1, min(concurrency, 2))
        out = subprocess.run(
            ["wrk", "-t", str(threads), "-c", str(concurrency), "-d", f"{duration_s:g}s", "--latency",
             "--timeout", "10s", "-s", str(script), url],
            capture_output=True, text=True, timeout=duration_s + 30, check=True).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    seconds = float(re.search(r"requests in ([\d.]+)(m?s)", out).group(1))
    if re.search(r"requests in [\d.]+ms", out):
        seconds /= 1000
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    return LoadResult(requests, errors, seconds, _wrk_percentile(out, "50%"), _wrk_percentile(out, "99%"))


def _wrk_percentile(out: str, label: str) -> float:
    value, unit = re.search(rf"^\s+{re.escape(label)}\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


class _Tally:
    """Each call's latency (ms) and how many failed: a call fails when it raises or answers False."""

    def __init__(self):
        self.latencies: list[float] = []
        self.errors = 0

    async def time(self, call, started: float, clock: Callable[[], float]) -> None:
        """Awaits call(); its latency runs from `started` on `clock`."""
        try:
            ok = await call()
        except Exception:
            ok = False
        self.latencies.append((clock() - started) * 1000)
        self.errors += 0 if ok else 1

    def result(self, elapsed: float) -> LoadResult:
        if not self.latencies:
            return LoadResult(0, self.errors, elapsed, float("nan"), float("nan"))
        ordered = sorted(self.latencies)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        return LoadResult(len(ordered), self.errors, elapsed, statistics.median(ordered), p99)


async def _closed_loop(call, concurrency: int, duration_s: float | None, total: int | None) -> LoadResult:
    tally = _Tally()
    deadline = time.monotonic() + duration_s if duration_s else None
    remaining = [total] if total else None

    async def client():
        while True:
            if deadline and time.monotonic() >= deadline:
                return
            if remaining is not None:
                if remaining[0] <= 0:
                    return
                remaining[0] -= 1
            await tally.time(call, time.perf_counter(), time.perf_counter)

    began = time.monotonic()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return tally.result(time.monotonic() - began)


async def _open_loop(call, rate_per_s: float, duration_s: float) -> LoadResult:
    """Calls sent at a fixed rate whatever is in flight (an open system, as independent users are).

    Latency runs from each call's scheduled send time, so a stall counts against every call it delays
    (no coordinated omission), and a target slower than the rate shows as growing latency, not as a
    quietly lower rate.
    """
    loop = asyncio.get_running_loop()
    interval = 1.0 / rate_per_s
    tally = _Tally()
    began = loop.time()
    calls = []
    for index in range(max(1, int(duration_s * rate_per_s))):
        scheduled = began + index * interval
        if (delay := scheduled - loop.time()) > 0:
            await asyncio.sleep(delay)
        calls.append(asyncio.create_task(tally.time(call, scheduled, loop.time)))
    await asyncio.gather(*calls)
    return tally.result(loop.time() - began)


async def http_latency(url: str, body: bytes, concurrency: int = 1, *, duration_s: float | None = None,
                       total: int | None = None, headers: dict | None = None,
                       rate_per_s: float | None = None) -> LoadResult:
    """Closed loop from `concurrency` clients, or with `rate_per_s` a fixed rate for `duration_s` (open loop)."""
    connector = aiohttp.TCPConnector(limit=0 if rate_per_s else concurrency)
    request_headers = {"Content-Type": "application/json", **(headers or {})}
    async with aiohttp.ClientSession(connector=connector) as session:
        async def call():
            async with session.post(url, data=body, headers=request_headers) as reply:
                await reply.read()
                return reply.status == 200
        await call()  # warm the connection
        if rate_per_s:
            return await _open_loop(call, rate_per_s, duration_s or 5.0)
        return await _closed_loop(call, concurrency, duration_s, total)


async def grpc_latency(target: str, make_call, concurrency: int = 1, *, duration_s: float | None = None,
                       total: int | None = None, rate_per_s: float | None = None) -> LoadResult:
    """make_call(channel) -> an async function answering True on success. With `rate_per_s`, calls go out
    at that fixed rate for `duration_s` (open loop) instead of from `concurrency` closed-loop clients."""
    async with grpc.aio.insecure_channel(target) as channel:
        call = make_call(channel)
        await call()
        if rate_per_s:
            return await _open_loop(call, rate_per_s, duration_s or 5.0)
        return await _closed_loop(call, concurrency, duration_s, total)
