"""OpenAI chat messages as Messages API ``system`` blocks and alternating messages.

Text, image and file parts become content blocks; assistant tool calls become
``tool_use`` blocks and ``tool`` messages ``tool_result`` blocks; consecutive
messages of one role are merged (the Messages API needs user/assistant alternation).
"""

from __future__ import annotations

from typing import Any

import orjson

from ._shared import bad

__all__ = ["translate_messages"]


def _image_block(url: Any, param: str) -> dict[str, Any]:
    if not isinstance(url, str) or not url:
        raise bad("image_url.url must be a non-empty string (an http(s) or data: URL)", param)
    if url.startswith("data:"):
        header, sep, data = url[5:].partition(",")
        media_type, _, encoding = header.partition(";")
        if not sep or encoding != "base64" or not media_type:
            raise bad(
                "image data URLs must look like data:image/png;base64,<data> "
                "(Anthropic accepts base64 images only)",
                param,
            )
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise bad("image_url.url must be an http(s) URL or a base64 data: URL", param)


def _file_block(file: Any, param: str) -> dict[str, Any]:
    data = file.get("file_data") if isinstance(file, dict) else None
    if not isinstance(data, str) or not data.startswith("data:"):
        raise bad(
            "file parts must carry file_data as a base64 data: URL "
            "(file_id is not supported by the Anthropic adapter)",
            param,
        )
    header, sep, payload = data[5:].partition(",")
    media_type, _, encoding = header.partition(";")
    if not sep or encoding != "base64" or not media_type:
        raise bad("file_data must look like data:application/pdf;base64,<data>", param)
    return {
        "type": "document",
        "source": {"type": "base64", "media_type": media_type, "data": payload},
    }


def _content_blocks(content: Any, param: str, *, images: bool) -> list[dict[str, Any]]:
    """OpenAI message content (a string or a list of parts) as Anthropic blocks.

    Empty text is skipped: the Messages API rejects empty text blocks.
    """
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise bad("content must be a string or a list of content parts", param)
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        where = f"{param}[{j}]"
        ptype = part.get("type") if isinstance(part, dict) else None
        block: dict[str, Any]
        if ptype == "text" or ptype == "refusal":
            text = part.get(ptype)
            if not isinstance(text, str):
                raise bad(f"a {ptype} part needs a string '{ptype}' field", where)
            if not text:
                continue
            block = {"type": "text", "text": text}
        elif ptype == "image_url" and images:
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            block = _image_block(url, f"{where}.image_url.url")
        elif ptype == "file" and images:
            block = _file_block(part.get("file"), f"{where}.file")
        else:
            raise bad(
                f"content part type {ptype!r} is not supported here by the Anthropic adapter "
                "(use text" + (", image_url or file)" if images else ")"),
                where,
            )
        cache = part.get("cache_control")
        if cache is not None:
            block["cache_control"] = cache
        blocks.append(block)
    return blocks


def _tool_use_blocks(calls: Any, param: str) -> list[dict[str, Any]]:
    if not isinstance(calls, list):
        raise bad("tool_calls must be a list", param)
    blocks: list[dict[str, Any]] = []
    for j, call in enumerate(calls):
        where = f"{param}[{j}]"
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or call.get("type", "function") != "function":
            raise bad("each tool call must be {'id', 'type': 'function', 'function'}", where)
        call_id, name = call.get("id"), fn.get("name")
        if not isinstance(call_id, str) or not call_id:
            raise bad("the tool call has no id", f"{where}.id")
        if not isinstance(name, str) or not name:
            raise bad("the tool call has no function name", f"{where}.function.name")
        args = fn.get("arguments")
        parsed: Any
        if isinstance(args, dict):
            parsed = args
        elif args is None or (isinstance(args, str) and not args.strip()):
            parsed = {}
        else:
            try:
                parsed = orjson.loads(args) if isinstance(args, str) else None
            except orjson.JSONDecodeError:
                parsed = None
        if not isinstance(parsed, dict):
            raise bad(
                f"the arguments of tool call {call_id!r} are not a JSON object; the Anthropic "
                "API needs tool inputs as objects, so send function.arguments as a JSON "
                'object string such as {"city": "Paris"}',
                f"{where}.function.arguments",
            )
        blocks.append({"type": "tool_use", "id": call_id, "name": name, "input": parsed})
    return blocks


def _tool_result_block(msg: dict[str, Any], param: str) -> dict[str, Any]:
    call_id = msg.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise bad("a tool message needs the tool_call_id it answers", f"{param}.tool_call_id")
    content = msg.get("content")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id}
    if isinstance(content, str):
        block["content"] = content
    else:
        block["content"] = _content_blocks(content, f"{param}.content", images=False)
    return block


def translate_messages(
    messages: Any,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system blocks, alternating Anthropic messages)."""
    if not isinstance(messages, list) or not messages:
        raise bad("messages must be a non-empty list", "messages")
    system: list[dict[str, Any]] = []
    out: list[dict[str, Any]] = []
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise bad("each message must be an object with a role", where)
        role = msg.get("role")
        if role in ("system", "developer"):
            system.extend(_content_blocks(msg.get("content"), f"{where}.content", images=False))
            continue
        if role == "user":
            blocks = _content_blocks(msg.get("content"), f"{where}.content", images=True)
        elif role == "assistant":
            blocks = _content_blocks(msg.get("content"), f"{where}.content", images=False)
            calls = msg.get("tool_calls")
            if calls:
                blocks.extend(_tool_use_blocks(calls, f"{where}.tool_calls"))
        elif role == "tool":
            role = "user"
            blocks = [_tool_result_block(msg, where)]
        elif role == "function":
            raise bad(
                "role 'function' (the legacy functions API) is not supported; "
                "use tools and role 'tool'",
                f"{where}.role",
            )
        else:
            raise bad(
                f"unknown role {role!r}; expected system, developer, user, assistant or tool",
                f"{where}.role",
            )
        if not blocks:
            continue  # the Messages API rejects empty messages
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)  # the Messages API needs alternation
        else:
            out.append({"role": role, "content": blocks})
    if not out:
        raise bad(
            "messages has no user or assistant content (the Anthropic API needs at least one)",
            "messages",
        )
    return system, out
