"""The Redis cache backend, in a module of its own: redis-py is imported only by a
gateway whose cache is configured with ``server.redis_url``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math

from redis.asyncio import Redis
from redis.exceptions import RedisError

from ..state import redact_url
from ..state._redis import redis_client
from ..store.cache import CachedAnswer

__all__ = ["RedisCache"]

log = logging.getLogger("brace.cache")


_REDIS_FAILURES = (RedisError, OSError, TimeoutError)


class RedisCache:
    """Answers in Redis under ``{namespace}:cache:{key}``, ``SET ... EX ttl``.

    Each call is bounded by ``op_timeout``; a failure or a timeout is a miss (or a
    lost write), logged once per outage without the URL's password.  Size is Redis's
    business: run it with ``maxmemory`` and an ``allkeys-lru`` or ``volatile-lru``
    policy.
    """

    def __init__(
        self,
        url: str,
        namespace: str = "brace",
        *,
        op_timeout: float = 0.25,
        max_connections: int = 32,
    ) -> None:
        if not op_timeout > 0:
            raise ValueError("op_timeout must be positive")
        self._url = redact_url(url)
        self._redis: Redis = redis_client(
            url, what="cache", op_timeout=op_timeout, max_connections=max_connections
        )
        self._prefix = f"{namespace}:cache:"
        self._timeout = op_timeout
        self._healthy: bool | None = None
        self.failures = 0

    def redis_key(self, key: str) -> str:
        return self._prefix + key

    async def start(self) -> None:
        return None

    async def get(self, key: str) -> CachedAnswer | None:
        try:
            async with asyncio.timeout(self._timeout):
                raw = await self._redis.get(self.redis_key(key))
        except _REDIS_FAILURES as exc:
            self._down(exc)
            return None
        self._up()
        if not isinstance(raw, bytes):
            return None
        try:
            return CachedAnswer.decode(raw)
        except ValueError:
            return None

    async def set(self, key: str, answer: CachedAnswer, ttl: float) -> None:
        if not ttl > 0:
            return
        try:
            async with asyncio.timeout(self._timeout):
                await self._redis.set(self.redis_key(key), answer.encode(), ex=math.ceil(ttl))
        except _REDIS_FAILURES as exc:
            self._down(exc)
            return
        self._up()

    async def aclose(self) -> None:
        with contextlib.suppress(*_REDIS_FAILURES):
            await self._redis.aclose()
        with contextlib.suppress(*_REDIS_FAILURES):
            await self._redis.connection_pool.disconnect()

    def _down(self, exc: BaseException) -> None:
        self.failures += 1
        if self._healthy is False:
            return
        self._healthy = False
        # only the class: a driver's message could one day carry the URL
        log.warning(
            "brace cache: Redis at %s unavailable (%s); lookups are misses until it is back",
            self._url,
            type(exc).__name__,
        )

    def _up(self) -> None:
        if self._healthy is False:
            log.info("brace cache: Redis at %s is back", self._url)
        self._healthy = True
