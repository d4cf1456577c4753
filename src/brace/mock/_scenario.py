"""Time-scripted scenarios: phases of profiles and overrides, looked up with a clock.

Syntax (commas separate phases, ``+`` joins items inside a phase)::

    healthy:10s,outage:5s,healthy          profile phases; the last one is open-ended
    503=1.0:5s                             fault overrides for 5 s, then the base config
    flaky+latency=uniform(10,50):30s,healthy
    healthy:10s,outage:2s,loop             repeat forever

An item is a profile name, a fault rate (``503=0.5``, ``hang=0.1``) or one of ``latency=``,
``chunk_delay=`` (distributions), ``rpm=``, ``tpm=``, ``agent_turns=``, ``agent_parallel=``
(integers), ``agent_tools=`` (names joined with ``|``). Durations are ``500ms``,
``10s``, ``2m``, ``1h`` or a bare number of seconds. Once a script without ``loop`` has run
out, the base config applies again.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from brace.mock._agent import MAX_PARALLEL, MAX_TURNS, tool_names
from brace.mock._distribution import parse_distribution
from brace.mock._kinds import FAULT_KINDS
from brace.mock._profiles import PROFILES

__all__ = ["Phase", "Scenario", "parse_duration", "parse_scenario"]

_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(ms|s|m|h)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_LIMIT_KEYS = frozenset({"rpm", "tpm"})
_DIST_KEYS = frozenset({"latency", "chunk_delay"})
_AGENT_BOUNDS = {"agent_turns": (0, MAX_TURNS), "agent_parallel": (1, MAX_PARALLEL)}


@dataclass(frozen=True, slots=True)
class Phase:
    """One phase: an optional profile, overrides on top of it, and a duration in seconds."""

    profile: str | None
    error_rates: Mapping[str, float]
    settings: Mapping[str, object]
    duration: float | None  # None: open-ended (last phase only)
    label: str


@dataclass(frozen=True, slots=True)
class Scenario:
    """Parsed phases; :meth:`phase_at` maps elapsed seconds to a phase index."""

    phases: tuple[Phase, ...]
    loop: bool
    _ends: tuple[float, ...]

    @property
    def cycle(self) -> float:
        """Total scripted time in seconds (``inf`` if the last phase is open-ended)."""
        return self._ends[-1]

    def phase_at(self, elapsed: float) -> int | None:
        """Index of the phase active ``elapsed`` seconds after the start, or None (base)."""
        if elapsed < 0:
            elapsed = 0.0
        if self.loop:
            elapsed %= self.cycle
        index = bisect.bisect_right(self._ends, elapsed)
        return index if index < len(self.phases) else None


def parse_duration(text: str) -> float:
    """``"500ms"``, ``"10s"``, ``"2m"``, ``"1h"`` or seconds as a bare number."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"bad duration {text!r}: use 500ms, 10s, 2m, 1h or seconds")
    return float(match.group(1)) * _UNIT[match.group(2)]


def _split_top(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside parentheses (so ``uniform(1,2)`` stays whole)."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def _parse_phase(text: str) -> Phase:
    body, duration = text, None
    head, colon, tail = text.rpartition(":")
    if colon and ")" not in tail:
        body, duration = head, parse_duration(tail)
        if duration <= 0:
            raise ValueError(f"phase {text!r}: duration must be > 0")
    profile: str | None = None
    rates: dict[str, float] = {}
    settings: dict[str, object] = {}
    for raw in _split_top(body, "+"):
        item = raw.strip()
        key, eq, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not eq:
            if item not in PROFILES:
                raise ValueError(f"phase {text!r}: unknown profile {item!r} ({_names()})")
            if profile is not None:
                raise ValueError(f"phase {text!r}: only one profile per phase")
            profile = item
        elif key in FAULT_KINDS:
            rate = float(value)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"phase {text!r}: rate {key}={value} must be within 0..1")
            rates[key] = rate
        elif key in _DIST_KEYS:
            settings[key] = parse_distribution(value).spec
        elif key in _LIMIT_KEYS:
            settings[key] = int(value)
        elif key in _AGENT_BOUNDS:
            low, high = _AGENT_BOUNDS[key]
            if not low <= int(value) <= high:
                raise ValueError(f"phase {text!r}: {key}={value} must be within {low}..{high}")
            settings[key] = int(value)
        elif key == "agent_tools":
            settings[key] = tool_names(value)
        else:
            raise ValueError(
                f"phase {text!r}: unknown item {key!r}; use a profile, a fault "
                f"({', '.join(FAULT_KINDS)}), latency, chunk_delay, rpm, tpm, agent_turns, "
                "agent_parallel or agent_tools"
            )
    return Phase(
        profile=profile,
        error_rates=MappingProxyType(rates),
        settings=MappingProxyType(settings),
        duration=duration,
        label=body.strip(),
    )


def _names() -> str:
    return "profiles: " + ", ".join(PROFILES)


def parse_scenario(spec: str) -> Scenario:
    """Parse the compact scenario syntax; raises ``ValueError`` naming the bad part."""
    parts = [p.strip() for p in _split_top(spec, ",")]
    if any(not p for p in parts):
        raise ValueError(f"scenario {spec!r}: empty phase")
    loop = parts[-1] == "loop"
    if loop:
        parts.pop()
    if not parts:
        raise ValueError(f"scenario {spec!r}: no phases")
    try:
        phases = tuple(_parse_phase(p) for p in parts)
    except ValueError as exc:
        raise ValueError(f"scenario {spec!r}: {exc}") from None
    for phase in phases[:-1]:
        if phase.duration is None:
            raise ValueError(f"scenario {spec!r}: only the last phase may omit a duration")
    if loop and phases[-1].duration is None:
        raise ValueError(f"scenario {spec!r}: loop needs a duration on every phase")
    ends: list[float] = []
    total = 0.0
    for phase in phases:
        total += phase.duration if phase.duration is not None else math.inf
        ends.append(total)
    return Scenario(phases=phases, loop=loop, _ends=tuple(ends))
