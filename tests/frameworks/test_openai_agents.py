"""The OpenAI Agents SDK with ``OpenAIChatCompletionsModel``, against Brace."""

from __future__ import annotations

import pytest

from .conftest import (
    ADMIN,
    VARIANTS,
    Stack,
    Tools,
    assert_variant_run,
    check_variant,
    new_run_id,
    run_headers,
    run_snippet,
    run_variant,
)

pytest.importorskip(
    "agents.models.openai_chatcompletions", reason="the 'agents' extra is not installed"
)


@ADMIN
@pytest.mark.parametrize("variant", VARIANTS)
def test_runner_run(gateway: Stack, tools: Tools, variant: str, admin: bool) -> None:
    namespace, run_id = run_variant(
        gateway, tools, ["openai-agents-agent", f"openai-agents-{variant}"], variant
    )
    result = namespace["result"]
    assert result.final_output.startswith("Mock reply to:")
    assert len(result.raw_responses) == gateway.expect.model_steps
    if admin:
        assert_variant_run(gateway, run_id, variant)


@ADMIN
async def test_streamed_runner_run(gateway: Stack, tools: Tools, admin: bool) -> None:
    """``Runner.run_streamed``: every model step is a streamed chat completion."""
    from agents import ModelSettings, RunConfig, Runner

    run_id = new_run_id()
    agent = run_snippet(["openai-agents-agent"], gateway, **tools.functions())["agent"]
    result = Runner.run_streamed(
        agent,
        "Weather in Paris? And 2 + 3?",
        run_config=RunConfig(model_settings=ModelSettings(extra_headers=run_headers(run_id))),
    )
    async for _ in result.stream_events():
        pass
    assert result.final_output.startswith("Mock reply to:")
    seen = check_variant(gateway, tools, "header", run_id)
    assert all(s.body.get("stream") is True for s in seen)
    if admin:
        assert_variant_run(gateway, run_id, "header")
