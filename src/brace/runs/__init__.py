"""Agent runs: every multi-step agent seen as one run (docs/runs.md).

The records and events of a run live in :mod:`brace.runs._model`; the door's parsing of
run identity, the conversation link, the tracker and the stack's ``runs`` slot build
them.  Telemetry (metrics, traces, the store's writer) subscribes to the events.
"""

from ._identity import RunContext, current_run, read_run, run_context
from ._model import (
    LinkedBy,
    RunRecord,
    RunRef,
    RunStatus,
    RunStatusChanged,
    RunUpdated,
    StepKind,
    StepRecord,
    StepStatus,
    StepUpdated,
)
from ._tracker import RunTracker, ToolCall
from .policy import RunPolicy

__all__ = [
    "LinkedBy",
    "RunContext",
    "RunPolicy",
    "RunRecord",
    "RunRef",
    "RunStatus",
    "RunStatusChanged",
    "RunTracker",
    "RunUpdated",
    "StepKind",
    "StepRecord",
    "StepStatus",
    "StepUpdated",
    "ToolCall",
    "current_run",
    "read_run",
    "run_context",
]
