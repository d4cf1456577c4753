"""RedisLimiter against real Redis: the machine's shared server (one uuid namespace
per test, its lifecycle never touched) and private ``redis-server`` processes on
free ports for the tests that stop Redis.  Real time, short intervals."""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from brace.clock import SystemClock
from brace.state import Learned, Limits, LocalLimiter, RedisLimiter
from brace.testing import FakeClock

from ._services import REDIS_PASSWORD, SHARED_REDIS_URL, PrivateRedis

LOGGER = "brace.state._redis"

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server")


@pytest.fixture
async def make() -> AsyncIterator[Callable[..., RedisLimiter]]:
    made: list[RedisLimiter] = []

    def factory(url: str, namespace: str, **kw: Any) -> RedisLimiter:
        lim = RedisLimiter(url, namespace=namespace, clock=SystemClock(), **kw)
        made.append(lim)
        return lim

    yield factory
    for lim in made:
        await lim.aclose()


async def eventually(check: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


# -- shared limits


async def test_two_instances_share_one_limit(
    namespace: str, make: Callable[..., RedisLimiter]
) -> None:
    a, b = make(SHARED_REDIS_URL, namespace), make(SHARED_REDIS_URL, namespace)
    await a.start()
    await b.start()
    assert a.status == b.status == "shared"
    limits = Limits(rpm=60, tpm=None, burst_seconds=5)  # burst 5, then 1 s apart
    got = []
    for i in range(8):
        r = await (a if i % 2 else b).reserve("dep", limits, max_wait=60)
        assert r.granted and r.source == "shared"
        got.append(r.wait)
    assert got[:5] == pytest.approx([0.0] * 5, abs=0.05)
    assert got[5:] == pytest.approx([1.0, 2.0, 3.0], abs=0.05)
    # refusals book nothing, on either instance
    for lim in (a, b):
        r = await lim.reserve("dep", limits, max_wait=1)
        assert not r.granted and r.wait == pytest.approx(4.0, abs=0.05)
    assert await a.peek("dep", limits) == pytest.approx(4.0, abs=0.05)


async def test_script_waits_match_the_local_arithmetic(
    namespace: str, make: Callable[..., RedisLimiter]
) -> None:
    shared = make(SHARED_REDIS_URL, namespace)
    await shared.start()
    local = LocalLimiter(FakeClock())  # time stands still: real time moves a few ms
    limits = Limits(rpm=120, tpm=6000, burst_seconds=2)  # 4 requests; 200 tokens
    steps: list[tuple[str, int, float]] = [
        ("reserve", 150, 60),
        ("spent", 3, 120),  # the upstream says: 3 requests and 120 tokens left
        ("peek", 0, 0),
        ("reserve", 100, 60),
        ("reserve", 10, 0.5),  # refused
        ("adjust", -80, 0),
        ("peek", 50, 0),
        ("reserve", 500, 60),  # larger than the burst
        ("reserve", 0, 60),
        ("reserve", 0, 60),
        ("adjust", 30, 0),
        ("peek", 1, 0),
        ("spent", 0, -1),  # no request left; tokens not said
        ("peek", 0, 0),
        ("spent", 50, 10_000),  # more than the bucket holds: changes nothing
        ("peek", 0, 0),
        ("block", 0, 9),
        ("peek", 0, 0),
        ("reserve", 5, 60),
    ]
    for op, tokens, arg in steps:
        if op == "reserve":
            want = await local.reserve("d", limits, tokens, max_wait=arg)
            got = await shared.reserve("d", limits, tokens, max_wait=arg)
            assert (got.granted, got.tokens) == (want.granted, want.tokens), (op, tokens)
            assert got.wait == pytest.approx(want.wait, abs=0.05), (op, tokens)
        elif op == "peek":
            want_wait = await local.peek("d", limits, tokens)
            assert await shared.peek("d", limits, tokens) == pytest.approx(want_wait, abs=0.05)
        elif op == "spent":
            tokens_left = None if arg < 0 else int(arg)
            await local.spent("d", limits, tokens, tokens_left)
            await shared.spent("d", limits, tokens, tokens_left)
        elif op == "adjust":
            await local.adjust("d", limits, tokens)
            await shared.adjust("d", limits, tokens)
        else:
            await local.block("d", arg)
            await shared.block("d", arg)


async def test_keys_expire_once_settled(namespace: str, make: Callable[..., RedisLimiter]) -> None:
    lim = make(SHARED_REDIS_URL, namespace)
    await lim.start()
    await lim.reserve("dep", Limits(rpm=60, tpm=None, burst_seconds=1), max_wait=0)
    await lim.block("blocked", 30)
    client = aioredis.Redis.from_url(SHARED_REDIS_URL)
    try:
        assert 0 < await client.pttl(lim.limiter_key("dep")) <= 2_000
        assert 58_000 < await client.pttl(lim.limiter_key("blocked")) <= 60_000
        assert await client.ttl(f"{namespace}:instances") > 0
    finally:
        await client.aclose()


async def test_learned_limits_are_shared(namespace: str, make: Callable[..., RedisLimiter]) -> None:
    a, b = make(SHARED_REDIS_URL, namespace), make(SHARED_REDIS_URL, namespace)
    await a.start()
    await b.start()
    assert await b.get_learned("dep") is None
    await a.set_learned("dep", Learned(rpm=500.0, tpm=None, updated_at=1700000000.5))
    assert await b.get_learned("dep") == Learned(rpm=500.0, tpm=None, updated_at=1700000000.5)


# -- instances


async def test_heartbeat_counts_live_instances(
    namespace: str, make: Callable[..., RedisLimiter]
) -> None:
    lims = [make(SHARED_REDIS_URL, namespace, heartbeat_interval=0.25) for _ in range(3)]
    for lim in lims:
        await lim.start()
    await eventually(lambda: all(lim.live_instances == 3 for lim in lims))
    await lims[2].aclose()
    await eventually(lambda: all(lim.live_instances == 2 for lim in lims[:2]))
    assert lims[0].describe()["live_instances"] == 2


# -- degraded mode


async def test_degraded_when_redis_dies_and_back_when_it_returns(
    private_redis: PrivateRedis,
    make: Callable[..., RedisLimiter],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    ns = "deg"
    a = make(private_redis.url, ns, heartbeat_interval=0.05, op_timeout=0.2)
    b = make(private_redis.url, ns, heartbeat_interval=0.05, op_timeout=0.2)
    await a.start()
    await b.start()
    await eventually(lambda: a.live_instances == 2)
    limits = Limits(rpm=60, tpm=None, burst_seconds=4)  # shared: burst 4, 1 s apart
    assert (await a.reserve("dep", limits, max_wait=0)).source == "shared"

    await private_redis.stop()
    t0 = time.monotonic()
    first = await a.reserve("dep", limits, max_wait=60)
    assert time.monotonic() - t0 < 0.5
    assert first.source == "degraded" and a.status == "degraded"
    # each of the 2 instances takes half: 30 rpm, 2 s apart; its share starts empty (the
    # shared bucket may have just been spent), so no burst at the switch
    rest = [await a.reserve("dep", limits, max_wait=60) for _ in range(3)]
    assert [first.wait, *(r.wait for r in rest)] == pytest.approx([2.0, 4.0, 6.0, 8.0], abs=0.05)
    # once degraded the hot path never waits for Redis
    t0 = time.monotonic()
    for _ in range(200):
        await a.peek("dep", limits)
    assert time.monotonic() - t0 < 0.1
    await asyncio.sleep(0.2)  # several failed heartbeats
    await a.block("dep", 1)
    await a.set_learned("dep", Learned(rpm=10.0, tpm=None, updated_at=1.0))
    assert await a.get_learned("dep") == Learned(rpm=10.0, tpm=None, updated_at=1.0)
    info = a.describe()
    assert info["mode"] == "degraded" and info["degraded_calls"] >= 207
    assert info["last_error"] in {"ConnectionError", "TimeoutError"}
    warnings = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    assert len(warnings) == 2  # one per instance (a and b), not one per call or heartbeat
    assert all("1/2 of each limit" in r.getMessage() for r in warnings)
    assert REDIS_PASSWORD not in caplog.text and REDIS_PASSWORD not in repr(info)

    await private_redis.start()
    await eventually(lambda: a.status == b.status == "shared")
    assert (await a.reserve("other", limits, max_wait=0)).source == "shared"
    infos = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.INFO]
    assert len(infos) == 2
    assert REDIS_PASSWORD not in caplog.text


@pytest.mark.parametrize(
    "private_redis", [pytest.param({"started": False}, id="not-started")], indirect=True
)
async def test_starting_without_redis_is_degraded_then_shared(
    private_redis: PrivateRedis,
    make: Callable[..., RedisLimiter],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    server = private_redis
    lim = make(server.url, "late", heartbeat_interval=0.05, op_timeout=0.2)
    t0 = time.monotonic()
    await lim.start()
    assert time.monotonic() - t0 < 0.5
    assert lim.status == "degraded" and lim.live_instances == 1
    limits = Limits(rpm=60, tpm=None, burst_seconds=2)  # one instance assumed: the full limit
    got = [await lim.reserve("dep", limits, max_wait=60) for _ in range(3)]
    # the local share starts empty (other instances may be spending the upstream's
    # bucket): one per second from the start, no burst
    assert [r.wait for r in got] == pytest.approx([1.0, 2.0, 3.0], abs=0.05)
    assert {r.source for r in got} == {"degraded"}
    await server.start()
    await eventually(lambda: lim.status == "shared")
    assert (await lim.reserve("dep", limits, max_wait=0)).source == "shared"
    levels = [r.levelno for r in caplog.records if r.name == LOGGER]
    assert levels == [logging.WARNING, logging.INFO]


async def test_a_slow_redis_times_out_into_degraded_mode(
    private_redis: PrivateRedis, make: Callable[..., RedisLimiter]
) -> None:
    lim = make(private_redis.url, "slow", heartbeat_interval=0.05, op_timeout=0.1)
    await lim.start()
    limits = Limits(rpm=60, tpm=None, burst_seconds=2)
    assert (await lim.reserve("dep", limits, max_wait=0)).source == "shared"
    admin = aioredis.Redis.from_url(private_redis.url)
    sleeper = asyncio.create_task(admin.execute_command("DEBUG", "SLEEP", "0.4"))
    try:
        await asyncio.sleep(0.02)  # the server is now stuck
        t0 = time.monotonic()
        r = await lim.reserve("dep", limits, max_wait=0)
        assert time.monotonic() - t0 < 0.2
        # answered locally at once; the local share starts empty, so the true wait is
        # one interval (60 rpm: 1 s) and nothing is booked with max_wait=0
        assert r.source == "degraded" and not r.granted
        assert r.wait == pytest.approx(1.0, abs=0.05)
        assert lim.describe()["last_error"] == "TimeoutError"
        await sleeper
        await eventually(lambda: lim.status == "shared")
    finally:
        await sleeper
        await admin.aclose()
