"""What several unit tests share: reading a scripted answer's text, and letting the
event loop run every ready task without virtual time passing.

Plain helpers (imported: ``from .conftest import body_of, settle``), not fixtures: the
tests call them mid-scenario, as often as they need.
"""

from __future__ import annotations

import asyncio

from brace.stack import Response, StreamResponse

__all__ = ["body_of", "settle"]


def body_of(res: Response | StreamResponse) -> str:
    """The message content of a non-streamed chat answer (asserting it is one)."""
    assert isinstance(res, Response)
    content = res.json()["choices"][0]["message"]["content"]
    assert isinstance(content, str)
    return content


async def settle() -> None:
    """Let every ready task and callback run (no virtual time passes)."""
    for _ in range(20):
        await asyncio.sleep(0)
