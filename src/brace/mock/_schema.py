"""Generate a JSON value that satisfies a JSON schema (the subset LLM APIs use).

Deterministic: the same schema always gives the same value. Supports ``type`` (or a list of
types), ``properties``/``required``, ``items``/``prefixItems``/``minItems``, ``enum``, ``const``,
``anyOf``/``oneOf``/``allOf``, local ``$ref`` into ``$defs``/``definitions``, string
``format``/``minLength``/``maxLength`` and numeric ``minimum``/``maximum``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["generate_from_schema"]

_MAX_DEPTH = 12
_FORMATS = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "00:00:00",
    "email": "mock@example.com",
    "uri": "https://example.com/mock",
    "url": "https://example.com/mock",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "ipv4": "127.0.0.1",
    "ipv6": "::1",
    "hostname": "example.com",
}


def generate_from_schema(schema: Any, *, name: str = "value") -> Any:
    """Return a value valid against ``schema``; ``name`` seeds string contents."""
    root = schema if isinstance(schema, Mapping) else {}
    return _gen(schema, root, name, 0)


def _resolve(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    seen = 0
    while "$ref" in schema and seen < _MAX_DEPTH:
        ref = schema["$ref"]
        target: Any = root
        if isinstance(ref, str) and ref.startswith("#"):
            for part in ref.lstrip("#").strip("/").split("/"):
                if not part:
                    continue
                part = part.replace("~1", "/").replace("~0", "~")
                target = target.get(part) if isinstance(target, Mapping) else None
        if not isinstance(target, Mapping):
            return {}
        extra = {k: v for k, v in schema.items() if k != "$ref"}
        schema = {**target, **extra}
        seen += 1
    return schema


def _gen(schema: Any, root: Mapping[str, Any], name: str, depth: int) -> Any:
    if not isinstance(schema, Mapping) or depth > _MAX_DEPTH:
        return None if depth > _MAX_DEPTH else f"mock {name}"
    schema = _resolve(schema, root)
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    all_of = schema.get("allOf")
    if isinstance(all_of, list) and all_of:
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for part in all_of:
            part = _resolve(part, root) if isinstance(part, Mapping) else {}
            merged["properties"] = {**merged.get("properties", {}), **part.get("properties", {})}
            merged["required"] = [*merged.get("required", []), *part.get("required", [])]
            merged.update({k: v for k, v in part.items() if k not in ("properties", "required")})
        return _gen(merged, root, name, depth + 1)
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            chosen = next((o for o in options if not _is_null(o, root)), options[0])
            return _gen(chosen, root, name, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        if "properties" in schema:
            kind = "object"
        elif "items" in schema:
            kind = "array"
        else:
            kind = "string"
    return _BY_TYPE.get(kind, _string)(schema, root, name, depth)


def _is_null(option: Any, root: Mapping[str, Any]) -> bool:
    return isinstance(option, Mapping) and _resolve(option, root).get("type") == "null"


def _object(schema: Mapping[str, Any], root: Mapping[str, Any], name: str, depth: int) -> Any:
    properties = schema.get("properties")
    result: dict[str, Any] = {}
    if isinstance(properties, Mapping):
        for key, sub in properties.items():
            result[str(key)] = _gen(sub, root, str(key), depth + 1)
    required = schema.get("required")
    if isinstance(required, list):
        for key in required:
            if isinstance(key, str) and key not in result:
                result[key] = f"mock {key}"
    return result


def _array(schema: Mapping[str, Any], root: Mapping[str, Any], name: str, depth: int) -> Any:
    prefix = schema.get("prefixItems")
    if isinstance(prefix, list):
        return [_gen(sub, root, name, depth + 1) for sub in prefix]
    low = int(schema.get("minItems", 1))
    high = schema.get("maxItems")
    count = max(low, 1)
    if isinstance(high, int):
        count = min(count, high)
    item = _gen(schema.get("items", {}), root, name, depth + 1)
    return [item] * count


def _string(schema: Mapping[str, Any], root: Mapping[str, Any], name: str, depth: int) -> Any:
    fmt = schema.get("format")
    text = _FORMATS.get(fmt, f"mock {name}") if isinstance(fmt, str) else f"mock {name}"
    low, high = schema.get("minLength"), schema.get("maxLength")
    if isinstance(low, int) and len(text) < low:
        text = (text + " " + "x" * low)[:low]
    if isinstance(high, int) and len(text) > high:
        text = text[:high]
    return text


def _number(schema: Mapping[str, Any], integer: bool) -> float | int:
    low = schema.get("minimum", schema.get("exclusiveMinimum"))
    high = schema.get("maximum", schema.get("exclusiveMaximum"))
    step = 1 if integer else 0.5
    if isinstance(low, int | float):
        value = float(low) + (
            step if "exclusiveMinimum" in schema and "minimum" not in schema else 0
        )
    elif isinstance(high, int | float):
        value = min(float(high) - (step if "exclusiveMaximum" in schema else 0), 1.0)
    else:
        value = 1.0
    if integer:
        value = math.ceil(value)
        if isinstance(high, int | float) and value > high:
            value = math.floor(high)
        return int(value)
    return value


def _integer(schema: Mapping[str, Any], root: Mapping[str, Any], name: str, depth: int) -> Any:
    return _number(schema, True)


def _float(schema: Mapping[str, Any], root: Mapping[str, Any], name: str, depth: int) -> Any:
    return _number(schema, False)


def _boolean(schema: Mapping[str, Any], root: Mapping[str, Any], name: str, depth: int) -> Any:
    return True


def _null(schema: Mapping[str, Any], root: Mapping[str, Any], name: str, depth: int) -> Any:
    return None


_BY_TYPE = {
    "object": _object,
    "array": _array,
    "string": _string,
    "integer": _integer,
    "number": _float,
    "boolean": _boolean,
    "null": _null,
}
