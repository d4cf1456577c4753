"""The Anthropic Messages API adapter, translating OpenAI chat completions both ways.

Callers speak OpenAI's chat-completions format; this adapter rewrites each body
into a ``POST /v1/messages`` request and each answer (JSON or SSE stream) back into
OpenAI's ``chat.completion`` / ``chat.completion.chunk`` shape.  The translation is
plain functions over plain dicts, testable without HTTP:

* :func:`to_anthropic` — an OpenAI request body to a Messages API body;
* :func:`to_openai` — a Messages API answer to an OpenAI ``chat.completion``;
* :class:`StreamTranslator` — Messages API stream events to OpenAI chunks.

What is translated, dropped and defaulted is documented in
``docs/providers-anthropic.md``.  A request that cannot be translated raises
:class:`~brace.errors.BadRequest` (the caller's to fix) before any network call.
"""

from __future__ import annotations

from ._provider import ANTHROPIC_VERSION, AnthropicProvider
from ._request import DEFAULT_MAX_TOKENS, DROPPED_FIELDS, to_anthropic
from ._response import to_openai
from ._shared import JSON_TOOL_NAME, finish_reason
from ._stream import StreamTranslator

__all__ = [
    "ANTHROPIC_VERSION",
    "DEFAULT_MAX_TOKENS",
    "DROPPED_FIELDS",
    "JSON_TOOL_NAME",
    "AnthropicProvider",
    "StreamTranslator",
    "finish_reason",
    "to_anthropic",
    "to_openai",
]
