"""Read an upstream's rate-limit headers (OpenAI's and Anthropic's).

OpenAI: ``x-ratelimit-limit-requests``, ``x-ratelimit-remaining-requests``,
``x-ratelimit-reset-requests`` (a Go duration: ``1s``, ``6m0s``, ``120ms``) and the
same for ``-tokens``.  Anthropic: ``anthropic-ratelimit-requests-limit``,
``-remaining`` and ``-reset`` (an RFC 3339 time), and the same for ``tokens``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

__all__ = ["RateLimitInfo", "parse_duration", "parse_ratelimit_headers"]

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


@dataclass(frozen=True, slots=True)
class RateLimitInfo:
    requests_limit: int | None = None
    tokens_limit: int | None = None
    requests_remaining: int | None = None
    tokens_remaining: int | None = None
    requests_reset: float | None = None
    """Seconds until the requests bucket is full again."""
    tokens_reset: float | None = None


def parse_duration(value: str) -> float | None:
    """``"6m0s"`` → 360.0, ``"120ms"`` → 0.12, ``"1.5s"`` → 1.5; ``None`` if unreadable."""
    value = value.strip()
    if not value:
        return None
    total, pos = 0.0, 0
    for match in _DURATION.finditer(value):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(value):
        try:
            return float(value)
        except ValueError:
            return None
    return total


def _int(headers: Mapping[str, str], name: str) -> int | None:
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        return int(float(raw))
    except ValueError:
        return None


def _until(raw: str | None, now_epoch: float) -> float | None:
    if raw is None:
        return None
    try:
        when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return parse_duration(raw)
    return max(0.0, when.timestamp() - now_epoch)


def parse_ratelimit_headers(
    headers: Mapping[str, str], *, now_epoch: float
) -> RateLimitInfo | None:
    """What the headers say, or ``None`` when they carry no rate-limit information."""
    if "x-ratelimit-limit-requests" in headers or "x-ratelimit-limit-tokens" in headers:
        reset_r = headers.get("x-ratelimit-reset-requests")
        reset_t = headers.get("x-ratelimit-reset-tokens")
        return RateLimitInfo(
            requests_limit=_int(headers, "x-ratelimit-limit-requests"),
            tokens_limit=_int(headers, "x-ratelimit-limit-tokens"),
            requests_remaining=_int(headers, "x-ratelimit-remaining-requests"),
            tokens_remaining=_int(headers, "x-ratelimit-remaining-tokens"),
            requests_reset=parse_duration(reset_r) if reset_r else None,
            tokens_reset=parse_duration(reset_t) if reset_t else None,
        )
    if (
        "anthropic-ratelimit-requests-limit" in headers
        or "anthropic-ratelimit-tokens-limit" in headers
    ):
        return RateLimitInfo(
            requests_limit=_int(headers, "anthropic-ratelimit-requests-limit"),
            tokens_limit=_int(headers, "anthropic-ratelimit-tokens-limit"),
            requests_remaining=_int(headers, "anthropic-ratelimit-requests-remaining"),
            tokens_remaining=_int(headers, "anthropic-ratelimit-tokens-remaining"),
            requests_reset=_until(headers.get("anthropic-ratelimit-requests-reset"), now_epoch),
            tokens_reset=_until(headers.get("anthropic-ratelimit-tokens-reset"), now_epoch),
        )
    return None
