"""Context windows: count a chat prompt's tokens, trim a conversation, and the
policy that rejects, trims or routes a request that does not fit.

* :mod:`.tokens` — :func:`count_prompt_tokens` (exact with an offline tiktoken
  encoding, else a calibrated per-script estimate), :func:`load_encoding`;
* :mod:`.trim` — :func:`trim` (``drop_oldest`` / ``middle_out``, tool calls kept with
  their results);
* :mod:`.policy` — :class:`ContextPolicy` and its :class:`ContextConfig`.

See ``docs/context.md``.
"""

from __future__ import annotations

from .policy import ContextConfig, ContextPolicy, Encodings
from .tokens import (
    FAMILIES,
    Family,
    PromptCount,
    count_message_tokens,
    count_prompt,
    count_prompt_tokens,
    count_text_tokens,
    encoding_name_for,
    family_for,
    load_encoding,
)
from .trim import STRATEGIES, Strategy, trim

__all__ = [
    "FAMILIES",
    "STRATEGIES",
    "ContextConfig",
    "ContextPolicy",
    "Encodings",
    "Family",
    "PromptCount",
    "Strategy",
    "count_message_tokens",
    "count_prompt",
    "count_prompt_tokens",
    "count_text_tokens",
    "encoding_name_for",
    "family_for",
    "load_encoding",
    "trim",
]
