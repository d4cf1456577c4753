"""Time, injected.

Every policy that waits, measures or times out takes a :class:`Clock`, so that
backoff, breakers, budgets, deadlines and hedging are tested by advancing a fake
clock (:class:`brace.testing.FakeClock`), never by sleeping.

``timeout(delay)`` is an async context manager that raises :class:`TimeoutError`
when ``delay`` seconds pass before the block ends (``None``: no limit); the object
it yields can :meth:`~TimeoutHandle.reset` the limit relative to now, which is how
a stream's stall timer restarts at every chunk.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Protocol

__all__ = ["Clock", "SystemClock", "TimeoutHandle"]


class TimeoutHandle(Protocol):
    def reset(self, delay: float | None) -> None:
        """Expire ``delay`` seconds from now instead (``None``: never)."""
        ...

    def expired(self) -> bool: ...


class Clock(Protocol):
    def now(self) -> float:
        """Monotonic seconds."""
        ...

    async def sleep(self, seconds: float) -> None: ...

    def timeout(self, delay: float | None) -> AbstractAsyncContextManager[TimeoutHandle]: ...


class _AsyncioTimeout:
    __slots__ = ("_cm", "_loop")

    def __init__(self, delay: float | None) -> None:
        self._cm = asyncio.timeout(delay)
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __aenter__(self) -> _AsyncioTimeout:
        self._loop = asyncio.get_running_loop()
        await self._cm.__aenter__()
        return self

    async def __aexit__(
        self,
        et: type[BaseException] | None,
        e: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._cm.__aexit__(et, e, tb)

    def reset(self, delay: float | None) -> None:
        assert self._loop is not None
        self._cm.reschedule(None if delay is None else self._loop.time() + delay)

    def expired(self) -> bool:
        return self._cm.expired()


class SystemClock:
    """The real clock: ``time.monotonic``, ``asyncio.sleep``, ``asyncio.timeout``."""

    __slots__ = ()

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def timeout(self, delay: float | None) -> AbstractAsyncContextManager[TimeoutHandle]:
        return _AsyncioTimeout(delay)
