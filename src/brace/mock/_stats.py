"""Counters served by ``GET /_mock/stats``. Plain ints and dicts: cheap on the hot path."""

from __future__ import annotations

from typing import Any

__all__ = ["Stats"]


class Stats:
    """Counts inference requests (control endpoints and /healthz are not counted)."""

    __slots__ = (
        "by_endpoint",
        "by_status",
        "faults",
        "rate_limited",
        "streams_completed",
        "streams_started",
        "tokens_in",
        "tokens_out",
        "total",
    )

    def __init__(self) -> None:
        self.total = 0
        self.by_endpoint: dict[str, int] = {}
        self.by_status: dict[str, int] = {}
        self.faults: dict[str, int] = {}
        self.rate_limited = 0
        self.streams_started = 0
        self.streams_completed = 0
        self.tokens_in = 0
        self.tokens_out = 0

    def request(self, endpoint: str) -> None:
        self.total += 1
        self.by_endpoint[endpoint] = self.by_endpoint.get(endpoint, 0) + 1

    def status(self, status: int) -> None:
        key = str(status)
        self.by_status[key] = self.by_status.get(key, 0) + 1

    def fault(self, kind: str) -> None:
        self.faults[kind] = self.faults.get(kind, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "total_requests": self.total,
            "by_endpoint": dict(self.by_endpoint),
            "by_status": dict(self.by_status),
            "faults": dict(self.faults),
            "rate_limited": self.rate_limited,
            "streams_started": self.streams_started,
            "streams_completed": self.streams_completed,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
        }
