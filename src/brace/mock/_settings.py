"""The live config: a hot-path snapshot per scenario phase, swapped atomically.

``Settings`` precomputes what every request needs (cumulative fault table, models body...)
from a :class:`MockConfig`. ``LiveConfig`` holds the base settings plus one per scenario
phase and answers "what applies now?" with the injected clock.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from brace.mock._agent import Agent
from brace.mock._config import MockConfig
from brace.mock._kinds import FAULT_KINDS
from brace.mock._profiles import PROFILES
from brace.mock._scenario import Phase, Scenario, parse_scenario

__all__ = ["LiveConfig", "Settings", "phase_config"]


class Settings:
    """Effective values for one phase, shaped for the hot path."""

    __slots__ = (
        "agent",
        "burst_seconds",
        "chunk_delay",
        "chunks",
        "config",
        "default_max_tokens",
        "embedding_dim",
        "fault_table",
        "hang_seconds",
        "label",
        "latency",
        "models_body",
        "reply_tokens",
        "retry_after",
        "rpm",
        "stall_seconds",
        "tpm",
    )

    def __init__(self, config: MockConfig, label: str) -> None:
        self.config = config
        self.label = label
        self.latency = config.latency
        self.chunk_delay = None if config.chunk_delay.is_zero else config.chunk_delay
        self.chunks = config.chunks
        self.rpm = config.rpm
        self.burst_seconds = config.burst_seconds
        self.tpm = config.tpm
        self.default_max_tokens = config.default_max_tokens
        self.retry_after = config.retry_after_seconds
        self.hang_seconds = config.hang_seconds
        self.stall_seconds = config.stall_seconds
        self.embedding_dim = config.embedding_dim
        self.reply_tokens = config.reply_tokens
        self.agent = Agent(config.agent_turns, config.agent_parallel, config.agent_tools)
        edge = 0.0
        table: list[tuple[str, float]] = []
        for kind in FAULT_KINDS:
            rate = config.error_rates.get(kind, 0.0)
            if rate > 0:
                edge += rate
                table.append((kind, edge))
        self.fault_table = tuple(table)
        self.models_body = orjson.dumps(
            {
                "object": "list",
                "data": [
                    {"id": m, "object": "model", "created": 1700000000, "owned_by": "brace-mock"}
                    for m in config.models
                ],
            }
        )

    def draw_fault(self, rng: random.Random) -> str | None:
        """One uniform draw walked through the cumulative fault table (no draw if empty)."""
        table = self.fault_table
        if not table:
            return None
        x = rng.random()
        for kind, edge in table:
            if x < edge:
                return kind
        return None


def phase_config(base: MockConfig, phase: Phase) -> MockConfig:
    """The config in force during ``phase``.

    A profile phase replaces the fields its profile sets (``healthy`` clears the fault
    rates); the phase's own rates and settings are then merged on top.
    """
    data: dict[str, Any] = base.model_dump(mode="json")
    data.update(profile=None, scenario=None)
    if phase.profile is not None:
        for key, value in PROFILES[phase.profile].settings.items():
            data[key] = dict(value) if isinstance(value, Mapping) else value
    data.update(phase.settings)
    data["error_rates"] = {**data["error_rates"], **phase.error_rates}
    return MockConfig.model_validate(data)


class LiveConfig:
    """The current config and its scenario, looked up per request."""

    __slots__ = ("_base", "_clock", "_phases", "_scenario", "_start", "config")

    def __init__(self, config: MockConfig, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._start = clock()
        self._scenario: Scenario | None = None
        self._phases: tuple[Settings, ...] = ()
        self.config = config
        self._base = Settings(config, "base")
        self.swap(config)

    def swap(self, config: MockConfig) -> None:
        """Replace the config; the scenario clock restarts if the scenario changed."""
        scenario = parse_scenario(config.scenario) if config.scenario else None
        phases = (
            tuple(Settings(phase_config(config, p), p.label) for p in scenario.phases)
            if scenario is not None
            else ()
        )
        restart = config.scenario != self.config.scenario or self._scenario is None
        self._base = Settings(config, config.profile or "base")
        self._scenario, self._phases, self.config = scenario, phases, config
        if restart:
            self.restart()

    def restart(self) -> None:
        """Phase time starts again from now."""
        self._start = self._clock()

    def current(self) -> Settings:
        """The settings in force now."""
        scenario = self._scenario
        if scenario is None:
            return self._base
        index = scenario.phase_at(self._clock() - self._start)
        return self._base if index is None else self._phases[index]

    def describe(self) -> dict[str, Any]:
        """Where the scenario is: for ``/_mock/stats``."""
        elapsed = self._clock() - self._start
        index = self._scenario.phase_at(elapsed) if self._scenario is not None else None
        return {"phase": self.current().label, "phase_index": index, "elapsed": elapsed}
