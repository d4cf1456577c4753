"""app.js's number formats, in Python: the tests compare what the page shows with the
admin API's numbers formatted the same way."""

from __future__ import annotations

import math

__all__ = ["fmt_int", "fmt_sec", "fmt_usd"]


def fmt_usd(v: float) -> str:
    """app.js's ``fmtUsd``."""
    if v == 0:
        return "$0"
    a = abs(v)
    if a >= 100:
        return f"${math.floor(v + 0.5):,}"
    if a >= 1:
        return f"${v:.2f}"
    if a >= 0.01:
        return f"${v:.3f}"
    return f"${v:.{1 - math.floor(math.log10(a))}f}"  # toPrecision(2)


def _trim(n: float) -> str:
    """app.js's ``trim``: 2, 1 or 0 decimals by size, without trailing zeros."""
    a = abs(n)
    text = f"{n:.{0 if a >= 100 else 1 if a >= 10 else 2}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def fmt_sec(sec: float) -> str:
    """app.js's ``fmtSec`` (``fmtMs`` of the milliseconds)."""
    ms = sec * 1000
    if ms >= 10000:
        return _trim(ms / 1000) + " s"
    if ms >= 1000:
        return f"{ms / 1000:.2f} s"
    if ms >= 10:
        return f"{math.floor(ms + 0.5)} ms"
    return _trim(ms) + " ms"


def fmt_int(n: float) -> str:
    """app.js's ``fmtInt``."""
    return f"{math.floor(n + 0.5):,}"
