"""The shared limiter: GCRA state in Redis, with a local fallback per instance."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from .._tasks import stop_task
from ..clock import Clock
from ..errors import ConfigError
from . import _gcra, _scripts
from ._local import LocalLimiter
from ._types import Learned, Limits, Reservation, Status
from ._url import redact_url

__all__ = ["RedisLimiter", "redact_url"]

T = TypeVar("T")

_FAILURES = (RedisError, OSError, TimeoutError)
"""What switches the limiter to degraded mode (a timeout is ``TimeoutError``)."""

LEARNED_TTL_SECONDS = 86_400
"""Learned limits outlive the limiter state: a day, refreshed on every write."""


def redis_client(
    url: str,
    *,
    what: str,
    op_timeout: float,
    max_connections: int,
    decode_responses: bool = False,
) -> Redis:
    """A client whose every wait (a pooled connection, connect, each socket read and
    write) is bounded, with one immediate retry so that a stale connection reconnects;
    an invalid URL is a :class:`ConfigError` naming ``what`` (without the URL's
    password).

    Callers bound each operation by ``op_timeout`` themselves; the client's own waits
    get twice that, so that the caller's scope always expires first.  With both at the
    same deadline, Python 3.11's nested ``asyncio`` timeouts can hand one's
    cancellation to the other, and redis-py turns its pool-wait timeout into a
    ``ConnectionError``: the outer scope then never sees its cancellation (seen here as
    a heartbeat that stopped and a close that never returned, about once in 15 test
    runs)."""
    inner = 2 * op_timeout
    try:
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=inner,
            socket_timeout=inner,
            socket_connect_timeout=inner,
            retry=Retry(NoBackoff(), 1),
            decode_responses=decode_responses,
        )
    except ValueError:
        raise ConfigError(
            f"{what}: {redact_url(url)!r} is not a valid Redis URL (redis://, rediss:// or unix://)"
        ) from None
    return Redis(connection_pool=pool)


class RedisLimiter:
    """GCRA reservations shared by every instance through Redis.

    Each operation is one atomic Lua script (EVALSHA, reloaded on NOSCRIPT) timed
    by Redis ``TIME``.  A heartbeat every ``heartbeat_interval`` seconds registers
    this instance in ``{namespace}:instances`` and counts the live ones.

    When a Redis call fails or takes longer than ``op_timeout``, the limiter turns
    ``degraded`` at once: that call and every later one are answered by an
    in-process :class:`LocalLimiter` with each limit divided by the last known
    number of live instances, until the heartbeat reaches Redis again.  Starting
    with Redis down is the same (one live instance assumed).  The URL's password
    is never logged nor described.
    """

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "brace",
        clock: Clock,
        instance_id: str | None = None,
        heartbeat_interval: float = 1.0,
        op_timeout: float = 0.25,
        max_connections: int = 64,
        local: LocalLimiter | None = None,
    ) -> None:
        if not heartbeat_interval > 0:
            raise ValueError("heartbeat_interval must be positive")
        if not op_timeout > 0:
            raise ValueError("op_timeout must be positive")
        self._url = redact_url(url)
        self._redis: Redis = redis_client(
            url,
            what="state",
            op_timeout=op_timeout,
            max_connections=max_connections,
            decode_responses=True,
        )
        self._reserve = self._redis.register_script(_scripts.RESERVE)
        self._adjust = self._redis.register_script(_scripts.ADJUST)
        self._block = self._redis.register_script(_scripts.BLOCK)
        self._spent = self._redis.register_script(_scripts.SPENT)
        self._heartbeat = self._redis.register_script(_scripts.HEARTBEAT)
        self._clock = clock
        self._ns = namespace
        self._instances_key = f"{namespace}:instances"
        self.instance_id = instance_id or (
            f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        )
        self._interval = heartbeat_interval
        self._op_timeout = op_timeout
        self._local = local if local is not None else LocalLimiter(clock)
        self._log = logging.getLogger(__name__)
        self._healthy: bool | None = None  # None: not known yet
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.live_instances = 1
        self.degraded_calls = 0
        self._degraded_keys: dict[str, float] = {}
        """Keys paced locally during this outage, with their burst window."""
        self.degraded_since: float | None = None
        self.last_error: str | None = None

    # -- lifecycle

    @property
    def status(self) -> Status:
        return "shared" if self._healthy else "degraded"

    async def start(self) -> None:
        """Register this instance and start the heartbeat; never raises for Redis
        being unreachable (the limiter starts degraded and keeps trying)."""
        if self._task is not None or self._closed:
            return
        await self._beat()
        self._task = asyncio.create_task(self._heartbeat_loop(), name="brace-state-heartbeat")

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        task, self._task = self._task, None
        await stop_task(task)
        if self._healthy:
            with contextlib.suppress(*_FAILURES):
                async with self._clock.timeout(self._op_timeout):
                    await self._redis.zrem(self._instances_key, self.instance_id)
        with contextlib.suppress(*_FAILURES):  # closing is bounded too: never hang a shutdown
            async with self._clock.timeout(4 * self._op_timeout):
                await self._redis.aclose()
        with contextlib.suppress(*_FAILURES):
            async with self._clock.timeout(4 * self._op_timeout):
                await self._redis.connection_pool.disconnect()

    async def _heartbeat_loop(self) -> None:
        while True:
            await self._clock.sleep(self._interval)
            await self._beat()

    async def _beat(self) -> None:
        stale_after = 3 * self._interval
        ttl_ms = int(max(60.0, 10 * self._interval) * 1000)
        try:
            async with self._clock.timeout(self._op_timeout):
                live = await self._heartbeat(
                    keys=[self._instances_key], args=[self.instance_id, stale_after, ttl_ms]
                )
            self.live_instances = max(1, int(live))
            if not self._healthy:
                # A restarted Redis has forgotten every reservation: its buckets would
                # start full while the upstream's may be empty.  Hold each key paced
                # locally for one burst window, on every instance, before sharing again.
                for key, burst in list(self._degraded_keys.items()):
                    async with self._clock.timeout(self._op_timeout):
                        await self._block(keys=[self.limiter_key(key)], args=[repr(float(burst))])
        except Exception as exc:  # any failure, even an unexpected answer, must not kill the beat
            self._mark_down(exc)
            return
        self._mark_up()

    def _mark_down(self, exc: BaseException) -> None:
        self.last_error = type(exc).__name__
        if self._healthy is False:
            return
        self._healthy = False
        self.degraded_since = self._clock.now()
        # Only the class: a driver's message could one day carry the URL.
        self._log.warning(
            "brace state: Redis at %s unavailable (%s); pacing locally with 1/%d of each limit",
            self._url,
            self.last_error,
            self.live_instances,
        )

    def _mark_up(self) -> None:
        if self._healthy is False:
            self._log.info(
                "brace state: Redis at %s is back; shared pacing resumed after %d degraded calls",
                self._url,
                self.degraded_calls,
            )
            self._local.clear()
            self._degraded_keys.clear()
            self.degraded_since = None
        self._healthy = True

    async def _call(self, op: Callable[[], Awaitable[T]], fallback: Callable[[], T]) -> T:
        """``op`` on Redis within ``op_timeout``, or ``fallback`` while degraded."""
        if self._healthy:
            try:
                async with self._clock.timeout(self._op_timeout):
                    return await op()
            except _FAILURES as exc:
                self._mark_down(exc)
        self.degraded_calls += 1
        return fallback()

    # -- keys

    def limiter_key(self, key: str) -> str:
        return f"{self._ns}:lim:{key}"

    def learned_key(self, key: str) -> str:
        return f"{self._ns}:learned:{key}"

    # -- the LimiterBackend protocol

    async def reserve(
        self, key: str, limits: Limits, tokens: int = 0, *, max_wait: float
    ) -> Reservation:
        max_wait = _gcra.check_wait(max_wait, tokens)

        async def op() -> Reservation:
            granted, wait = await self._reserve(
                keys=[self.limiter_key(key)],
                args=[*_iv(limits), tokens, max_wait + _gcra.EPSILON, 1],
            )
            if int(granted):
                return Reservation(granted=True, wait=float(wait), tokens=tokens, source="shared")
            return Reservation(granted=False, wait=float(wait), source="shared")

        return await self._call(op, lambda: self._degraded_reserve(key, limits, tokens, max_wait))

    def _degraded_reserve(
        self, key: str, limits: Limits, tokens: int, max_wait: float
    ) -> Reservation:
        share = limits.divided(self.live_instances)
        if key not in self._degraded_keys:
            # The shared bucket may have just been spent by every instance: start this
            # instance's share empty (no burst) rather than full, so that the switch to
            # local pacing does not add up to a burst the upstream refuses.
            self._degraded_keys[key] = share.burst_seconds
            self._local.drain_now(key, share)
        return self._local.reserve_now(key, share, tokens, max_wait=max_wait, source="degraded")

    async def peek(self, key: str, limits: Limits, tokens: int = 0) -> float:
        _gcra.check_wait(0.0, tokens)

        async def op() -> float:
            _, wait = await self._reserve(
                keys=[self.limiter_key(key)], args=[*_iv(limits), tokens, 0, 0]
            )
            return float(wait)

        return await self._call(
            op, lambda: self._local.peek_now(key, limits.divided(self.live_instances), tokens)
        )

    async def adjust(self, key: str, limits: Limits, token_delta: int) -> None:
        if limits.tpm is None or token_delta == 0:
            return
        token_interval = 60.0 / limits.tpm

        async def op() -> None:
            await self._adjust(
                keys=[self.limiter_key(key)], args=[repr(token_interval), token_delta]
            )

        await self._call(
            op,
            lambda: self._local.adjust_now(key, limits.divided(self.live_instances), token_delta),
        )

    async def block(self, key: str, seconds: float) -> None:
        if not seconds > 0:
            return

        async def op() -> None:
            await self._block(keys=[self.limiter_key(key)], args=[repr(float(seconds))])

        await self._call(op, lambda: self._local.block_now(key, seconds))

    async def spent(
        self, key: str, limits: Limits, requests_left: int | None, tokens_left: int | None
    ) -> None:
        if requests_left is None and tokens_left is None:
            return
        ri, rtau, ti, ttau = _gcra.intervals(limits.rpm, limits.tpm, limits.burst_seconds)
        args: list[str | int] = [
            repr(ri),
            repr(rtau),
            -1 if requests_left is None else max(0, requests_left),
            repr(ti),
            repr(ttau),
            -1 if tokens_left is None else max(0, tokens_left),
        ]

        async def op() -> None:
            await self._spent(keys=[self.limiter_key(key)], args=args)

        await self._call(
            op,
            lambda: self._local.spent_now(
                key, limits.divided(self.live_instances), requests_left, tokens_left
            ),
        )

    async def get_learned(self, key: str) -> Learned | None:
        async def op() -> Learned | None:
            # decode_responses=True: keys and values are str
            pending = cast("Awaitable[dict[str, str]]", self._redis.hgetall(self.learned_key(key)))
            raw = await pending
            if not raw:
                return None
            learned = Learned(
                rpm=_opt_float(raw.get("rpm")),
                tpm=_opt_float(raw.get("tpm")),
                updated_at=float(raw.get("updated_at") or 0.0),
            )
            self._local.set_learned_now(key, learned)
            return learned

        return await self._call(op, lambda: self._local.learned_now(key))

    async def set_learned(self, key: str, learned: Learned) -> None:
        self._local.set_learned_now(key, learned)

        async def op() -> None:
            name = self.learned_key(key)
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(
                    name,
                    mapping={
                        "rpm": "" if learned.rpm is None else repr(learned.rpm),
                        "tpm": "" if learned.tpm is None else repr(learned.tpm),
                        "updated_at": repr(learned.updated_at),
                    },
                )
                pipe.expire(name, LEARNED_TTL_SECONDS)
                await pipe.execute()

        await self._call(op, lambda: None)

    def describe(self) -> dict[str, Any]:
        return {
            "backend": "redis",
            "mode": self.status,
            "url": self._url,
            "namespace": self._ns,
            "instance_id": self.instance_id,
            "live_instances": self.live_instances,
            "degraded_calls": self.degraded_calls,
            "degraded_since": self.degraded_since,
            "last_error": self.last_error,
            "heartbeat_interval": self._interval,
            "op_timeout": self._op_timeout,
            "local": self._local.describe(),
        }


def _iv(limits: Limits) -> list[str]:
    return [repr(x) for x in _gcra.intervals(limits.rpm, limits.tpm, limits.burst_seconds)]


def _opt_float(value: str | None) -> float | None:
    return float(value) if value else None
