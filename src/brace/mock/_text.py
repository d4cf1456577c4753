"""Token estimates and the deterministic reply text.

Tokens are estimated as ``ceil(chars / 4)``, minimum 1, over every piece of text content
(strings and text parts; image and audio data are ignored).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "anthropic_prompt_text",
    "estimate_tokens",
    "fit_reply",
    "openai_prompt_text",
    "reply_text",
    "split_even",
]

_FILLER = " Brace mock filler text that pads the reply so benchmarks can ask for bigger bodies."


def estimate_tokens(chars: int) -> int:
    """``ceil(chars / 4)``, at least 1."""
    return max(1, -(-chars // 4))


def _part_text(part: Any) -> str:
    if isinstance(part, str):
        return part
    if not isinstance(part, dict):
        return ""
    text = part.get("text")
    if isinstance(text, str):
        return text
    content = part.get("content")  # Anthropic tool_result
    if content is not None:
        return _content_text(content)
    return ""


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(_part_text(p) for p in content)
    return ""


def openai_prompt_text(messages: list[Any]) -> tuple[int, str]:
    """(total characters of all message text, text of the last user message)."""
    total = 0
    last_user = ""
    for message in messages:
        if not isinstance(message, dict):
            continue
        text = _content_text(message.get("content"))
        total += len(text)
        if message.get("role") == "user":
            last_user = text
    return total, last_user


def anthropic_prompt_text(system: Any, messages: list[Any]) -> tuple[int, str]:
    """Like :func:`openai_prompt_text`, counting the top-level ``system`` too."""
    total, last_user = openai_prompt_text(messages)
    return total + len(_content_text(system)), last_user


def reply_text(last_user: str, pad_tokens: int | None) -> str:
    """``"Mock reply to: <first 60 chars>"``, padded to ``pad_tokens`` tokens if given."""
    text = "Mock reply to: " + last_user[:60]
    if pad_tokens is not None:
        want = pad_tokens * 4
        while len(text) < want:
            text += _FILLER
        text = text[:want]
    return text


def fit_reply(text: str, max_tokens: int | None) -> tuple[str, bool]:
    """Cut ``text`` to ``max_tokens`` tokens; returns (text, was_cut)."""
    if max_tokens is not None and max_tokens >= 0 and estimate_tokens(len(text)) > max_tokens:
        return text[: max_tokens * 4], True
    return text, False


def split_even(text: str, parts: int) -> list[str]:
    """Split into exactly ``parts`` consecutive pieces (some empty if text is short)."""
    size, extra = divmod(len(text), parts)
    pieces, start = [], 0
    for i in range(parts):
        end = start + size + (1 if i < extra else 0)
        pieces.append(text[start:end])
        start = end
    return pieces
