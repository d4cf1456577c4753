"""Fallback chains between model groups, by error class, under one deadline.

When a group fails (after its own retries), its ``fallbacks`` rules are tried in
order: a rule whose ``on`` classes include the failure's class sends the request to
the rule's target group — to that group's core stack (retry, hedge, balance), not to
its own fallbacks: chains are explicit, listed on the group that starts them, and
bounded by ``max_fallbacks`` hops.  Typical rules: context window exceeded → a
larger-context group; content filtered → another provider; ``unavailable``
(rate limited, overloaded, down) → the next group.

The deadline covers every hop: no hop starts once it has passed.  The response
records the hop in ``request.state.fallback`` (the gateway's ``x-brace-fallback``
header); when everything fails, :class:`~brace.errors.AttemptsExhausted` names every
attempt of every group and its cause.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..clock import Clock
from ..config import FallbackRule
from ..errors import AttemptsExhausted, NoCapacity, UpstreamFailure
from ..events import EventBus, FellBack
from ..stack import Handler, Request, Response, StreamResponse

__all__ = ["FallbackPolicy"]


def _flatten(exc: UpstreamFailure) -> list[UpstreamFailure]:
    return list(exc.failures) if isinstance(exc, AttemptsExhausted) else [exc]


class FallbackPolicy:
    def __init__(
        self,
        group: str,
        rules: Sequence[FallbackRule],
        targets: Mapping[str, Handler],
        *,
        max_hops: int,
        clock: Clock,
        events: EventBus,
        spill: bool = False,
    ) -> None:
        self._group = group
        self._rules = [(r.to, r.classes) for r in rules]
        self._spill = [r.to for r in rules if "rate_limited" in r.classes] if spill else []
        self._targets = targets
        self._max_hops = max_hops
        self._clock = clock
        self._events = events

    def wrap(self, inner: Handler) -> Handler:
        if not self._rules or self._max_hops == 0:
            return inner

        async def fallback(req: Request) -> Response | StreamResponse:
            try:
                return await inner(req)
            except UpstreamFailure as first:
                exc = first
            except NoCapacity as none_now:
                return await self._spill_over(req, none_now)
            failures = _flatten(exc)
            hops: list[str] = [self._group]
            for to, classes in self._rules:
                if len(hops) > self._max_hops:
                    break
                if exc.error_class not in classes:
                    continue
                if req.deadline is not None and self._clock.now() >= req.deadline:
                    break
                self._events.emit(FellBack(req.request_id, hops[-1], to, exc.error_class))
                hops.append(to)
                req.state.fallback = hops.copy()
                req.state.exclude = None
                try:
                    return await self._targets[to](req)
                except UpstreamFailure as nxt:
                    exc = nxt
                    failures.extend(_flatten(nxt))
            if len(failures) == 1:
                raise failures[0]
            raise AttemptsExhausted(failures)

        return fallback

    async def _spill_over(self, req: Request, none_now: NoCapacity) -> Response | StreamResponse:
        """No capacity now in this group: a rate-limit fallback group that has some
        takes the request; else the admission queue waits for this group."""
        waits = [none_now.wait]
        for to in self._spill[: self._max_hops]:
            req.state.exclude = None
            try:
                result = await self._targets[to](req)
            except NoCapacity as nc:
                waits.append(nc.wait)
                continue
            except UpstreamFailure:
                continue  # the request waits for its own group instead
            self._events.emit(FellBack(req.request_id, self._group, to, "no_capacity"))
            req.state.fallback = [self._group, to]
            return result
        known = [w for w in waits if w is not None]
        raise NoCapacity(none_now.message, wait=min(known) if known else None)
