"""The in-process limiter: the embedded default, and the fallback of the Redis one."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from ..clock import Clock
from . import _gcra
from ._types import Learned, Limits, Reservation, Status

__all__ = ["LocalLimiter"]

_NEVER = float("-inf")
_SWEEP_PER_CALL = 8


class _Cell:
    __slots__ = ("blocked", "r", "t", "touched")

    def __init__(self, now: float) -> None:
        self.r = _NEVER
        self.t = _NEVER
        self.blocked = _NEVER
        self.touched = now

    def neutral(self, now: float) -> bool:
        """Forgetting this cell changes no answer (every TAT is in the past)."""
        return max(self.r, self.t, self.blocked) <= now


class LocalLimiter:
    """GCRA reservations in plain dicts, timed by the injected clock. O(1) per call.

    Bounded: keys are kept in least-recently-used order; a few of the oldest are
    dropped lazily on each new key once idle for ``idle_seconds`` with every TAT in
    the past (which loses nothing), and the oldest is dropped outright past
    ``max_keys`` (counted in ``evicted``).  Learned limits are capped at
    ``max_keys`` too.
    """

    def __init__(
        self, clock: Clock, *, max_keys: int = 10_000, idle_seconds: float = 600.0
    ) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be >= 1")
        self._clock = clock
        self._max_keys = max_keys
        self._idle = idle_seconds
        self._cells: OrderedDict[str, _Cell] = OrderedDict()
        self._learned: OrderedDict[str, Learned] = OrderedDict()
        self.evicted = 0

    # -- the LimiterBackend protocol

    @property
    def status(self) -> Status:
        return "local"

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    async def reserve(
        self, key: str, limits: Limits, tokens: int = 0, *, max_wait: float
    ) -> Reservation:
        return self.reserve_now(key, limits, tokens, max_wait=max_wait)

    async def adjust(self, key: str, limits: Limits, token_delta: int) -> None:
        self.adjust_now(key, limits, token_delta)

    async def block(self, key: str, seconds: float) -> None:
        self.block_now(key, seconds)

    async def peek(self, key: str, limits: Limits, tokens: int = 0) -> float:
        return self.peek_now(key, limits, tokens)

    async def spent(
        self, key: str, limits: Limits, requests_left: int | None, tokens_left: int | None
    ) -> None:
        self.spent_now(key, limits, requests_left, tokens_left)

    async def get_learned(self, key: str) -> Learned | None:
        return self.learned_now(key)

    async def set_learned(self, key: str, learned: Learned) -> None:
        self.set_learned_now(key, learned)

    def describe(self) -> dict[str, Any]:
        return {
            "backend": "local",
            "mode": "local",
            "keys": len(self._cells),
            "max_keys": self._max_keys,
            "evicted": self.evicted,
            "learned": len(self._learned),
        }

    # -- synchronous core (also used by RedisLimiter while degraded)

    def reserve_now(
        self,
        key: str,
        limits: Limits,
        tokens: int = 0,
        *,
        max_wait: float,
        source: Status = "local",
    ) -> Reservation:
        max_wait = _gcra.check_wait(max_wait, tokens)
        now = self._clock.now()
        iv = _gcra.intervals(limits.rpm, limits.tpm, limits.burst_seconds)
        cell = self._cells.get(key)
        if cell is None:
            r = t = blocked = _NEVER
        else:
            r, t, blocked = cell.r, cell.t, cell.blocked
        start = _gcra.start_at(now, r, t, blocked, iv, tokens)
        wait = start - now
        if wait > max_wait + _gcra.EPSILON:
            return Reservation(granted=False, wait=wait, source=source)
        cell = self._cell(key, now)
        cell.r, cell.t = _gcra.book(start, cell.r, cell.t, iv, tokens)
        return Reservation(granted=True, wait=wait, tokens=tokens, source=source)

    def peek_now(self, key: str, limits: Limits, tokens: int = 0) -> float:
        _gcra.check_wait(0.0, tokens)
        now = self._clock.now()
        cell = self._cells.get(key)
        if cell is None:
            return 0.0
        iv = _gcra.intervals(limits.rpm, limits.tpm, limits.burst_seconds)
        return _gcra.start_at(now, cell.r, cell.t, cell.blocked, iv, tokens) - now

    def adjust_now(self, key: str, limits: Limits, token_delta: int) -> None:
        if limits.tpm is None or token_delta == 0:
            return
        now = self._clock.now()
        ti = 60.0 / limits.tpm
        if token_delta < 0:
            cell = self._cells.get(key)
            if cell is not None and cell.t > now:
                cell.t = max(cell.t + token_delta * ti, now)
            return
        cell = self._cell(key, now)
        cell.t = max(cell.t, now) + token_delta * ti

    def drain_now(self, key: str, limits: Limits) -> None:
        """Start ``key`` with an empty bucket: no burst, the next reservation waits one
        emission interval (used when an instance falls back to its local share)."""
        now = self._clock.now()
        _, rtau, _, ttau = _gcra.intervals(limits.rpm, limits.tpm, limits.burst_seconds)
        cell = self._cell(key, now)
        if limits.rpm:
            cell.r = max(cell.r, now + rtau)
        if limits.tpm:
            cell.t = max(cell.t, now + ttau)

    def spent_now(
        self, key: str, limits: Limits, requests_left: int | None, tokens_left: int | None
    ) -> None:
        if requests_left is None and tokens_left is None:
            return
        now = self._clock.now()
        iv = _gcra.intervals(limits.rpm, limits.tpm, limits.burst_seconds)
        cell = self._cell(key, now)
        cell.r, cell.t = _gcra.spent(now, cell.r, cell.t, iv, requests_left, tokens_left)

    def block_now(self, key: str, seconds: float) -> None:
        if not seconds > 0:
            return
        now = self._clock.now()
        until = now + seconds
        cell = self._cell(key, now)
        cell.blocked = max(cell.blocked, until)
        cell.r = max(cell.r, until)
        cell.t = max(cell.t, until)

    def learned_now(self, key: str) -> Learned | None:
        return self._learned.get(key)

    def set_learned_now(self, key: str, learned: Learned) -> None:
        self._learned[key] = learned
        self._learned.move_to_end(key)
        if len(self._learned) > self._max_keys:
            self._learned.popitem(last=False)

    def clear(self) -> None:
        """Forget every reservation (learned limits stay)."""
        self._cells.clear()

    # -- bounds

    def __len__(self) -> int:
        return len(self._cells)

    def _cell(self, key: str, now: float) -> _Cell:
        cell = self._cells.get(key)
        if cell is not None:
            self._cells.move_to_end(key)
            cell.touched = now
            return cell
        self._sweep(now)
        cell = self._cells[key] = _Cell(now)
        if len(self._cells) > self._max_keys:
            self._cells.popitem(last=False)
            self.evicted += 1
        return cell

    def _sweep(self, now: float) -> None:
        cells = self._cells
        for _ in range(_SWEEP_PER_CALL):
            if not cells:
                return
            key = next(iter(cells))
            oldest = cells[key]
            if oldest.touched > now - self._idle or not oldest.neutral(now):
                return
            del cells[key]
