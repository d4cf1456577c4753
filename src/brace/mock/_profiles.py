"""Named fault profiles: partial settings layered under a :class:`MockConfig`.

A profile only sets the fields it names; ``healthy`` therefore clears injected faults but keeps
the latency and limits you configured.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

__all__ = ["PROFILES", "Profile"]


@dataclass(frozen=True, slots=True)
class Profile:
    """A named, documented set of config fields."""

    description: str
    settings: Mapping[str, object]


def _profile(description: str, **settings: object) -> Profile:
    frozen = {
        key: MappingProxyType(dict(value)) if isinstance(value, dict) else value
        for key, value in settings.items()
    }
    return Profile(description=description, settings=MappingProxyType(frozen))


PROFILES: Final[Mapping[str, Profile]] = MappingProxyType(
    {
        "healthy": _profile("No injected faults.", error_rates={}),
        "flaky": _profile(
            "Occasional failures: 10% 503, 2% 500, 1% hang, 1% stall mid-stream.",
            error_rates={"503": 0.10, "500": 0.02, "hang": 0.01, "stall": 0.01},
        ),
        "rate-limited": _profile(
            "A small quota: 60 requests and 20,000 tokens per minute.",
            rpm=60,
            tpm=20_000,
        ),
        "overloaded": _profile(
            "A provider under load: 15% 529 and 15% 503, each with retry-after: 2.",
            error_rates={"529": 0.15, "503": 0.15},
            retry_after_seconds=2.0,
        ),
        "slow": _profile(
            "Slow but correct: lognormal latency (median 800 ms, p99 5 s) and slow chunks "
            "(median 40 ms, p99 400 ms).",
            latency="lognormal(800,5000)",
            chunk_delay="lognormal(40,400)",
        ),
        "outage": _profile("Every request fails with 503.", error_rates={"503": 1.0}),
        "chaos": _profile(
            "A bit of every fault (~20% of requests) plus uniform 0-300 ms latency.",
            latency="uniform(0,300)",
            error_rates={
                "429": 0.02,
                "500": 0.02,
                "502": 0.02,
                "503": 0.03,
                "529": 0.02,
                "hang": 0.01,
                "stall": 0.02,
                "truncate": 0.02,
                "malformed": 0.02,
                "reset": 0.02,
            },
            hang_seconds=60.0,
            stall_seconds=10.0,
        ),
    }
)
