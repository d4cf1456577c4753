"""Pydantic AI's ``Agent`` with ``OpenAIChatModel`` and ``OpenAIProvider``, against Brace."""

from __future__ import annotations

import pytest

from .conftest import VARIANTS, Stack, Tools, assert_variant_run, run_variant

pytest.importorskip("pydantic_ai.models.openai", reason="the 'agents' extra is not installed")


def run(gateway: Stack, tools: Tools, variant: str) -> str:
    namespace, run_id = run_variant(
        gateway, tools, ["pydantic-ai-agent", f"pydantic-ai-{variant}"], variant
    )
    result = namespace["result"]
    assert result.output.startswith("Mock reply to:")
    kinds = [type(m).__name__ for m in result.all_messages()]
    assert kinds.count("ModelResponse") == gateway.expect.model_steps, kinds
    return run_id


@pytest.mark.parametrize("variant", VARIANTS)
def test_agent_run(gateway: Stack, tools: Tools, variant: str) -> None:
    run(gateway, tools, variant)


@pytest.mark.parametrize("variant", VARIANTS)
def test_agent_run_in_admin_api(gateway: Stack, tools: Tools, variant: str) -> None:
    assert_variant_run(gateway, run(gateway, tools, variant), variant)
