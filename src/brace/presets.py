"""Provider presets: a name, the wire API it speaks and its default base URL.

Adding an OpenAI-compatible provider is configuration, not code: any server that
speaks OpenAI's chat API works with ``provider: openai`` and a ``base_url``.  The
presets below only spare users the URL (and say whether a key is expected).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["PRESETS", "Preset", "Wire"]

Wire = Literal["openai", "anthropic"]


@dataclass(frozen=True, slots=True)
class Preset:
    name: str
    wire: Wire
    base_url: str | None
    """Default base URL (``None``: the deployment must give one)."""
    needs_key: bool
    """Whether a hosted service expects an API key (a missing one is a config error)."""
    azure: bool = False


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("openai", "openai", "https://api.openai.com/v1", needs_key=False),
        Preset("azure", "openai", None, needs_key=True, azure=True),
        Preset("vllm", "openai", "http://127.0.0.1:8000/v1", needs_key=False),
        Preset("ollama", "openai", "http://127.0.0.1:11434/v1", needs_key=False),
        Preset("llamacpp", "openai", "http://127.0.0.1:8080/v1", needs_key=False),
        Preset("lmstudio", "openai", "http://127.0.0.1:1234/v1", needs_key=False),
        Preset("groq", "openai", "https://api.groq.com/openai/v1", needs_key=True),
        Preset("together", "openai", "https://api.together.xyz/v1", needs_key=True),
        Preset("deepseek", "openai", "https://api.deepseek.com/v1", needs_key=True),
        Preset("mistral", "openai", "https://api.mistral.ai/v1", needs_key=True),
        Preset("openrouter", "openai", "https://openrouter.ai/api/v1", needs_key=True),
        Preset("mock", "openai", "http://127.0.0.1:4010/v1", needs_key=False),
        Preset("anthropic", "anthropic", "https://api.anthropic.com", needs_key=True),
        Preset("anthropic-mock", "anthropic", "http://127.0.0.1:4010", needs_key=False),
    )
}
