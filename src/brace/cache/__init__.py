"""The response cache: exact-match answers, served at once, JSON or replayed as a stream.

- :mod:`~brace.cache.key`: the key (SHA-256 of the canonical request, per tenant);
- :mod:`~brace.cache.backends`: the :class:`CacheBackend` protocol,
  :class:`RedisCache`, :class:`MemoryCache`; :class:`CachedAnswer` and
  :class:`SQLiteCache` (the embedded default) live in :mod:`brace.store.cache`;
- :mod:`~brace.cache.replay`: a stream assembled into one JSON answer, and replayed;
- :mod:`~brace.cache.policy`: :class:`CachePolicy`, its config, :func:`cache_hints`.

Errors::

    ConfigError   the cache file cannot be opened, or backend redis without a URL (start-up)
    BadRequest    an invalid x-brace-cache / x-brace-cache-max-age header (cache_hints)

A backend failure is never an error: it is a miss, logged once.  See ``docs/cache.md``.
"""

from __future__ import annotations

from typing import Any

from ..store.cache import CachedAnswer, SQLiteCache
from .backends import CacheBackend, MemoryCache
from .key import cache_key, canonical_request
from .policy import (
    CacheConfig,
    CacheOverride,
    CachePolicy,
    PriceFn,
    cache_hints,
    make_backend,
)
from .replay import Assembler, assemble, replay

__all__ = [
    "Assembler",
    "CacheBackend",
    "CacheConfig",
    "CacheOverride",
    "CachePolicy",
    "CachedAnswer",
    "MemoryCache",
    "PriceFn",
    "RedisCache",
    "SQLiteCache",
    "assemble",
    "cache_hints",
    "cache_key",
    "canonical_request",
    "make_backend",
    "replay",
]


def __getattr__(name: str) -> Any:
    # redis-py loads only when a Redis cache is used
    if name == "RedisCache":
        from ._redis import RedisCache

        return RedisCache
    raise AttributeError(name)
