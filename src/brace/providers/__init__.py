"""Providers: the innermost handlers, one per deployment.

A provider is a base URL, credentials and an adapter for one wire API.  Every
adapter is a callable ``(Request) -> Response | StreamResponse`` whose responses
are OpenAI-shaped, whatever the upstream speaks.  Which adapter serves a deployment
is a fact of the provider registry (``brace.presets``: its preset's wire API).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import aiohttp

from ..config import Deployment
from ..presets import PRESETS, WIRES, Preset, Wire
from ..stack import Handler
from ._transport import make_session

__all__ = ["PRESETS", "AdapterFactory", "Preset", "adapter_for", "make_provider", "make_session"]

AdapterFactory = Callable[[Deployment, aiohttp.ClientSession], Handler]


def adapter_for(wire: Wire) -> AdapterFactory:
    """The adapter of a wire API, imported on first use (named by ``WIRES[wire]``)."""
    module, _, name = WIRES[wire].adapter.partition(":")
    factory: AdapterFactory = getattr(importlib.import_module(module), name)
    return factory


def make_provider(deployment: Deployment, session: aiohttp.ClientSession) -> Handler:
    """The handler for ``deployment``, by the wire API of its provider preset."""
    return adapter_for(deployment.preset.wire)(deployment, session)
