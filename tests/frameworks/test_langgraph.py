"""LangGraph agents (LangChain's ``create_agent``, LangGraph's older ``create_react_agent``)
with ``langchain_openai.ChatOpenAI``, against Brace."""

from __future__ import annotations

import pytest

from .conftest import VARIANTS, Stack, Tools, assert_variant_run, run_variant

pytest.importorskip("langchain.agents", reason="the 'agents' extra is not installed")
pytest.importorskip("langchain_openai", reason="the 'agents' extra is not installed")


def run(gateway: Stack, tools: Tools, variant: str, agent: str = "langgraph-agent") -> str:
    namespace, run_id = run_variant(gateway, tools, [f"langgraph-model-{variant}", agent], variant)
    messages = namespace["result"]["messages"]
    assert messages[-1].type == "ai" and messages[-1].content.startswith("Mock reply to:")
    assert sum(m.type == "tool" for m in messages) == gateway.expect.tool_steps
    return run_id


@pytest.mark.parametrize("variant", VARIANTS)
def test_agent_run(gateway: Stack, tools: Tools, variant: str) -> None:
    run(gateway, tools, variant)


@pytest.mark.filterwarnings("ignore:create_react_agent has been moved")
def test_prebuilt_react_agent_run(gateway: Stack, tools: Tools) -> None:
    run(gateway, tools, "header", agent="langgraph-prebuilt-agent")


@pytest.mark.parametrize("variant", VARIANTS)
def test_agent_run_in_admin_api(gateway: Stack, tools: Tools, variant: str) -> None:
    assert_variant_run(gateway, run(gateway, tools, variant), variant)
