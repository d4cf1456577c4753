"""Schema-driven JSON generation for tool arguments and structured outputs."""

from __future__ import annotations

from typing import Any

from brace.mock._schema import generate_from_schema


def test_object_with_every_primitive() -> None:
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "days": {"type": "integer", "minimum": 3, "maximum": 9},
            "temp": {"type": "number", "exclusiveMinimum": 0, "maximum": 0.75},
            "metric": {"type": "boolean"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "note": {"type": ["null", "string"]},
            "fixed": {"const": 42},
        },
        "required": ["city", "days", "extra"],
    }
    value = generate_from_schema(schema)
    assert value["city"] == "mock city"
    assert value["days"] == 3
    assert isinstance(value["days"], int)
    assert 0 < value["temp"] <= 0.75
    assert value["metric"] is True
    assert value["unit"] == "celsius"
    assert value["note"] == "mock note"
    assert value["fixed"] == 42
    assert "extra" in value  # required without a property schema is still present


def test_arrays_and_nesting() -> None:
    schema = {
        "type": "object",
        "properties": {
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
            "points": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"x": {"type": "number"}, "y": {"type": "integer"}},
                    "required": ["x", "y"],
                },
            },
            "pair": {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}]},
        },
    }
    value = generate_from_schema(schema)
    assert value["tags"] == ["mock tags", "mock tags"]
    assert value["points"] == [{"x": 1.0, "y": 1}]
    assert value["pair"] == ["mock pair", 1]


def test_refs_anyof_allof_and_formats() -> None:
    schema: dict[str, Any] = {
        "$defs": {
            "Address": {
                "type": "object",
                "properties": {"street": {"type": "string", "maxLength": 4}},
                "required": ["street"],
            }
        },
        "type": "object",
        "properties": {
            "home": {"$ref": "#/$defs/Address"},
            "work": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/Address"}]},
            "both": {
                "allOf": [
                    {"properties": {"a": {"type": "integer"}}, "required": ["a"]},
                    {"properties": {"b": {"type": "boolean"}}},
                ]
            },
            "when": {"type": "string", "format": "date-time"},
            "code": {"type": "string", "minLength": 12},
        },
    }
    value = generate_from_schema(schema)
    assert value["home"] == {"street": "mock"}
    assert value["work"] == {"street": "mock"}
    assert value["both"] == {"a": 1, "b": True}
    assert value["when"] == "2024-01-01T00:00:00Z"
    assert len(value["code"]) == 12


def test_deterministic_and_tolerant() -> None:
    schema = {"type": "object", "properties": {"q": {"type": "string"}}}
    assert generate_from_schema(schema) == generate_from_schema(schema)
    assert generate_from_schema({}) == "mock value"
    assert generate_from_schema({"$ref": "#/nowhere"}) == "mock value"
    recursive = {"$ref": "#", "type": "object"}
    generate_from_schema(recursive)  # terminates
