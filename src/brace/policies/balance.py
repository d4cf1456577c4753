"""Balancing across a model group's deployments.

:class:`Balancer` is the handler at the bottom of a group's stack: it picks one
deployment per attempt and calls its provider.  The pick is a smooth weighted
round-robin (nginx's algorithm): over any window of ``sum(weights)`` picks each
deployment gets exactly its share, with no randomness and O(n) work per pick.
The chosen deployment is recorded in ``request.meta["deployment"]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..stack import Handler, Request, Response, StreamResponse

__all__ = ["Balancer", "Target"]


@dataclass(frozen=True, slots=True)
class Target:
    id: str
    weight: float
    handler: Handler


class Balancer:
    __slots__ = ("_current", "_targets", "_total")

    def __init__(self, targets: Sequence[Target]) -> None:
        if not targets:
            raise ValueError("a balancer needs at least one target")
        self._targets = tuple(targets)
        self._current = [0.0] * len(self._targets)
        self._total = sum(t.weight for t in self._targets)

    @property
    def targets(self) -> tuple[Target, ...]:
        return self._targets

    def pick(self) -> Target:
        targets = self._targets
        if len(targets) == 1:
            return targets[0]
        current = self._current
        best = 0
        for i, t in enumerate(targets):
            current[i] += t.weight
            if current[i] > current[best]:
                best = i
        current[best] -= self._total
        return targets[best]

    async def __call__(self, req: Request) -> Response | StreamResponse:
        target = self.pick()
        req.meta["deployment"] = target.id
        return await target.handler(req)
