"""Scenario parsing and phase lookup with a fake clock."""

from __future__ import annotations

import math

import pytest

from brace.mock import MockConfig
from brace.mock._scenario import parse_duration, parse_scenario
from brace.mock._settings import LiveConfig


class FakeClock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("10s", 10.0), ("2m", 120.0), ("1h", 3600.0), ("3", 3.0), ("1.5s", 1.5)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_parse_profiles_and_open_ended_last_phase() -> None:
    scenario = parse_scenario("healthy:10s,outage:5s,healthy")
    assert [p.profile for p in scenario.phases] == ["healthy", "outage", "healthy"]
    assert [p.duration for p in scenario.phases] == [10.0, 5.0, None]
    assert not scenario.loop
    assert math.isinf(scenario.cycle)
    assert scenario.phase_at(0) == 0
    assert scenario.phase_at(9.99) == 0
    assert scenario.phase_at(10) == 1
    assert scenario.phase_at(14.99) == 1
    assert scenario.phase_at(15) == 2
    assert scenario.phase_at(1e9) == 2


def test_overrides_with_distributions_and_limits() -> None:
    scenario = parse_scenario("flaky+503=0.5+latency=uniform(10,50)+rpm=30:1m,healthy")
    phase = scenario.phases[0]
    assert phase.profile == "flaky"
    assert dict(phase.error_rates) == {"503": 0.5}
    assert dict(phase.settings) == {"latency": "uniform(10,50)", "rpm": 30}
    assert phase.duration == 60.0


def test_timed_script_falls_back_to_base_after_the_end() -> None:
    scenario = parse_scenario("503=1.0:5s")
    assert scenario.phase_at(4.9) == 0
    assert scenario.phase_at(5.0) is None


def test_loop_repeats_the_cycle() -> None:
    scenario = parse_scenario("healthy:10s,outage:2s,loop")
    assert scenario.loop
    assert scenario.cycle == 12
    assert scenario.phase_at(11) == 1
    assert scenario.phase_at(12) == 0
    assert scenario.phase_at(23.5) == 1
    assert scenario.phase_at(24.1) == 0


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("healthy,outage:5s", "only the last phase"),
        ("nosuch:5s", "unknown profile"),
        ("503=2:5s", "within 0..1"),
        ("bogus=1:5s", "unknown item"),
        ("healthy:10s,loop,", "empty phase"),
        ("healthy:5s,outage,loop", "loop needs a duration"),
        ("loop", "no phases"),
        ("healthy:xs", "bad duration"),
        ("healthy+outage:5s", "one profile"),
    ],
)
def test_bad_scenarios_name_the_problem(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_scenario(spec)


def test_live_config_follows_the_clock() -> None:
    clock = FakeClock()
    config = MockConfig(latency="7", scenario="healthy:10s,outage:5s,503=0.25+hang=0.5:5s")
    live = LiveConfig(config, clock)
    assert live.current().fault_table == ()
    assert live.current().latency.a == 7  # a profile phase keeps unrelated settings
    clock.now += 10
    assert live.current().label == "outage"
    assert live.current().fault_table == (("503", 1.0),)
    clock.now += 5
    assert live.current().config.error_rates == {"503": 0.25, "hang": 0.5}
    clock.now += 5
    assert live.current().label == "base"
    live.restart()
    assert live.current().label == "healthy"


def test_swapping_the_scenario_restarts_phase_time() -> None:
    clock = FakeClock()
    live = LiveConfig(MockConfig(scenario="healthy:10s,outage"), clock)
    clock.now += 11
    assert live.current().label == "outage"
    live.swap(MockConfig(scenario="outage:10s,healthy"))
    assert live.current().label == "outage"
    clock.now += 10
    assert live.current().label == "healthy"
    live.swap(live.config.merged({"latency": "5"}))  # same scenario: no restart
    assert live.current().label == "healthy"


def test_scenario_is_validated_in_config() -> None:
    with pytest.raises(ValueError, match="only the last phase"):
        MockConfig(scenario="outage,healthy")
