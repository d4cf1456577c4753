"""The OpenAI Agents SDK with ``OpenAIChatCompletionsModel``, against Brace."""

from __future__ import annotations

import pytest

from .conftest import VARIANTS, Stack, Tools, assert_variant_run, run_variant

pytest.importorskip(
    "agents.models.openai_chatcompletions", reason="the 'agents' extra is not installed"
)


def run(gateway: Stack, tools: Tools, variant: str) -> str:
    namespace, run_id = run_variant(
        gateway, tools, ["openai-agents-agent", f"openai-agents-{variant}"], variant
    )
    result = namespace["result"]
    assert result.final_output.startswith("Mock reply to:")
    assert len(result.raw_responses) == gateway.expect.model_steps
    return run_id


@pytest.mark.parametrize("variant", VARIANTS)
def test_runner_run(gateway: Stack, tools: Tools, variant: str) -> None:
    run(gateway, tools, variant)


@pytest.mark.parametrize("variant", VARIANTS)
def test_runner_run_in_admin_api(gateway: Stack, tools: Tools, variant: str) -> None:
    assert_variant_run(gateway, run(gateway, tools, variant), variant)
