"""Where cached answers live: in memory, in a SQLite file (the embedded default:
:class:`brace.store.cache.SQLiteCache`), or in Redis.

Every backend answers :class:`CacheBackend`: ``get`` (``None``: a miss), ``set``
(with a TTL in seconds) and ``aclose``, plus ``start`` (open files/pools; ``get`` and
``set`` also start a backend lazily).  A backend never fails a request: a broken
file or an unreachable Redis is a miss (logged once per outage) and a lost write.
Only :meth:`SQLiteCache.start` raises, :class:`~brace.errors.ConfigError`, when the
file cannot be opened at start-up; an invalid Redis URL raises it at construction.

Times are *wall-clock* seconds (``wall``, default :func:`time.time`): entries outlive
the process and are shared by machines, so a monotonic clock would be meaningless.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from ..store.cache import LRU, CachedAnswer, Wall

__all__ = ["CacheBackend", "MemoryCache"]


class CacheBackend(Protocol):
    async def start(self) -> None: ...

    async def get(self, key: str) -> CachedAnswer | None:
        """The live entry under ``key``, or ``None`` (absent, expired, or backend down)."""
        ...

    async def set(self, key: str, answer: CachedAnswer, ttl: float) -> None:
        """Store ``answer`` for ``ttl`` seconds; never raises for a backend failure."""
        ...

    async def aclose(self) -> None: ...


class MemoryCache:
    """In-process LRU (tests, the in-process client, a single short-lived gateway)."""

    def __init__(
        self, *, max_entries: int = 10_000, max_bytes: int = 256 * 2**20, wall: Wall = time.time
    ) -> None:
        self._lru = LRU(max_entries, max_bytes)
        self._wall = wall

    def __len__(self) -> int:
        return len(self._lru)

    async def start(self) -> None:
        return None

    async def get(self, key: str) -> CachedAnswer | None:
        return self._lru.get(key, self._wall())

    async def set(self, key: str, answer: CachedAnswer, ttl: float) -> None:
        self._lru.put(key, answer, self._wall() + ttl)

    async def aclose(self) -> None:
        return None


def __getattr__(name: str) -> Any:
    # RedisCache lives in ._redis so that redis-py is imported only when it is used
    if name == "RedisCache":
        from ._redis import RedisCache

        return RedisCache
    raise AttributeError(name)
