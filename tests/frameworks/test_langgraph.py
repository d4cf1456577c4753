"""LangGraph agents (LangChain's ``create_agent``, LangGraph's older ``create_react_agent``)
with ``langchain_openai.ChatOpenAI``, against Brace."""

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
    run_snippet,
    run_variant,
)

pytest.importorskip("langchain.agents", reason="the 'agents' extra is not installed")
pytest.importorskip("langchain_openai", reason="the 'agents' extra is not installed")


def run(gateway: Stack, tools: Tools, variant: str, agent: str = "langgraph-agent") -> str:
    namespace, run_id = run_variant(gateway, tools, [f"langgraph-model-{variant}", agent], variant)
    messages = namespace["result"]["messages"]
    assert messages[-1].type == "ai" and messages[-1].content.startswith("Mock reply to:")
    assert sum(m.type == "tool" for m in messages) == gateway.expect.tool_steps
    return run_id


@ADMIN
@pytest.mark.parametrize("variant", VARIANTS)
def test_agent_run(gateway: Stack, tools: Tools, variant: str, admin: bool) -> None:
    run_id = run(gateway, tools, variant)
    if admin:
        assert_variant_run(gateway, run_id, variant)


@pytest.mark.filterwarnings("ignore:create_react_agent has been moved")
def test_prebuilt_react_agent_run(gateway: Stack, tools: Tools) -> None:
    run(gateway, tools, "header", agent="langgraph-prebuilt-agent")


@ADMIN
def test_streamed_agent_run(gateway: Stack, tools: Tools, admin: bool) -> None:
    """``stream_mode="messages"``: LangGraph streams every model step token by token."""
    from langchain.agents import create_agent

    run_id = new_run_id()
    model = run_snippet(["langgraph-model-header"], gateway, run_id=run_id)["model"]
    agent = create_agent(model, list(tools.functions().values()))
    chunks = list(
        agent.stream(
            {"messages": [("user", "Weather in Paris? And 2 + 3?")]}, stream_mode="messages"
        )
    )
    assert "Mock reply to:" in "".join(
        str(message.content) for message, _ in chunks if message.type == "AIMessageChunk"
    )
    seen = check_variant(gateway, tools, "header", run_id)
    assert all(s.body.get("stream") is True for s in seen)
    if admin:
        assert_variant_run(gateway, run_id, "header")
