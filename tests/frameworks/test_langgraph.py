"""LangGraph's prebuilt ReAct agent with ``langchain_openai.ChatOpenAI``, against Brace."""

from __future__ import annotations

import pytest

from .conftest import VARIANTS, Stack, Tools, assert_variant_run, run_variant

pytest.importorskip("langgraph.prebuilt", reason="the 'agents' extra is not installed")
pytest.importorskip("langchain_openai", reason="the 'agents' extra is not installed")


@pytest.mark.parametrize("variant", VARIANTS)
def test_react_agent_run(gateway: Stack, tools: Tools, variant: str) -> None:
    namespace, run_id = run_variant(
        gateway, tools, [f"langgraph-model-{variant}", "langgraph-agent"], variant
    )
    messages = namespace["result"]["messages"]
    assert messages[-1].type == "ai" and messages[-1].content.startswith("Mock reply to:")
    assert sum(m.type == "tool" for m in messages) == gateway.expect.tool_steps
    assert_variant_run(gateway, run_id, variant)
