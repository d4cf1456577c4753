"""The provider registry: every fact Brace keeps about a provider, in one entry.

A *preset* is a name users write as a deployment's ``provider:``.  Its entry says
which wire API it speaks (and so which adapter serves it), its default base URL and
whether a key is expected, and the names the rest of Brace needs: the OpenTelemetry
``gen_ai.provider.name`` (``telemetry/tracing.py``), the genai-prices provider id
(``telemetry/cost.py``) and the tokenizer family when the model's name does not tell
(``context/tokens.py``).  Those modules look the facts up here; none keeps a table.

Adding an OpenAI-compatible provider is configuration, not code: any server that
speaks OpenAI's chat API works with ``provider: openai`` and a ``base_url``.  A preset
only spares users the URL (and says whether a key is expected): one line below.  A new
wire API is one adapter module under ``brace/providers/`` plus its :class:`WireAPI`
line (``docs/providers.md``, "Adding a provider").

This module imports nothing from Brace: config, telemetry and context read it without
pulling in the adapters (or aiohttp); adapters are named, and imported by
``brace.providers.make_provider`` when a deployment needs one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

__all__ = ["PRESETS", "WIRES", "Family", "Preset", "Wire", "WireAPI"]

Wire = Literal["openai", "anthropic"]
Family = Literal["openai", "anthropic", "llama", "qwen", "mistral", "other"]
"""Tokenizer families (``context/tokens.py`` counts prompts per family)."""


@dataclass(frozen=True, slots=True)
class WireAPI:
    """A wire API and the adapter that speaks it."""

    name: Wire
    adapter: str
    """``module:attribute`` of the adapter: called with ``(deployment, session)``
    (a :class:`~brace.config.Deployment` and the shared ``aiohttp.ClientSession``), it
    returns the deployment's innermost handler."""


WIRES: Mapping[Wire, WireAPI] = {
    w.name: w
    for w in (
        WireAPI("openai", "brace.providers.openai_compat:OpenAIProvider"),
        WireAPI("anthropic", "brace.providers.anthropic:AnthropicProvider"),
    )
}


@dataclass(frozen=True, slots=True)
class Preset:
    name: str
    wire: Wire
    base_url: str | None
    """Default base URL (``None``: the deployment must give one)."""
    needs_key: bool
    """Whether a hosted service expects an API key (a missing one is a config error)."""
    azure: bool = False
    telemetry_name: str | None = None
    """The GenAI ``gen_ai.provider.name`` when the well-known value differs from the
    preset's name (the conventions allow custom values, so the name is the default)."""
    price_id: str | None = None
    """genai-prices' provider id (it names providers by their API); ``None``: the
    price is looked up by model alone."""
    family: Family = "other"
    """The tokenizer family when the model's name does not tell."""

    @property
    def provider_name(self) -> str:
        """The OpenTelemetry ``gen_ai.provider.name`` of this preset's deployments."""
        return self.telemetry_name or self.name


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "openai",
            "openai",
            "https://api.openai.com/v1",
            needs_key=False,
            price_id="openai",
            family="openai",
        ),
        Preset(
            "azure",
            "openai",
            None,
            needs_key=True,
            azure=True,
            telemetry_name="azure.ai.openai",
            price_id="azure",
            family="openai",
        ),
        Preset("vllm", "openai", "http://127.0.0.1:8000/v1", needs_key=False),
        Preset("ollama", "openai", "http://127.0.0.1:11434/v1", needs_key=False),
        Preset("llamacpp", "openai", "http://127.0.0.1:8080/v1", needs_key=False),
        Preset("lmstudio", "openai", "http://127.0.0.1:1234/v1", needs_key=False),
        Preset("groq", "openai", "https://api.groq.com/openai/v1", needs_key=True, price_id="groq"),
        Preset(
            "together", "openai", "https://api.together.xyz/v1", needs_key=True, price_id="together"
        ),
        Preset(
            "deepseek", "openai", "https://api.deepseek.com/v1", needs_key=True, price_id="deepseek"
        ),
        Preset(
            "mistral",
            "openai",
            "https://api.mistral.ai/v1",
            needs_key=True,
            telemetry_name="mistral_ai",
            price_id="mistral",
        ),
        Preset(
            "openrouter",
            "openai",
            "https://openrouter.ai/api/v1",
            needs_key=True,
            price_id="openrouter",
        ),
        Preset(
            "mock", "openai", "http://127.0.0.1:4010/v1", needs_key=False, telemetry_name="openai"
        ),
        Preset(
            "anthropic",
            "anthropic",
            "https://api.anthropic.com",
            needs_key=True,
            price_id="anthropic",
            family="anthropic",
        ),
        Preset(
            "anthropic-mock",
            "anthropic",
            "http://127.0.0.1:4010",
            needs_key=False,
            telemetry_name="anthropic",
            family="anthropic",
        ),
    )
}
