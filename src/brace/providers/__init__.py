"""Providers: the innermost handlers, one per deployment.

A provider is a base URL, credentials and an adapter for one wire API.  Every
adapter is a callable ``(Request) -> Response | StreamResponse`` whose responses
are OpenAI-shaped, whatever the upstream speaks.
"""

from __future__ import annotations

import aiohttp

from ..config import Deployment
from ..presets import PRESETS, Preset
from ..stack import Handler
from ._transport import make_session

__all__ = ["PRESETS", "Preset", "make_provider", "make_session"]


def make_provider(deployment: Deployment, session: aiohttp.ClientSession) -> Handler:
    """The handler for ``deployment``, by the wire API of its provider preset."""
    if deployment.preset.wire == "anthropic":
        from .anthropic import AnthropicProvider

        return AnthropicProvider(deployment, session)
    from .openai_compat import OpenAIProvider

    return OpenAIProvider(deployment, session)
