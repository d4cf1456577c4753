"""docs/architecture.md shows the layers that `lint-imports` enforces, in the same order,
and every module it names as a stack slot exists."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "architecture.md").read_text()


def _contract_layers() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for contract in config["tool"]["importlinter"]["contracts"]:
        if contract["type"] == "layers":
            return [" | ".join(p.strip() for p in layer.split("|")) for layer in contract["layers"]]
    raise AssertionError("no layers contract in pyproject.toml")


def _doc_layers() -> list[str]:
    section = DOC.split("## Layers", 1)[1].split("```", 2)[1]
    rows = [line for line in section.splitlines() if line.strip()]
    # each row: the layer's modules, then at least two spaces and a comment (optional)
    return [re.split(r"\s{2,}", row.strip(), maxsplit=1)[0] for row in rows]


def test_the_doc_lists_the_enforced_layers_in_order() -> None:
    assert _doc_layers() == _contract_layers()


def test_every_layer_module_exists() -> None:
    src = ROOT / "src" / "brace"
    for layer in _contract_layers():
        for name in layer.split(" | "):
            assert (src / f"{name}.py").exists() or (src / name / "__init__.py").exists(), name


def test_every_stack_slot_names_a_module_that_exists() -> None:
    path = DOC.split("## One request, end to end", 1)[1].split("```", 2)[1]
    files = re.findall(r"\b((?:policies|cache|context|telemetry|providers)/[\w/]+(?:\.py|/))", path)
    assert len(files) >= 14, files
    for f in files:
        assert (ROOT / "src" / "brace" / f).exists(), f
