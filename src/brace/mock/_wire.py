"""Transport-neutral responses: a complete :class:`Reply` or a :class:`Streamer`.

The endpoint logic returns one of these; a transport (the aiohttp app or the fast server)
delivers it through a :class:`Sink`. Streamers own the timing faults (stall, truncate, hang,
reset) so both transports behave the same.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Protocol

__all__ = [
    "Abort",
    "Hang",
    "PartialBody",
    "Reply",
    "Sink",
    "SseStream",
    "Streamer",
    "pause",
]

_POLL_SECONDS = 0.25


class Reply:
    """A complete response: status, headers (including Content-Type) and body bytes."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


class Sink(Protocol):
    """What a transport offers a streamer."""

    @property
    def closed(self) -> bool: ...

    async def start(
        self, status: int, headers: Mapping[str, str], content_length: int | None
    ) -> None: ...

    async def write(self, data: bytes) -> None: ...

    async def end(self) -> None: ...

    async def finish(self, data: bytes) -> None:
        """Write ``data`` and end the body (one write where the transport allows)."""
        ...

    def abort(self) -> None: ...


class Streamer(ABC):
    """A response written over time; ``status`` is 0 when no status line is ever sent."""

    status: int = 200

    @abstractmethod
    async def run(self, sink: Sink) -> None: ...


async def pause(seconds: float, sink: Sink, stopping: Callable[[], bool]) -> bool:
    """Sleep up to ``seconds``; wake early if the client left or the app stops.

    Returns True if the full time elapsed.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        left = deadline - loop.time()
        if left <= 0:
            return True
        if sink.closed or stopping():
            return False
        await asyncio.sleep(min(left, _POLL_SECONDS))


class Abort(Streamer):
    """Connection reset: drop the connection without any response."""

    status = 0

    async def run(self, sink: Sink) -> None:
        sink.abort()


class Hang(Streamer):
    """Accept the request, say nothing for ``seconds``, then drop the connection."""

    status = 0

    def __init__(self, seconds: float, stopping: Callable[[], bool]) -> None:
        self._seconds = seconds
        self._stopping = stopping

    async def run(self, sink: Sink) -> None:
        await pause(self._seconds, sink, self._stopping)
        sink.abort()


class PartialBody(Streamer):
    """A 200 body that stalls halfway (``stall``) or is cut short (``truncate``)."""

    def __init__(
        self,
        headers: dict[str, str],
        body: bytes,
        fault: str,
        stall_seconds: float,
        stopping: Callable[[], bool],
    ) -> None:
        self._headers = headers
        self._body = body
        self._fault = fault
        self._stall = stall_seconds
        self._stopping = stopping

    async def run(self, sink: Sink) -> None:
        body = self._body
        half = len(body) // 2
        try:
            await sink.start(200, self._headers, len(body))
            await sink.write(body[:half])
            if self._fault == "truncate":
                sink.abort()
                return
            if not await pause(self._stall, sink, self._stopping) and sink.closed:
                return
            await sink.finish(body[half:])
        except ConnectionError:
            return


class SseStream(Streamer):
    """Server-sent events written as ``len(groups)`` chunks.

    ``fault`` hits after half the chunks: ``stall`` pauses, ``truncate`` ends the body
    cleanly without the terminal events, ``malformed`` inserts ``broken`` (an invalid line).
    """

    def __init__(
        self,
        headers: dict[str, str],
        groups: list[bytes],
        delays: list[float] | None,
        fault: str | None,
        broken: bytes,
        stall_seconds: float,
        stopping: Callable[[], bool],
        on_complete: Callable[[], None],
    ) -> None:
        self._headers = headers
        self._groups = groups
        self._delays = delays
        self._fault = fault
        self._broken = broken
        self._stall = stall_seconds
        self._stopping = stopping
        self._on_complete = on_complete

    async def run(self, sink: Sink) -> None:
        try:
            await sink.start(200, self._headers, None)
            if self._fault is None and self._delays is None:
                await sink.finish(b"".join(self._groups))
            elif await self._paced(sink):
                await sink.end()
            else:
                return
        except ConnectionError:
            return
        self._on_complete()

    async def _paced(self, sink: Sink) -> bool:
        groups, delays, fault = self._groups, self._delays, self._fault
        at = len(groups) // 2
        for i, group in enumerate(groups):
            if i == at and fault is not None:
                if fault == "truncate":
                    await sink.end()
                    return False
                if fault == "malformed":
                    await sink.write(self._broken)
                elif fault == "stall":
                    await pause(self._stall, sink, self._stopping)
                    if sink.closed:
                        return False
            if delays is not None and i > 0 and delays[i] > 0:
                await asyncio.sleep(delays[i])
            await sink.write(group)
        return True
