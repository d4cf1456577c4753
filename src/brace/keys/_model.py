"""What a virtual key is: its record, its budgets, and the admin API's input.

A key is ``sk-brace-`` followed by 43 URL-safe characters (256 random bits).  Only
its SHA-256 is stored; the plaintext is returned once, by the call that creates it.
A 256-bit random secret needs no slow password hash: nobody can brute-force it, and
a fast hash keeps authentication a dictionary lookup.
"""

from __future__ import annotations

import calendar
import hashlib
import math
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "KEY_PREFIX",
    "Budget",
    "BudgetSpec",
    "KeyCreate",
    "KeyUpdate",
    "TeamUpdate",
    "VirtualKey",
    "hash_key",
    "new_key",
    "period_id",
    "period_reset",
]

KEY_PREFIX = "sk-brace-"
Period = Literal["day", "month", "total"]
Mode = Literal["hard", "soft"]
Priority = Literal["interactive", "batch"]


def new_key() -> tuple[str, str, str]:
    """A fresh key: (id, plaintext, its hash)."""
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
    return "key_" + secrets.token_hex(8), plaintext, hash_key(plaintext)


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def period_id(period: str, now: float) -> str:
    """The id of the period ``now`` (epoch seconds) falls in: ``total``,
    ``day:2026-11-26`` or ``month:2026-11`` (UTC)."""
    if period == "total":
        return "total"
    t = time.gmtime(now)
    if period == "day":
        return f"day:{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}"
    return f"month:{t.tm_year:04d}-{t.tm_mon:02d}"


def period_reset(period: str, now: float) -> float | None:
    """When the period ``now`` falls in ends (epoch seconds); ``None`` for ``total``."""
    if period == "total":
        return None
    t = time.gmtime(now)
    if period == "day":
        start = calendar.timegm((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0))
        return float(start + 86_400)
    year, month = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
    return float(calendar.timegm((year, month, 1, 0, 0, 0)))


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Budget:
    """A spending limit in USD over a period; ``hard`` refuses, ``soft`` alerts."""

    period: Period
    limit_usd: float
    mode: Mode = "hard"

    def to_dict(self) -> dict[str, Any]:
        return {"period": self.period, "limit_usd": self.limit_usd, "mode": self.mode}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Budget:
        return cls(period=d["period"], limit_usd=float(d["limit_usd"]), mode=d.get("mode", "hard"))


@dataclass(frozen=True, slots=True)
class VirtualKey:
    """One key's record (never its plaintext)."""

    id: str
    key_hash: str
    prefix: str
    name: str
    team: str | None = None
    models: frozenset[str] | None = None
    """``None``: every model group."""
    rpm: int | None = None
    tpm: int | None = None
    priority: Priority | None = None
    budgets: tuple[Budget, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0
    expires_at: float | None = None
    revoked_at: float | None = None

    @property
    def scope(self) -> str:
        """Its budget scope in the spend ledger."""
        return f"key:{self.id}"

    def state(self, now: float) -> Literal["active", "expired", "revoked"]:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return "active"

    def allows(self, model: str) -> bool:
        return self.models is None or model in self.models

    def public(self, now: float) -> dict[str, Any]:
        """The key as the admin API shows it: no hash, no plaintext."""
        return {
            "id": self.id,
            "object": "brace.key",
            "prefix": self.prefix,
            "name": self.name,
            "team": self.team,
            "models": sorted(self.models) if self.models is not None else None,
            "rpm": self.rpm,
            "tpm": self.tpm,
            "priority": self.priority,
            "budgets": [b.to_dict() for b in self.budgets],
            "metadata": self.metadata,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "expires_at": iso(self.expires_at),
            "revoked_at": iso(self.revoked_at),
            "state": self.state(now),
        }


# ----------------------------------------------------------------------------- admin input


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BudgetSpec(_Input):
    period: Period
    limit_usd: float = Field(ge=0, allow_inf_nan=False)
    mode: Mode = "hard"

    def build(self) -> Budget:
        return Budget(self.period, self.limit_usd, self.mode)


def _check_budgets(v: list[BudgetSpec] | None) -> list[BudgetSpec] | None:
    if v is not None:
        seen = [b.period for b in v]
        if len(seen) != len(set(seen)):
            raise ValueError("one budget per period (day, month, total)")
    return v


def parse_expiry(value: float | str | None, *, now: float) -> float | None:
    """``expires_at`` as epoch seconds or an ISO 8601 time (UTC unless it says)."""
    if value is None:
        return None
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError("expires_at must be finite")
        return float(value)
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"expires_at: {value[:40]!r} is neither epoch seconds nor an ISO 8601 time "
            "such as 2026-12-31T00:00:00Z"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


class _KeyFields(_Input):
    team: str | None = Field(default=None, min_length=1, max_length=128)
    models: list[str] | None = None
    rpm: int | None = Field(default=None, gt=0)
    tpm: int | None = Field(default=None, gt=0)
    priority: Priority | None = None
    budgets: list[BudgetSpec] | None = None
    metadata: dict[str, str] | None = None
    expires_at: float | str | None = None
    """Epoch seconds or ISO 8601."""
    expires_in: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    """Seconds from now (instead of ``expires_at``)."""

    _budgets = field_validator("budgets")(_check_budgets)

    def expiry(self, now: float) -> float | None:
        if self.expires_in is not None:
            if self.expires_at is not None:
                raise ValueError("give expires_at or expires_in, not both")
            return now + self.expires_in
        return parse_expiry(self.expires_at, now=now)


class KeyCreate(_KeyFields):
    """``POST /admin/keys``."""

    name: str = Field(min_length=1, max_length=128)


class KeyUpdate(_KeyFields):
    """``PATCH /admin/keys/{id}``: only the fields given change (``null`` clears one)."""

    name: str | None = Field(default=None, min_length=1, max_length=128)


class TeamUpdate(_Input):
    """``PUT /admin/teams/{team}``."""

    budgets: list[BudgetSpec]

    _budgets = field_validator("budgets")(_check_budgets)
