"""One deadline per request, covering queueing, retries and fallbacks together.

The outermost policy of a group: it sets ``request.deadline`` (on the injected
clock) to now + the group's ``deadline`` unless the caller asked for less — the
gateway reads the ``x-brace-timeout`` header (seconds) into
``request.state.timeout``.  Every policy below reads the same deadline: the
attempt policy caps each attempt by it, retry and fallback stop when it is near.
"""

from __future__ import annotations

from collections.abc import Awaitable

from ..clock import Clock
from ..stack import Handler, Request, Response, StreamResponse

__all__ = ["DeadlinePolicy"]


class DeadlinePolicy:
    __slots__ = ("_clock", "_default")

    def __init__(self, default: float, *, clock: Clock) -> None:
        self._default = default
        self._clock = clock

    def wrap(self, inner: Handler) -> Handler:
        default = self._default
        clock = self._clock

        # a plain function returning the inner awaitable: no coroutine frame of its own
        def deadline(req: Request) -> Awaitable[Response | StreamResponse]:
            if req.deadline is None:
                asked = req.state.timeout
                budget = (  # checked: an in-process caller may set anything here
                    min(default, asked) if isinstance(asked, int | float) and asked > 0 else default
                )
                req.deadline = clock.now() + budget
            return inner(req)

        return deadline
