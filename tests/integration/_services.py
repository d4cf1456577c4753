"""The machine's services as the integration tests see them: is PostgreSQL or the
shared Redis up, a free port, and a private ``redis-server`` a test may stop and
restart at will."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import time
from pathlib import Path

import redis.asyncio as aioredis

__all__ = [
    "PG_URL",
    "REDIS_PASSWORD",
    "SHARED_REDIS_URL",
    "PrivateRedis",
    "free_port",
    "pg_up",
    "shared_redis_up",
]

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
SHARED_REDIS_URL = "redis://127.0.0.1:6379/0"
REDIS_PASSWORD = "s3cret-pw"
"""The private redis-server's password (tests check it never reaches a log)."""


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.3):
        return True
    return False


def pg_up() -> bool:
    return _listening(5432)


def shared_redis_up() -> bool:
    return _listening(6379)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateRedis:
    """Our own redis-server on a free port, without persistence (with a password when
    given); stop/start at will.  Tests take one from the ``private_redis`` fixture
    (conftest.py), which always stops it."""

    def __init__(self, port: int, workdir: Path, *, password: str | None = None) -> None:
        self.port = port
        auth = f":{password}@" if password else ""
        self.url = f"redis://{auth}127.0.0.1:{port}/0"
        self._password = password
        self._dir = workdir
        self._proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        auth = ("--requirepass", self._password) if self._password else ()
        self._proc = await asyncio.create_subprocess_exec(
            "redis-server",
            *("--port", str(self.port), "--bind", "127.0.0.1", "--save", ""),
            *("--appendonly", "no", "--dir", str(self._dir), *auth),
            *("--enable-debug-command", "yes"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 5
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                assert time.monotonic() < deadline, "redis-server did not start"
                await asyncio.sleep(0.01)
                continue
            writer.close()
            await writer.wait_closed()
            return

    async def stop(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()
            await self._proc.wait()
        self._proc = None

    async def keys(self, pattern: str) -> list[str]:
        client = aioredis.Redis.from_url(self.url, decode_responses=True)
        try:
            return list(await client.keys(pattern))
        finally:
            await client.aclose()
