"""The agent's model: turn plans, seeded arguments, options from config, scenario, headers
and the examples of docs/mock.md (loaded and run exactly as written)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from brace.mock import MockConfig, register_cli
from brace.mock import _cli as cli_module
from brace.mock._agent import Agent, BadAgentHeader, plan_calls, request_agent, tool_arguments
from brace.mock._cli import build_config
from brace.mock._scenario import parse_scenario
from brace.mock._settings import Settings

DOC = (Path(__file__).parents[2] / "docs" / "mock.md").read_text()
SECTION = DOC.split("## Playing an agent's model", 1)[1].split("\n## ", 1)[0]

SCHEMA: Any = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "minLength": 3, "maxLength": 12},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
        "unit": {"enum": ["c", "f"]},
        "exact": {"type": "boolean"},
        "ratio": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        "kind": {"const": "weather"},
        "note": {"type": "string"},
    },
    "required": ["city", "days", "unit", "exact", "ratio", "kind"],
}
DECLARED = [("search", SCHEMA), ("fetch", {}), ("lookup", None)]


def plan(agent: Agent, done: int = 0, **extra: Any) -> list[tuple[str, str]] | None:
    options: dict[str, Any] = {
        "done": done,
        "forced": None,
        "parallel": True,
        "seed": 1,
        "history": [{"role": "user", "content": "hi"}, done],
        "prefix": "call_",
        **extra,
    }
    calls = plan_calls(agent, DECLARED, **options)
    return None if calls is None else [(c.id, c.name) for c in calls]


def test_arguments_fill_the_required_simple_properties() -> None:
    for index in range(50):
        value = tool_arguments(SCHEMA, index.to_bytes(2, "big"))
        assert set(value) == set(SCHEMA["required"])
        assert 3 <= len(value["city"]) <= 12
        assert 1 <= value["days"] <= 7 and isinstance(value["days"], int)
        assert value["unit"] in ("c", "f")
        assert isinstance(value["exact"], bool)
        assert 0 < value["ratio"] < 1
        assert value["kind"] == "weather"
    assert tool_arguments(SCHEMA, b"k") == tool_arguments(SCHEMA, b"k")
    assert len({str(tool_arguments(SCHEMA, bytes([i]))) for i in range(20)}) > 10


@pytest.mark.parametrize(
    "schema",
    [
        None,
        {},
        {"type": "object", "properties": {"a": {"type": "string"}}},  # nothing required
        {"type": "array", "items": {}},
        {"type": "object", "properties": {"a": {"type": "object"}}, "required": ["a"]},
        {"type": "object", "properties": {}, "required": ["missing"]},
        {
            "type": "object",
            "properties": {"a": {"type": "string", "pattern": "^x"}},
            "required": ["a"],
        },
        {
            "type": "object",
            "properties": {"a": {"type": "string", "minLength": 10**6}},
            "required": ["a"],
        },
        {
            "type": "object",
            "properties": {"a": {"type": "integer", "minimum": 3, "maximum": 2}},
            "required": ["a"],
        },
        {
            "type": "object",
            "properties": {"a": {"type": "integer", "minimum": 1e30}},
            "required": ["a"],
        },
        {
            "type": "object",
            "properties": {"a": {"type": "number", "exclusiveMinimum": 1, "maximum": 1}},
            "required": ["a"],
        },
        {
            "type": "object",
            "properties": {"a": {"type": "integer", "multipleOf": 3}},
            "required": ["a"],
        },
        {
            "type": "object",
            "properties": {str(i): {"type": "boolean"} for i in range(65)},
            "required": [str(i) for i in range(65)],
        },
    ],
)
def test_arguments_of_other_schemas_are_empty(schema: Any) -> None:
    assert tool_arguments(schema, b"key") == {}


def test_number_bounds() -> None:
    def one(prop: dict[str, Any]) -> Any:
        schema = {"type": "object", "properties": {"a": prop}, "required": ["a"]}
        return [tool_arguments(schema, bytes([i]))["a"] for i in range(30)]

    assert all(-5 <= v <= -2 for v in one({"type": "integer", "minimum": -5, "maximum": -2}))
    assert all(2 < v < 4 for v in one({"type": "integer", "exclusiveMinimum": 2, "maximum": 3.5}))
    assert all(v <= 10 for v in one({"type": "integer", "maximum": 10}))
    assert one({"type": "number", "minimum": 2.5, "maximum": 2.5}) == [2.5] * 30
    assert all(0 <= v <= 100 for v in one({"type": "number"}))


def test_turns_cycle_tools_and_end() -> None:
    agent = Agent(turns=2, parallel=2)
    first, second = plan(agent, 0), plan(agent, 1)
    assert first is not None and second is not None
    assert [name for _, name in first] == ["search", "fetch"]
    assert [name for _, name in second] == ["lookup", "search"]
    ids = [ident for ident, _ in first + second]
    assert len(set(ids)) == 4 and all(i.startswith("call_") and len(i) == 29 for i in ids)
    assert plan(agent, 2) is None
    assert plan(Agent(turns=0), 0) is None
    assert plan(Agent(), 0) is None  # agent turns off


def test_plans_are_deterministic_per_seed() -> None:
    agent = Agent(turns=1, parallel=3)
    assert plan(agent) == plan(agent)
    assert plan(agent) != plan(agent, seed=2)
    assert plan(agent, prefix="toolu_") == [
        ("toolu_" + i.removeprefix("call_"), n) for i, n in plan(agent) or []
    ]


def test_forced_chosen_and_serial_tools() -> None:
    agent = Agent(turns=3, parallel=3, tools=("lookup", "unknown", "fetch"))
    assert [n for _, n in plan(agent) or []] == ["lookup", "fetch", "lookup"]
    assert [n for _, n in plan(agent, forced="search") or []] == ["search"] * 3
    assert [n for _, n in plan(agent, 1, parallel=False) or []] == ["fetch"]
    undeclared = Agent(turns=1, parallel=4, tools=("nope",))
    assert [n for _, n in plan(undeclared) or []] == ["search", "fetch", "lookup", "search"]


def test_headers_override_the_config() -> None:
    base = Agent(turns=None, parallel=2, tools=("a",))
    assert request_agent(base, {}) is base
    agent = request_agent(
        base, {"x-mock-agent-turns": " 4", "x-mock-agent-tools": "search|fetch, x"}
    )
    assert agent == Agent(turns=4, parallel=2, tools=("search", "fetch", "x"))
    assert request_agent(base, {"x-mock-agent-parallel": "64"}).parallel == 64


@pytest.mark.parametrize(
    ("headers", "name"),
    [
        ({"x-mock-agent-turns": "1001"}, "x-mock-agent-turns"),
        ({"x-mock-agent-turns": "two"}, "x-mock-agent-turns"),
        ({"x-mock-agent-parallel": "0"}, "x-mock-agent-parallel"),
        ({"x-mock-agent-parallel": "65"}, "x-mock-agent-parallel"),
        ({"x-mock-agent-tools": ",".join(["t"] * 65)}, "x-mock-agent-tools"),
        ({"x-mock-agent-tools": "x" * 129}, "x-mock-agent-tools"),
    ],
)
def test_bad_headers(headers: dict[str, str], name: str) -> None:
    with pytest.raises(BadAgentHeader) as caught:
        request_agent(Agent(), headers)
    assert caught.value.header == name


def test_config_and_settings() -> None:
    assert Settings(MockConfig(), "t").agent == Agent()
    config = MockConfig.model_validate(
        {"agent_turns": 3, "agent_parallel": 2, "agent_tools": "search, fetch"}
    )
    assert Settings(config, "t").agent == Agent(3, 2, ("search", "fetch"))
    assert MockConfig.model_validate({"agent_tools": ["a", "b"]}).agent_tools == ("a", "b")
    for bad in (
        {"agent_turns": 1001},
        {"agent_turns": -1},
        {"agent_parallel": 0},
        {"agent_parallel": 65},
        {"agent_tools": ["t"] * 65},
    ):
        with pytest.raises(ValueError, match="agent_"):
            MockConfig.model_validate(bad)


def test_scenario_items() -> None:
    phases = parse_scenario("agent_turns=1:1m,agent_turns=5+agent_parallel=3+agent_tools=a|b")
    assert dict(phases.phases[0].settings) == {"agent_turns": 1}
    assert dict(phases.phases[1].settings) == {
        "agent_turns": 5,
        "agent_parallel": 3,
        "agent_tools": ("a", "b"),
    }
    for bad in ("agent_turns=1001", "agent_parallel=0", "agent_tools=" + "|".join(["t"] * 65)):
        with pytest.raises(ValueError, match="agent_"):
            parse_scenario(bad)


def test_build_config_takes_the_agent_options() -> None:
    config = build_config(agent_turns=2, agent_parallel=3, agent_tools="a,b")
    assert (config.agent_turns, config.agent_parallel, config.agent_tools) == (2, 3, ("a", "b"))


def test_doc_yaml_example_loads(tmp_path: Path) -> None:
    example = SECTION.split("```yaml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "agent.yaml"
    path.write_text(example)
    config = build_config(config_file=path)
    assert (config.agent_turns, config.agent_parallel) == (3, 2)
    assert config.agent_tools == ("search", "fetch_page")
    assert config.seed == 7
    assert config.scenario is not None
    assert [p.settings for p in parse_scenario(config.scenario).phases] == [
        {"agent_turns": 1},
        {"agent_turns": 5, "agent_parallel": 3},
    ]


def test_doc_command_line_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[MockConfig] = []
    monkeypatch.setattr(cli_module, "_run", lambda config, *rest: started.append(config))
    app = typer.Typer()
    register_cli(app)

    @app.command()
    def other() -> None:  # a second command keeps `mock` a subcommand
        """Unused."""

    console = SECTION.split("```console\n", 1)[1].split("```", 1)[0]
    lines = [line.removeprefix("$ ") for line in console.splitlines() if line.startswith("$ ")]
    assert len(lines) == 1
    argv = shlex.split(lines[0])
    assert argv[:2] == ["brace", "mock"]
    result = CliRunner().invoke(app, argv[1:])
    assert result.exit_code == 0, result.output
    (config,) = started
    assert (config.agent_turns, config.agent_parallel, config.seed) == (3, 2, 7)
    assert config.agent_tools == ("search", "fetch_page")
