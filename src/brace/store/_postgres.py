"""The PostgreSQL connection policy every store shares (asyncpg).

A pool is opened with a connect timeout and a per-command timeout, an
``application_name`` and, when a store has its own schema, that ``search_path``.
The URL's password never reaches a log or an error: the database is named with
:func:`~brace.state.redact_url`, and error texts are scrubbed with :class:`Secrets`.
Queries are written with ``?`` placeholders (as for SQLite) and numbered for
PostgreSQL by :func:`numbered`.
"""

from __future__ import annotations

import asyncio
import functools
import re
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information

__all__ = ["CONNECT_ERRORS", "Secrets", "check_schema", "close_pool", "numbered", "open_pool"]

CONNECT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)
"""What opening a pool (or migrating through it) raises when the database is away."""

_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def check_schema(schema: str | None) -> None:
    """ValueError unless ``schema`` is ``None`` or a lower-case SQL identifier."""
    if schema is not None and not _SCHEMA.match(schema):
        raise ValueError(f"schema {schema!r} must be a lower-case SQL identifier")


class Secrets:
    """The secrets of a URL (its password, a ``password``/``passfile`` parameter), to
    scrub from error texts."""

    def __init__(self, url: str) -> None:
        found: list[str] = []
        try:
            parts = urlsplit(url)
            if parts.password:
                found += [parts.password, unquote(parts.password)]
            found += [v for k, v in parse_qsl(parts.query) if k.lower() in ("password", "passfile")]
        except ValueError:
            pass
        self._found = [s for s in found if s]

    def redact(self, text: str) -> str:
        for secret in self._found:
            text = text.replace(secret, "***")
        return text


async def open_pool(
    url: str,
    *,
    size: int,
    connect_timeout: float,
    command_timeout: float,
    application_name: str,
    schema: str | None = None,
) -> Any:
    """An asyncpg pool (1 to ``size`` connections); raises :data:`CONNECT_ERRORS`."""
    settings = {"application_name": application_name}
    if schema:
        settings["search_path"] = schema
    return await asyncpg.create_pool(
        url,
        min_size=1,
        max_size=size,
        timeout=connect_timeout,
        command_timeout=command_timeout,
        server_settings=settings,
    )


async def close_pool(pool: Any) -> None:
    """Close ``pool`` (``None``: nothing), terminating it after 10 s."""
    if pool is None:
        return
    try:
        await asyncio.wait_for(pool.close(), 10)
    except TimeoutError:
        pool.terminate()


@functools.lru_cache(maxsize=256)
def numbered(sql: str) -> str:
    """``?`` placeholders (outside quotes) as PostgreSQL's ``$1, $2...``."""
    out: list[str] = []
    n = 0
    quoted = False
    for ch in sql:
        if ch == "'":
            quoted = not quoted
        if ch == "?" and not quoted:
            n += 1
            out.append(f"${n}")
        else:
            out.append(ch)
    return "".join(out)
