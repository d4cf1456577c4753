"""The fault kinds the mock can inject, in the fixed order the random draw walks them."""

from __future__ import annotations

from typing import Final, Literal

__all__ = ["ERROR_STATUSES", "FAULT_KINDS", "STREAM_FAULTS", "FaultKind"]

FaultKind = Literal[
    "429", "500", "502", "503", "529", "hang", "stall", "truncate", "malformed", "reset"
]

FAULT_KINDS: Final[tuple[FaultKind, ...]] = (
    "429",
    "500",
    "502",
    "503",
    "529",
    "hang",
    "stall",
    "truncate",
    "malformed",
    "reset",
)

ERROR_STATUSES: Final[dict[str, int]] = {"500": 500, "502": 502, "503": 503, "529": 529}
"""Faults answered with an error status and body (429 is handled with the rate limiter)."""

STREAM_FAULTS: Final[frozenset[str]] = frozenset({"stall", "truncate", "malformed"})
"""Faults that damage the body of a 200 response rather than replacing it."""
