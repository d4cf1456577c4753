"""A request's run identity, as the caller sends it: headers, body metadata, or the
in-process ``client.run(...)`` context.

- ``x-brace-run-id`` (or ``metadata.brace_run_id`` in the body) names the run;
  ``x-brace-agent`` (``metadata.brace_agent``) the agent, ``x-brace-run-step``
  (``metadata.brace_run_step``) a label for this step.  Headers win over the body.
- Brace's own ``brace_*`` keys are taken out of ``metadata`` before the body goes
  upstream (an upstream never sees them; ``metadata`` left empty is removed).
- A malformed value, or an ``x-brace-run-*`` header Brace does not know, is a 400
  naming the header or field: a typo never silently drops a request out of its run.
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ..errors import BadRequest
from ._model import LinkedBy, RunRef

__all__ = [
    "RUN_HEADERS",
    "RunContext",
    "current_run",
    "read_run",
    "run_context",
]

RUN_HEADERS = ("x-brace-run-id", "x-brace-agent", "x-brace-run-step")
_KNOWN_PREFIXED = frozenset(h for h in RUN_HEADERS if h.startswith("x-brace-run"))
_BODY_KEYS = {
    "x-brace-run-id": "brace_run_id",
    "x-brace-agent": "brace_agent",
    "x-brace-run-step": "brace_run_step",
}

_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/+=-]{0,127}")
MAX_RUN_ID = 128
MAX_AGENT = 64
MAX_LABEL = 128


def check_run_id(value: object, where: str) -> str:
    if not isinstance(value, str) or not _RUN_ID.fullmatch(value):
        shown = value[:40] if isinstance(value, str) else type(value).__name__
        raise BadRequest(
            f"{where} must be 1 to {MAX_RUN_ID} characters: letters, digits and . _ : @ / + = - "
            f"(starting with a letter or digit); got {shown!r}",
            param=where,
        )
    return value


def _check_text(value: object, where: str, limit: int) -> str:
    if not isinstance(value, str) or not value or len(value) > limit or not value.isprintable():
        shown = value[:40] if isinstance(value, str) else type(value).__name__
        raise BadRequest(
            f"{where} must be printable text of 1 to {limit} characters; got {shown!r}",
            param=where,
        )
    return value


@dataclass(frozen=True, slots=True)
class RunContext:
    """What ``client.run(...)`` put in the context: the in-process run identity."""

    run_id: str
    agent: str | None = None
    label: str | None = None


_CURRENT: contextvars.ContextVar[RunContext | None] = contextvars.ContextVar(
    "brace_run", default=None
)


def current_run() -> RunContext | None:
    """The run of the enclosing ``client.run(...)`` block, if any."""
    return _CURRENT.get()


@contextmanager
def run_context(
    run_id: str, *, agent: str | None = None, label: str | None = None
) -> Iterator[RunContext]:
    """Every call inside joins run ``run_id`` (sync or async code; a context variable)."""
    ctx = RunContext(
        check_run_id(run_id, "run_id"),
        None if agent is None else _check_text(agent, "agent", MAX_AGENT),
        None if label is None else _check_text(label, "label", MAX_LABEL),
    )
    token = _CURRENT.set(ctx)
    try:
        yield ctx
    finally:
        _CURRENT.reset(token)


def read_run(headers: Mapping[str, str], body: dict[str, Any], tenant: str) -> RunRef | None:
    """The run a gateway request names (``None``: none named), checked; takes Brace's
    keys out of ``body["metadata"]``."""
    for name in headers:
        low = name.lower()
        if low.startswith("x-brace-run") and low not in _KNOWN_PREFIXED:
            raise BadRequest(
                f"unknown header {name}: Brace's run headers are {', '.join(RUN_HEADERS)}",
                param=low,
            )
    values: dict[str, str] = {}
    linked_by: LinkedBy = "header"
    for header in RUN_HEADERS:
        value = headers.get(header)
        if value is not None:
            values[header] = value
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and any(k.startswith("brace_") for k in metadata):
        for header, key in _BODY_KEYS.items():
            if key in metadata and header not in values:
                values[header] = metadata[key]
                if header == "x-brace-run-id":
                    linked_by = "body"
        unknown = [k for k in metadata if k.startswith("brace_") and k not in _BODY_KEYS.values()]
        if unknown:
            raise BadRequest(
                f"unknown metadata key {unknown[0]!r}: Brace's are "
                f"{', '.join(_BODY_KEYS.values())}",
                param=f"metadata.{unknown[0]}",
            )
        kept = {k: v for k, v in metadata.items() if not k.startswith("brace_")}
        if kept:
            body["metadata"] = kept
        else:
            del body["metadata"]
    run_id = values.get("x-brace-run-id")
    agent = values.get("x-brace-agent")
    label = values.get("x-brace-run-step")
    if run_id is None:
        if agent is not None or label is not None:
            name = "x-brace-agent" if agent is not None else "x-brace-run-step"
            raise BadRequest(
                f"{name} needs x-brace-run-id (or metadata.brace_run_id): name the run",
                param=name,
            )
        return None
    where = "x-brace-run-id" if linked_by == "header" else "metadata.brace_run_id"
    return RunRef(
        check_run_id(run_id, where),
        tenant,
        linked_by,
        agent=None if agent is None else _check_text(agent, "x-brace-agent", MAX_AGENT),
        label=None if label is None else _check_text(label, "x-brace-run-step", MAX_LABEL),
    )


def context_run(ctx: RunContext, tenant: str) -> RunRef:
    return RunRef(ctx.run_id, tenant, "context", agent=ctx.agent, label=ctx.label)
