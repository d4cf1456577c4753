"""The values and the one interface every limiter backend shares."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Protocol

__all__ = ["Learned", "LimiterBackend", "Limits", "Reservation", "Status"]

Status = Literal["local", "shared", "degraded"]
"""``local``: in-process only; ``shared``: answered by Redis; ``degraded``: Redis is
configured but failing, so each instance paces its share locally."""


@dataclass(frozen=True, slots=True)
class Limits:
    """A deployment's rate limits: requests and tokens per minute (``None``: unlimited).

    ``burst_seconds`` is how many seconds of refill may be spent at once: a burst of
    ``burst_seconds × rate`` units is granted without waiting.  It never counts for
    less than one unit's emission interval (``60 / rpm`` for requests, ``60 / tpm``
    for tokens), so one request always fits in the request bucket.
    """

    rpm: float | None
    tpm: float | None
    burst_seconds: float

    def __post_init__(self) -> None:
        for name in ("rpm", "tpm"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"Limits.{name} must be a positive number or None, not {value!r}")
        if not (math.isfinite(self.burst_seconds) and self.burst_seconds > 0):
            raise ValueError(f"Limits.burst_seconds must be positive, not {self.burst_seconds!r}")

    def bucket(self) -> tuple[float | None, float | None]:
        """How many requests and tokens a full bucket holds (``None``: unlimited)."""
        rpm, tpm = self.rpm, self.tpm
        return (
            None if rpm is None else max(self.burst_seconds * rpm / 60.0, 1.0),
            None if tpm is None else max(self.burst_seconds * tpm / 60.0, 1.0),
        )

    def divided(self, n: int) -> Limits:
        """This instance's share when ``n`` instances pace the same deployment alone."""
        if n <= 1:
            return self
        return Limits(
            rpm=None if self.rpm is None else self.rpm / n,
            tpm=None if self.tpm is None else self.tpm / n,
            burst_seconds=self.burst_seconds,
        )


@dataclass(frozen=True, slots=True)
class Reservation:
    """The answer to :meth:`LimiterBackend.reserve`.

    ``granted``: the slot is booked and the caller may start after ``wait`` seconds.
    Not granted: nothing was booked and ``wait`` is the honest time until a
    reservation of that size would start (a retry-after).  ``tokens`` is the token
    cost that was booked (settle it later with :meth:`LimiterBackend.adjust`);
    ``source`` says which state answered.
    """

    granted: bool
    wait: float
    tokens: int = 0
    source: Status = "local"


@dataclass(frozen=True, slots=True)
class Learned:
    """Limits learned from rate-limit headers and 429s, shared by every instance.

    ``updated_at`` is the caller's timestamp, stored as given; it is shared between
    hosts, so use wall-clock seconds (``time.time()``), not a monotonic clock."""

    rpm: float | None
    tpm: float | None
    updated_at: float


class LimiterBackend(Protocol):
    """Per-key GCRA reservations over two dimensions (requests, tokens).

    Keys are logical (a deployment id); a backend adds its own prefix.
    """

    @property
    def status(self) -> Status: ...

    async def start(self) -> None:
        """Connect and start background work (a no-op for the local backend)."""
        ...

    async def aclose(self) -> None: ...

    async def reserve(
        self, key: str, limits: Limits, tokens: int = 0, *, max_wait: float
    ) -> Reservation:
        """Book one request and ``tokens`` tokens at the earliest time both conform,
        if that is at most ``max_wait`` seconds away; otherwise book nothing."""
        ...

    async def adjust(self, key: str, limits: Limits, token_delta: int) -> None:
        """Settle a reservation with the real usage (negative: refund)."""
        ...

    async def block(self, key: str, seconds: float) -> None:
        """No reservation for ``key`` may start before ``seconds`` from now."""
        ...

    async def spent(
        self, key: str, limits: Limits, requests_left: int | None, tokens_left: int | None
    ) -> None:
        """The upstream says only this much is left now (rate-limit headers): no more
        than ``requests_left`` requests and ``tokens_left`` tokens may start at once."""
        ...

    async def peek(self, key: str, limits: Limits, tokens: int = 0) -> float:
        """The wait a reservation would get now, without booking anything."""
        ...

    async def get_learned(self, key: str) -> Learned | None: ...

    async def set_learned(self, key: str, learned: Learned) -> None: ...

    def describe(self) -> dict[str, Any]:
        """A small JSON-able summary for metrics and the admin API (never a secret)."""
        ...
