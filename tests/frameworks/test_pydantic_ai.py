"""Pydantic AI's ``Agent`` with ``OpenAIChatModel`` and ``OpenAIProvider``, against Brace."""

from __future__ import annotations

import pytest

from .conftest import VARIANTS, Stack, Tools, assert_variant_run, run_variant

pytest.importorskip("pydantic_ai.models.openai", reason="the 'agents' extra is not installed")


@pytest.mark.parametrize("variant", VARIANTS)
def test_agent_run(gateway: Stack, tools: Tools, variant: str) -> None:
    namespace, run_id = run_variant(
        gateway, tools, ["pydantic-ai-agent", f"pydantic-ai-{variant}"], variant
    )
    result = namespace["result"]
    assert result.output.startswith("Mock reply to:")
    assert result.usage().requests == gateway.expect.model_steps
    assert_variant_run(gateway, run_id, variant)
