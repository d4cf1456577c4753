"""The provider registry (brace.presets): one entry per preset, read by the adapters'
factory, tracing, pricing and token counting instead of tables of their own."""

from __future__ import annotations

from typing import Any, cast

import aiohttp
import pytest
from pydantic import SecretStr

from brace.config import Deployment
from brace.context.tokens import FAMILIES, family_for
from brace.presets import PRESETS, WIRES
from brace.providers import adapter_for, make_provider
from brace.providers.anthropic import AnthropicProvider
from brace.providers.openai_compat import OpenAIProvider
from brace.telemetry.tracing import _provider_name

# The tables each module kept before the registry; the registry must say the same.
OTEL_NAMES = {
    "azure": "azure.ai.openai",
    "mistral": "mistral_ai",
    "anthropic-mock": "anthropic",
    "mock": "openai",
}
PRICE_IDS = {
    p: p
    for p in (
        "openai",
        "azure",
        "anthropic",
        "groq",
        "together",
        "deepseek",
        "mistral",
        "openrouter",
    )
}
FAMILY_BY_PROVIDER = {
    "anthropic": "anthropic",
    "anthropic-mock": "anthropic",
    "openai": "openai",
    "azure": "openai",
}


def test_every_preset_speaks_a_registered_wire_with_a_known_family() -> None:
    for preset in PRESETS.values():
        assert preset.wire in WIRES
        assert preset.family in FAMILIES


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_registry_facts_match_the_former_tables(name: str) -> None:
    preset = PRESETS[name]
    assert preset.provider_name == OTEL_NAMES.get(name, name)
    assert _provider_name(name) == OTEL_NAMES.get(name, name)
    assert preset.price_id == PRICE_IDS.get(name)
    assert family_for(name, "some-model") == FAMILY_BY_PROVIDER.get(name, "other")


def test_unknown_presets_keep_their_name_and_count_as_other() -> None:
    assert _provider_name("custom") == "custom"
    assert _provider_name(None) is None
    assert family_for("custom", "some-model") == "other"


def test_each_wire_names_an_importable_adapter() -> None:
    assert adapter_for("openai") is OpenAIProvider
    assert adapter_for("anthropic") is AnthropicProvider


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_make_provider_builds_the_wires_adapter(name: str) -> None:
    extra: dict[str, Any] = {"base_url": "http://127.0.0.1:1/v1", "api_key": SecretStr("k")}
    if PRESETS[name].azure:
        extra["api_version"] = "2024-10-21"
    dep = Deployment(provider=name, model="m", **extra)
    session = cast(aiohttp.ClientSession, object())  # the adapters only keep it
    handler = make_provider(dep, session)
    assert isinstance(handler, adapter_for(PRESETS[name].wire))
