"""Pydantic AI's ``Agent`` with ``OpenAIChatModel`` and ``OpenAIProvider``, against Brace."""

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

pytest.importorskip("pydantic_ai.models.openai", reason="the 'agents' extra is not installed")


@ADMIN
@pytest.mark.parametrize("variant", VARIANTS)
def test_agent_run(gateway: Stack, tools: Tools, variant: str, admin: bool) -> None:
    namespace, run_id = run_variant(
        gateway, tools, ["pydantic-ai-agent", f"pydantic-ai-{variant}"], variant
    )
    result = namespace["result"]
    assert result.output.startswith("Mock reply to:")
    kinds = [type(m).__name__ for m in result.all_messages()]
    assert kinds.count("ModelResponse") == gateway.expect.model_steps, kinds
    if admin:
        assert_variant_run(gateway, run_id, variant)


@ADMIN
async def test_streamed_agent_run(gateway: Stack, tools: Tools, admin: bool) -> None:
    """``run_stream``: every model step is a streamed chat completion."""
    run_id = new_run_id()
    agent = run_snippet(["pydantic-ai-agent"], gateway, **tools.functions())["agent"]
    async with agent.run_stream(
        "Weather in Paris? And 2 + 3?", model_settings={"extra_headers": run_headers(run_id)}
    ) as result:
        output = await result.get_output()
    assert output.startswith("Mock reply to:")
    seen = check_variant(gateway, tools, "header", run_id)
    assert all(s.body.get("stream") is True for s in seen)
    if admin:
        assert_variant_run(gateway, run_id, "header")
