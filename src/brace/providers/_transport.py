"""The HTTP client side shared by every wire adapter.

One :class:`aiohttp.ClientSession` (a pooled connector) serves every deployment of
a gateway or client; adapters call :func:`post` and get either a 2xx response or
one of Brace's :class:`~brace.errors.UpstreamFailure` errors, with transport
exceptions (timeouts, resets, refused connections) mapped at this boundary.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp

from .._version import __version__
from ..config import Timeouts
from ..errors import UpstreamConnectionError, UpstreamFailure, UpstreamTimeout
from ._classify import classify_failure
from ._sse import SSEDecoder, SSEEvent

__all__ = [
    "USER_AGENT",
    "client_timeout",
    "closer",
    "iter_sse",
    "make_session",
    "post",
    "read_body",
    "transport_error",
]


USER_AGENT = f"brace/{__version__}"
"""Sent by every adapter in its own headers.  Naming it there (rather than
``skip_auto_headers`` on the session) spares aiohttp rebuilding a header set for every
request (~6 µs each)."""


def make_session() -> aiohttp.ClientSession:
    """The shared upstream client: unlimited pool (limits are policies' business),
    keep-alive, no cookie jar; adapters send :data:`USER_AGENT` themselves."""
    connector = aiohttp.TCPConnector(
        limit=0, limit_per_host=0, ttl_dns_cache=300, keepalive_timeout=60.0
    )
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=True,
    )


def client_timeout(t: Timeouts, *, stream: bool = True) -> aiohttp.ClientTimeout:
    """Transport-level limits only: connect, and for a stream its whole length.
    First-token, stall and a JSON attempt's total (and the request deadline) are
    enforced by the attempt policy: a second timer per JSON attempt would only cost."""
    return aiohttp.ClientTimeout(total=t.total if stream else None, connect=t.connect)


def transport_error(exc: BaseException, *, deployment: str, phase: str) -> UpstreamFailure:
    """Map an aiohttp/asyncio exception raised while talking to an upstream."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return UpstreamTimeout(
            f"deployment {deployment}: connect timed out", phase="connect", deployment=deployment
        )
    if isinstance(exc, asyncio.TimeoutError):  # ServerTimeoutError / SocketTimeoutError too
        what = {
            "first_token": "no response before the read timeout",
            "stall": "the stream stalled longer than the read timeout",
        }.get(phase, "timed out")
        return UpstreamTimeout(
            f"deployment {deployment}: {what}", phase=phase, deployment=deployment
        )
    if isinstance(exc, aiohttp.ClientPayloadError):
        return UpstreamConnectionError(
            f"deployment {deployment}: the upstream broke off its response ({exc.__class__.__name__})",
            deployment=deployment,
        )
    reason = exc.__class__.__name__
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = f"cannot connect to {exc.host}:{exc.port}"
    elif isinstance(exc, aiohttp.ServerDisconnectedError):
        reason = "the upstream closed the connection"
    elif isinstance(exc, OSError | aiohttp.ClientOSError) and exc.strerror:
        reason = exc.strerror
    return UpstreamConnectionError(f"deployment {deployment}: {reason}", deployment=deployment)


async def post(
    session: aiohttp.ClientSession,
    url: str,
    data: bytes,
    headers: dict[str, str],
    timeouts: aiohttp.ClientTimeout,
    *,
    deployment: str,
) -> aiohttp.ClientResponse:
    """POST and return a 2xx response (the caller releases it) or raise a failure."""
    try:
        resp = await session.post(url, data=data, headers=headers, timeout=timeouts)
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise transport_error(exc, deployment=deployment, phase="first_token") from exc
    if resp.status >= 300:
        try:
            body = await resp.read()
        except (TimeoutError, aiohttp.ClientError, OSError):
            body = b""
        finally:
            resp.release()
        failure = classify_failure(resp.status, body, resp.headers, deployment=deployment)
        failure.upstream_headers = resp.headers
        raise failure
    return resp


async def read_body(resp: aiohttp.ClientResponse, *, deployment: str) -> bytes:
    try:
        return await resp.read()
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise transport_error(exc, deployment=deployment, phase="stall") from exc
    finally:
        resp.release()


async def iter_sse(
    resp: aiohttp.ClientResponse, *, deployment: str
) -> AsyncIterator[list[SSEEvent]]:
    """The upstream's SSE events, a batch per network read; transport errors mapped."""
    decoder = SSEDecoder()
    content = resp.content
    while True:
        try:
            piece = await content.readany()
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise transport_error(exc, deployment=deployment, phase="stall") from exc
        if not piece:
            return
        events = decoder.feed(piece)
        if events:
            yield events


def closer(resp: aiohttp.ClientResponse) -> Callable[[], Awaitable[None]]:
    """A stream's ``close``: drops the upstream connection, which is what cancels the
    upstream's generation."""

    async def close() -> None:
        resp.close()

    return close
