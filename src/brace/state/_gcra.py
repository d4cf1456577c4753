"""GCRA over two dimensions, as pure arithmetic on theoretical arrival times (TATs).

For a rate of ``r`` units per second the emission interval is ``T = 1 / r``; the
tolerance ``tau`` is ``max(burst_seconds, T)``.  A cost of ``c`` units conforms at
time ``s`` when ``max(tat, s) + min(c·T, tau) - tau <= s``, and booking it moves the
TAT to ``max(tat, s) + c·T``.  The ``min`` is what keeps an oversized cost (more
than the whole burst) grantable: it waits until the bucket is full, goes, and the
callers behind it pay the debt.

The Lua scripts in :mod:`._scripts` are the same arithmetic on Redis server time;
keep the two in step.
"""

from __future__ import annotations

import math

__all__ = [
    "EPSILON",
    "MAX_WAIT_CAP",
    "Intervals",
    "book",
    "check_wait",
    "intervals",
    "spent",
    "start_at",
]

EPSILON = 1e-9
"""Slack for float noise when a wait is compared with ``max_wait``."""

MAX_WAIT_CAP = 1e12
"""``max_wait`` is capped to a finite number (seconds) before it reaches a script."""

Intervals = tuple[float, float, float, float]
"""(request interval, request tau, token interval, token tau); an interval of 0 is unlimited."""


def intervals(rpm: float | None, tpm: float | None, burst_seconds: float) -> Intervals:
    ri = 60.0 / rpm if rpm else 0.0
    ti = 60.0 / tpm if tpm else 0.0
    return ri, max(burst_seconds, ri), ti, max(burst_seconds, ti)


def start_at(
    now: float, tat_r: float, tat_t: float, blocked: float, iv: Intervals, tokens: int
) -> float:
    """The earliest time (≥ now) one request and ``tokens`` tokens both conform."""
    ri, rtau, ti, ttau = iv
    start = max(now, blocked)
    if ri > 0:
        start = max(start, max(tat_r, now) + ri - rtau)
    if ti > 0 and tokens > 0:
        start = max(start, max(tat_t, now) + min(tokens * ti, ttau) - ttau)
    return start


def book(
    start: float, tat_r: float, tat_t: float, iv: Intervals, tokens: int
) -> tuple[float, float]:
    """The TATs after booking a reservation that starts at ``start``."""
    ri, _, ti, _ = iv
    if ri > 0:
        tat_r = max(tat_r, start) + ri
    if ti > 0 and tokens > 0:
        tat_t = max(tat_t, start) + tokens * ti
    return tat_r, tat_t


def check_wait(max_wait: float, tokens: int) -> float:
    """Validate a reservation's arguments; return ``max_wait`` made finite."""
    if tokens < 0:
        raise ValueError(f"tokens must be >= 0, not {tokens!r}")
    if math.isnan(max_wait):
        raise ValueError("max_wait must be a number")
    return min(max(max_wait, 0.0), MAX_WAIT_CAP)


def spent(
    now: float,
    tat_r: float,
    tat_t: float,
    iv: Intervals,
    requests_left: int | None,
    tokens_left: int | None,
) -> tuple[float, float]:
    """The TATs once the upstream has said how much is left: at most ``requests_left``
    requests and ``tokens_left`` tokens may start now (``None``: not said).  TATs only
    move forward: a bucket already emptier than that stays as it is."""
    ri, rtau, ti, ttau = iv
    if ri > 0 and requests_left is not None:
        tat_r = max(tat_r, now + rtau - max(0, requests_left) * ri)
    if ti > 0 and tokens_left is not None:
        tat_t = max(tat_t, now + ttau - max(0, tokens_left) * ti)
    return tat_r, tat_t
