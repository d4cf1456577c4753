"""Small typed events that policies emit; telemetry subscribes.

The hot path never waits on a subscriber: :meth:`EventBus.emit` calls each
subscriber synchronously and a subscriber must only record (append to a bounded
buffer, bump a counter).  A subscriber that raises is counted in
:attr:`EventBus.errors` and never breaks a request.  With no subscriber, ``emit``
costs one truth test.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "AttemptEnded",
    "BreakerChanged",
    "Event",
    "EventBus",
    "FellBack",
    "Hedged",
    "Retried",
]

log = logging.getLogger("brace.events")


@dataclass(frozen=True, slots=True)
class AttemptEnded:
    """One call to one deployment ended (``error_class`` is ``None`` on success)."""

    request_id: str
    group: str
    deployment: str
    error_class: str | None
    status: int | None
    duration: float
    hedge: bool = False


@dataclass(frozen=True, slots=True)
class Retried:
    request_id: str
    group: str
    deployment: str
    error_class: str
    delay: float
    attempt: int


@dataclass(frozen=True, slots=True)
class FellBack:
    request_id: str
    from_group: str
    to_group: str
    error_class: str


@dataclass(frozen=True, slots=True)
class Hedged:
    request_id: str
    group: str
    after: float


@dataclass(frozen=True, slots=True)
class BreakerChanged:
    deployment: str
    old: str
    new: str
    open_for: float | None = None


Event = Any
"""Any of the dataclasses above, or :class:`brace.telemetry.record.RequestEnded`."""


class EventBus:
    __slots__ = ("_kinds", "_subscribers", "_wanted", "errors")

    def __init__(self) -> None:
        self._subscribers: list[Callable[[Event], None]] = []
        self._kinds: list[frozenset[type] | None] = []
        self._wanted: frozenset[type] | None = frozenset()
        """The kinds some subscriber takes (``None``: every kind); kept by (un)subscribe."""
        self.errors = 0

    @property
    def active(self) -> bool:
        """Has the bus any subscriber?  Emitters may skip building an event if not."""
        return bool(self._subscribers)

    def wants(self, kind: type) -> bool:
        """Does any subscriber take events of ``kind``?  (Skip building them if not.)"""
        wanted = self._wanted
        return wanted is None or kind in wanted

    def _update_wanted(self) -> None:
        kinds = self._kinds
        if any(k is None for k in kinds):
            self._wanted = None
        else:
            self._wanted = frozenset(kind for ks in kinds if ks is not None for kind in ks)

    def subscribe(
        self, fn: Callable[[Event], None], kinds: frozenset[type] | None = None
    ) -> Callable[[], None]:
        """Add a subscriber (for every event, or only ``kinds``); returns a function
        that removes it."""
        self._subscribers.append(fn)
        self._kinds.append(kinds)
        self._update_wanted()

        def unsubscribe() -> None:
            i = self._subscribers.index(fn)
            del self._subscribers[i]
            del self._kinds[i]
            self._update_wanted()

        return unsubscribe

    def emit(self, event: Event) -> None:
        if not self._subscribers:
            return
        kind = type(event)
        for fn, kinds in zip(self._subscribers, self._kinds, strict=True):
            if kinds is not None and kind not in kinds:
                continue
            try:
                fn(event)
            except Exception:  # a broken subscriber must never break a request
                self.errors += 1
                if self.errors <= 10:
                    log.exception("event subscriber %r failed", fn)
