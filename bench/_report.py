"""What the bench scripts share to report a run: its metadata (date, command line,
machine, load average, versions), Markdown tables, percentiles, and publishing it (raw
JSON under bench/results/, the script's section of docs/benchmarks.md, the terminal).

Standard library only; it runs under the project venv's Python.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from _harness import LITELLM_VENV, PROJECT_PY, RESULTS, ROOT

DOC = ROOT / "docs" / "benchmarks.md"
MISSING = "—"
"""What a table shows for a value that was not measured."""


# ----------------------------------------------------------------------------- run metadata


def utc_now() -> str:
    """The time a report is dated with, e.g. ``2026-12-02 18:06 UTC``."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def command_line(script: str) -> str:
    """How this run was started, as a report quotes it: ``.venv/bin/python bench/X.py ARGS``."""
    return f".venv/bin/python bench/{script}" + "".join(f" {a}" for a in sys.argv[1:])


def machine() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    # A crude single-core speed reference, to compare machines.
    loops = []
    for _ in range(5):
        t0 = time.perf_counter()
        sum(range(10**6))
        loops.append(time.perf_counter() - t0)
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "sum_range_ms": min(loops) * 1000,
        "loadavg_1m": os.getloadavg()[0],
    }


def dist_version(dist: str, python: str | None = None) -> str:
    """A distribution's version, in this Python or in another venv's ``python``."""
    code = f"from importlib.metadata import version; print(version({dist!r}))"
    proc = subprocess.run([python or str(PROJECT_PY), "-c", code], capture_output=True, text=True)
    return proc.stdout.strip() or "not installed"


def scenario_versions() -> dict[str, str]:
    """Brace's version in the project venv and LiteLLM's in bench/.venv-litellm."""
    litellm_py = str(LITELLM_VENV / "bin" / "python")
    return {"brace": dist_version("brace"), "litellm": dist_version("litellm", litellm_py)}


def run_info(
    script: str, *, started: float, loadavg_start: float, versions: dict[str, str]
) -> dict[str, Any]:
    """The metadata every scenario report starts with: date, command, elapsed seconds
    (``started`` is a ``time.monotonic()``), load average at the start and now, and the
    machine with its kernel, Python and the given ``versions``."""
    return {
        "date": utc_now(),
        "command": command_line(script),
        "elapsed_s": round(time.monotonic() - started, 1),
        "loadavg_start": loadavg_start,
        "loadavg_end": os.getloadavg()[0],
        "machine": {
            **machine(),
            "kernel": platform.release(),
            "python": platform.python_version(),
            **versions,
        },
    }


# ----------------------------------------------------------------------------- numbers and tables


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (``p`` in 0..100); ``None`` for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]


def fmt(value: float | None, spec: str, suffix: str = "") -> str:
    """``value`` formatted with ``spec`` (and ``suffix``), or ``—`` when it is missing."""
    return MISSING if value is None else f"{value:{spec}}{suffix}"


def table_row(cells: Iterable[object]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def table(head: Sequence[str], align: str, rows: Iterable[Sequence[object]] = ()) -> str:
    """A Markdown table: ``align`` has one letter a column, ``l`` (left) or ``r`` (right);
    a row given as a ``str`` is taken as an already rendered row."""
    assert len(align) == len(head) and set(align) <= {"l", "r"}, (head, align)
    rule = "|" + "|".join("---" if a == "l" else "--:" for a in align) + "|"
    lines = [table_row(head), rule]
    lines += [row if isinstance(row, str) else table_row(row) for row in rows]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- publishing


def replace_section(name: str, content: str, *, path: Path = DOC) -> None:
    """Write ``content`` between ``<!-- bench:NAME:start -->`` and ``end`` markers.

    The rest of the file survives; a missing section is appended.
    """
    start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
    block = f"{start}\n{content.strip()}\n{end}"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def save_json(prefix: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = RESULTS / f"{prefix}-{stamp}.json"
    path.write_text(json.dumps(data, indent=2))
    (RESULTS / f"{prefix}-latest.json").write_text(json.dumps(data, indent=2))
    return path


def publish(section: str, prefix: str, data: dict[str, Any], text: str, *, doc: bool) -> None:
    """Save ``data`` as bench/results/PREFIX-*.json, write ``text`` as the ``section``
    of docs/benchmarks.md (unless ``doc`` is false) and print it."""
    saved = save_json(prefix, data)
    if doc:
        replace_section(section, text)
    print()
    print(text)
    elapsed = f"; elapsed {data['elapsed_s']} s" if "elapsed_s" in data else ""
    print(f"\nraw results: {saved.relative_to(ROOT)}{elapsed}")
