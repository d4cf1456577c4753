"""SQLiteCache on real temporary files: TTL, persistence, eviction, concurrent reads."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from brace.cache import CacheConfig, CachedAnswer, CachePolicy, SQLiteCache
from brace.errors import ConfigError
from brace.stack import Request, build_stack
from brace.testing import FakeClock, ScriptedProvider, ok_response


def entry(i: int, size: int = 100) -> CachedAnswer:
    return CachedAnswer(
        body=(f'{{"i":{i},"pad":"' + "x" * size + '"}').encode(), usage={"prompt_tokens": i}
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=1_700_000_000.0)


async def test_round_trip_and_persistence(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "cache.db"
    cache = SQLiteCache(path, wall=clock.now)
    assert await cache.get("k") is None
    await cache.set("k", entry(1), 60)
    got = await cache.get("k")
    assert got == entry(1)
    await cache.aclose()
    # a new process (no in-memory front) reads it back from the file
    again = SQLiteCache(path, wall=clock.now)
    assert await again.get("k") == entry(1)
    await again.aclose()


async def test_ttl_expiry_on_the_file(tmp_path: Path, clock: FakeClock) -> None:
    cache = SQLiteCache(tmp_path / "c.db", wall=clock.now, front_entries=0)
    await cache.set("short", entry(1), 10)
    await cache.set("long", entry(2), 100)
    clock.advance(11)
    assert await cache.get("short") is None
    assert await cache.get("long") == entry(2)
    # the front LRU honours the TTL too
    front = SQLiteCache(tmp_path / "d.db", wall=clock.now)
    await front.set("k", entry(3), 5)
    assert await front.get("k") is not None
    clock.advance(6)
    assert await front.get("k") is None
    await cache.aclose()
    await front.aclose()


async def test_expired_rows_are_purged(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "c.db"
    cache = SQLiteCache(path, wall=clock.now, purge_interval=30)
    await cache.set("old", entry(1), 10)  # first write purges (nothing) and starts the interval
    clock.advance(40)
    await cache.set("new", entry(2), 10)
    await cache.aclose()
    with sqlite3.connect(path) as conn:
        assert [r[0] for r in conn.execute("SELECT key FROM brace_cache")] == ["new"]


async def test_eviction_by_last_access(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "c.db"
    one = len(entry(0, 1000).encode())
    cache = SQLiteCache(path, wall=clock.now, max_bytes=10 * one, front_entries=0)
    for i in range(8):
        await cache.set(f"k{i}", entry(i, 1000), 3600)
        clock.advance(1)
    assert await cache.get("k0") is not None  # k0 is now the most recently used
    # the access time is written by the writer thread before the next write (one FIFO thread)
    for i in range(8, 12):
        clock.advance(1)
        await cache.set(f"k{i}", entry(i, 1000), 3600)
    assert cache.evicted > 0
    assert await cache.get("k0") is not None, "a recently used entry must survive"
    assert await cache.get("k1") is None, "the least recently used entry goes first"
    assert await cache.get("k11") is not None
    # 12 entries in a ~10-entry bound, trimmed to 90 %: k1, k2, then k3 (k10/k11 are a few bytes larger)
    assert cache.evicted == 3
    assert await cache.get("k4") is not None
    await cache.aclose()
    with sqlite3.connect(path) as conn:
        total = conn.execute("SELECT SUM(size) FROM brace_cache").fetchone()[0]
    assert total <= 10 * one


async def test_oversized_entry_is_not_stored(tmp_path: Path) -> None:
    cache = SQLiteCache(tmp_path / "c.db", max_bytes=500)
    await cache.set("big", entry(1, 1000), 60)
    assert await cache.get("big") is None
    await cache.aclose()


async def test_concurrent_reads_while_writing(tmp_path: Path) -> None:
    cache = SQLiteCache(tmp_path / "c.db", front_entries=0)
    for i in range(50):
        await cache.set(f"k{i}", entry(i), 60)
    threads: set[str] = set()
    real_read = cache._read

    def read(key: str) -> tuple[CachedAnswer, float] | None:
        threads.add(threading.current_thread().name)
        return real_read(key)

    cache._read = read  # type: ignore[method-assign]

    async def reader(i: int) -> bool:
        got = await cache.get(f"k{i % 50}")
        return got == entry(i % 50)

    writes = [cache.set(f"w{i}", entry(1000 + i), 60) for i in range(50)]
    results = await asyncio.gather(*(reader(i) for i in range(400)), *writes)
    assert all(results[:400])
    assert threads and all(t.startswith("brace-cache-reader") for t in threads)
    assert await cache.get("w49") == entry(1049)
    await cache.aclose()


async def test_memory_path(clock: FakeClock) -> None:
    cache = SQLiteCache(":memory:", wall=clock.now, front_entries=0)
    await cache.set("k", entry(1), 60)
    assert await cache.get("k") == entry(1)
    await cache.aclose()
    assert await cache.get("k") is None  # closed: a miss, not an error


async def test_unopenable_file_is_a_config_error(tmp_path: Path) -> None:
    cache = SQLiteCache(tmp_path / "missing-dir" / "c.db")
    with pytest.raises(ConfigError, match=r"cache\.path"):
        await cache.start()


async def test_other_schema_version_is_recreated(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE brace_cache (key TEXT, junk TEXT)")
        conn.execute("PRAGMA user_version = 99")
    cache = SQLiteCache(path)
    await cache.set("k", entry(1), 60)
    await cache.aclose()
    reopened = SQLiteCache(path)
    assert await reopened.get("k") == entry(1)
    await reopened.aclose()


async def test_policy_over_sqlite_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    provider = ScriptedProvider([lambda req: ok_response("stored")])
    for expected in ("miss", "hit"):
        policy = CachePolicy(CacheConfig(enabled=True, path=str(path)), SQLiteCache(path))
        handler = build_stack(provider, [policy])
        req = Request(
            "chat", "chat", {"model": "chat", "messages": [{"role": "user", "content": "q"}]}
        )
        await handler(req)
        await policy.flush()
        await policy.backend.aclose()
        assert req.state.cache == expected
    assert len(provider.calls) == 1
