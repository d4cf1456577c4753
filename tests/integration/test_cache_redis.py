"""RedisCache against real Redis: the machine's shared server (a uuid namespace per
test, its lifecycle never touched) and a private ``redis-server`` we stop to prove
that an unreachable Redis is a miss, logged once, never an error."""

from __future__ import annotations

import logging
import shutil
import time

import pytest
import redis.asyncio as aioredis

from brace.cache import CacheConfig, CachedAnswer, CachePolicy, RedisCache, make_backend
from brace.errors import ConfigError
from brace.stack import Request, Response, build_stack
from brace.testing import ScriptedProvider, ok_response

from ._services import REDIS_PASSWORD, SHARED_REDIS_URL, PrivateRedis

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server")

ANSWER = CachedAnswer(b'{"id":"x","choices":[]}', {"prompt_tokens": 3}, 1_700_000_000.0, "dep", "m")


async def test_round_trip_with_expiry(namespace: str) -> None:
    cache = RedisCache(SHARED_REDIS_URL, namespace)
    assert await cache.get("k") is None
    await cache.set("k", ANSWER, 30.5)
    assert await cache.get("k") == ANSWER
    client = aioredis.Redis.from_url(SHARED_REDIS_URL)
    ttl = await client.ttl(f"{namespace}:cache:k")
    assert 0 < ttl <= 31
    await client.set(f"{namespace}:cache:garbage", b"not an answer")
    await client.aclose()
    assert await cache.get("garbage") is None
    other = RedisCache(SHARED_REDIS_URL, namespace + "-other")
    assert await other.get("k") is None
    await cache.aclose()
    await other.aclose()


async def test_two_gateways_share_entries(namespace: str) -> None:
    provider = ScriptedProvider([lambda req: ok_response("shared answer")])
    outcomes = []
    for _ in range(2):  # two gateways: own policy, own backend, same Redis namespace
        backend = make_backend(
            CacheConfig(backend="redis"), redis_url=SHARED_REDIS_URL, namespace=namespace
        )
        policy = CachePolicy(CacheConfig(enabled=True, backend="redis"), backend)
        req = Request(
            "chat", "chat", {"model": "chat", "messages": [{"role": "user", "content": "q"}]}
        )
        result = await build_stack(provider, [policy])(req)
        assert isinstance(result, Response)
        await policy.flush()
        await backend.aclose()
        outcomes.append(req.state.cache)
    assert outcomes == ["miss", "hit"] and len(provider.calls) == 1


async def test_unreachable_redis_is_a_miss_logged_once(
    private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="brace.cache")
    cache = RedisCache(private_redis.url, "ns", op_timeout=0.2)
    await cache.set("k", ANSWER, 60)
    assert await cache.get("k") == ANSWER

    await private_redis.stop()
    started = time.monotonic()
    for _ in range(5):
        assert await cache.get("k") is None
        await cache.set("k2", ANSWER, 60)  # lost, quietly
    assert time.monotonic() - started < 3
    assert cache.failures == 10
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "unavailable" in warnings[0].getMessage()
    assert REDIS_PASSWORD not in caplog.text

    await private_redis.start()  # an empty Redis (no persistence): back, but a miss
    assert await cache.get("k") is None
    await cache.set("k", ANSWER, 60)
    assert await cache.get("k") == ANSWER
    assert any("is back" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)
    await cache.aclose()


async def test_policy_keeps_answering_while_redis_is_down(private_redis: PrivateRedis) -> None:
    await private_redis.stop()
    provider = ScriptedProvider([lambda req: ok_response("fresh")])
    backend = RedisCache(private_redis.url, "ns", op_timeout=0.2)
    policy = CachePolicy(CacheConfig(enabled=True), backend)
    handler = build_stack(provider, [policy])
    for _ in range(2):
        req = Request(
            "chat", "chat", {"model": "chat", "messages": [{"role": "user", "content": "q"}]}
        )
        result = await handler(req)
        assert isinstance(result, Response) and req.state.cache == "miss"
    await policy.flush()
    await backend.aclose()
    assert len(provider.calls) == 2


def test_invalid_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        RedisCache("http://:pw@host/0")
    assert "pw" not in str(info.value)
