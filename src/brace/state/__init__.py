"""Shared state for the capacity engine: per-deployment GCRA reservations and
learned limits, in-process or shared through Redis.

One interface, :class:`LimiterBackend`, two backends:

- :class:`LocalLimiter`: in-process, timed by the injected clock (the embedded
  default, and every Redis limiter's fallback);
- :class:`RedisLimiter`: one atomic Lua script per operation on Redis server time,
  an instance heartbeat, and a degraded mode that paces locally with ``limit / N``
  while Redis is unreachable.

:func:`make_limiter` picks one from the configuration.  See ``docs/state.md``.

Errors: arguments out of range raise :class:`ValueError` (a programming mistake);
an invalid Redis URL raises :class:`~brace.errors.ConfigError`.  Redis failures are
never raised: they switch a :class:`RedisLimiter` to ``degraded``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..clock import Clock
from ._local import LocalLimiter
from ._types import Learned, LimiterBackend, Limits, Reservation, Status
from ._url import redact_url

if TYPE_CHECKING:
    from ._redis import RedisLimiter

__all__ = [
    "Learned",
    "LimiterBackend",
    "Limits",
    "LocalLimiter",
    "RedisLimiter",
    "Reservation",
    "Status",
    "make_limiter",
    "redact_url",
]


def make_limiter(
    redis_url: str | None, *, clock: Clock, namespace: str = "brace"
) -> LimiterBackend:
    """A :class:`RedisLimiter` when ``redis_url`` is set, else a :class:`LocalLimiter`.

    Call ``await limiter.start()`` before use and ``await limiter.aclose()`` at
    shutdown (both are no-ops for the local backend)."""
    if redis_url:
        from ._redis import RedisLimiter

        return RedisLimiter(redis_url, namespace=namespace, clock=clock)
    return LocalLimiter(clock)


def __getattr__(name: str) -> Any:
    # redis-py (and what it imports) loads only when Redis is configured
    if name == "RedisLimiter":
        from ._redis import RedisLimiter

        return RedisLimiter
    raise AttributeError(name)
