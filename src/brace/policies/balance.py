"""Balancing across a model group's deployments.

:class:`Balancer` is the handler at the bottom of a group's stack: for each
attempt it picks one deployment and calls that deployment's own stack
(breaker → attempt → provider).  The pick:

1. **health**: deployments whose breaker lets nothing through are skipped, and so
   are those that already failed this request (``request.state.exclude``) when
   another one is available;
   a retry or a hedge (``request.state.retry`` / ``.hedge``) only goes to a
   deployment whose :class:`~brace.policies.retry.RetryBudget` has room, and is
   charged to it — so retries to a sick deployment stay capped, while retries that
   move to a healthy one are cheap; a first attempt is deposited in the budget of
   the deployment it goes to;
2. **power of two choices**: two candidates are drawn at random in proportion to
   their weights, and the one with the lower cost wins, where
   ``cost = (outstanding + 1) × EWMA latency`` (a deployment with no success yet
   is costed at the mean latency of those that have one).

Outstanding counts attempts in flight (a stream until it is closed).  The latency
EWMA learns from successful attempts only: a deployment that fails fast must not
look fast.  Failures are the breaker's business — it needs the volume to judge,
so the balancer does not starve a failing deployment before its breaker decides.
The EWMA error rate is kept for the admin API.  The randomness is injected (``rng``).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..clock import Clock
from ..errors import CircuitOpen, NoCapacity, RetryBudgetExhausted, UpstreamFailure
from ..stack import Handler, Request, Response, StreamResponse

if TYPE_CHECKING:
    from .breaker import CircuitBreaker
    from .pacing import Pacer
    from .retry import RetryBudget

__all__ = ["Balancer", "DeploymentState"]

_ALPHA = 0.2
_MIN_LATENCY = 0.001


class DeploymentState:
    """A deployment as the balancer sees it."""

    __slots__ = (
        "breaker",
        "errors",
        "handler",
        "id",
        "latency",
        "outstanding",
        "pacer",
        "price",
        "samples",
        "weight",
    )

    def __init__(
        self,
        id: str,
        handler: Handler,
        *,
        weight: float = 1.0,
        breaker: CircuitBreaker | None = None,
        pacer: Pacer | None = None,
        price: float = 0.0,
    ) -> None:
        self.id = id
        self.handler = handler
        self.weight = weight
        self.breaker = breaker
        self.pacer = pacer
        self.price = price
        self.outstanding = 0
        self.latency = 0.0
        self.samples = 0
        self.errors = 0.0

    def available(self) -> bool:
        return self.breaker is None or self.breaker.available()

    def cost(self, unknown_latency: float = _MIN_LATENCY) -> float:
        """Weights act through the random draw, not here (counting them twice would
        give the heavier deployment everything at equal load)."""
        latency = self.latency if self.samples else unknown_latency
        return (self.outstanding + 1) * max(latency, _MIN_LATENCY)

    def observe(self, duration: float | None, failed: bool) -> None:
        """``duration``: a successful attempt's latency; ``None`` for a failure."""
        if duration is not None:
            if self.samples == 0:
                self.latency = duration
            else:
                self.latency += _ALPHA * (duration - self.latency)
            self.samples += 1
        self.errors += _ALPHA * ((1.0 if failed else 0.0) - self.errors)

    def snapshot(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "weight": self.weight,
            "outstanding": self.outstanding,
            "ewma_latency_s": round(self.latency, 6) if self.samples else None,
            "ewma_error_rate": round(self.errors, 4),
            "breaker": self.breaker.snapshot() if self.breaker is not None else None,
            "capacity": self.pacer.snapshot() if self.pacer is not None else None,
        }


class Balancer:
    __slots__ = ("_budget", "_clock", "_default_max", "_prefer", "_rng", "_states")

    def __init__(
        self,
        states: Sequence[DeploymentState],
        *,
        clock: Clock,
        rng: random.Random | None = None,
        budget: RetryBudget | None = None,
        prefer: str = "latency",
        default_max_tokens: int = 256,
    ) -> None:
        if not states:
            raise ValueError("a balancer needs at least one deployment")
        self._prefer = prefer
        self._default_max = default_max_tokens
        self._states = tuple(states)
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._budget = budget

    @property
    def deployments(self) -> tuple[DeploymentState, ...]:
        return self._states

    def has_alternative(self, exclude: set[str] | frozenset[str]) -> bool:
        """Could a retry or hedge go now to a deployment outside ``exclude`` (available,
        and with retry budget left)?"""
        budget = self._budget
        return any(
            s.id not in exclude and s.available() and (budget is None or budget.can_withdraw(s.id))
            for s in self._states
        )

    def budget_exhausted(self) -> bool:
        """Are deployments available, but none with retry budget left?"""
        budget = self._budget
        if budget is None:
            return False
        up = [s for s in self._states if s.available()]
        return bool(up) and not any(budget.can_withdraw(s.id) for s in up)

    def pick(
        self,
        exclude: set[str] | frozenset[str] = frozenset(),
        budget: RetryBudget | None = None,
    ) -> DeploymentState | None:
        """The deployment for the next attempt; ``budget``: only those with retry budget."""
        states = self._states
        if len(states) == 1:
            only = states[0]
            ok = only.available() and (budget is None or budget.can_withdraw(only.id))
            return only if ok else None
        candidates = [
            s
            for s in states
            if s.id not in exclude
            and s.available()
            and (budget is None or budget.can_withdraw(s.id))
        ]
        if not candidates:
            candidates = [
                s for s in states if s.available() and (budget is None or budget.can_withdraw(s.id))
            ]
            if not candidates:
                return None
        if len(candidates) == 1:
            return candidates[0]
        return self._choose(candidates)

    def _choose(self, candidates: list[DeploymentState]) -> DeploymentState:
        if len(candidates) == 1:
            return candidates[0]
        if self._prefer == "order":
            return candidates[0]
        if self._prefer == "cost":
            return min(candidates, key=lambda c: c.price)
        a, b = self._two(candidates)
        known = [c.latency for c in candidates if c.samples]
        unknown = sum(known) / len(known) if known else _MIN_LATENCY
        return a if a.cost(unknown) <= b.cost(unknown) else b

    async def _with_capacity(
        self,
        req: Request,
        chosen: DeploymentState,
        exclude: set[str] | frozenset[str],
        budget: RetryBudget | None,
    ) -> DeploymentState:
        """Spill-over: if ``chosen`` has no capacity now, the preferred deployment that
        has; if none has, :class:`NoCapacity` with the soonest wait."""
        from .pacing import request_tokens

        tokens = request_tokens(req, self._default_max)
        assert chosen.pacer is not None
        wait = await chosen.pacer.peek(tokens)
        if wait == 0.0:
            return chosen
        ready: list[DeploymentState] = []
        waits: list[float] = [] if wait is None else [wait]
        for s in self._states:
            if s is chosen or s.pacer is None or not s.available():
                continue
            if budget is not None and not budget.can_withdraw(s.id):
                continue
            w = await s.pacer.peek(tokens)
            if w == 0.0:
                ready.append(s)
            elif w is not None:
                waits.append(w)
        if ready:
            fresh = [s for s in ready if s.id not in exclude] or ready
            return self._choose(fresh)
        raise NoCapacity(
            f"model group {req.model!r}: no deployment has capacity now",
            wait=min(waits) if waits else None,
        )

    def _two(self, candidates: list[DeploymentState]) -> tuple[DeploymentState, DeploymentState]:
        rng = self._rng
        weights = [c.weight for c in candidates]
        if len(set(weights)) == 1:
            a, b = rng.sample(candidates, 2)
            return a, b
        a = rng.choices(candidates, weights)[0]
        rest = [c for c in candidates if c is not a]
        b = rng.choices(rest, [c.weight for c in rest])[0]
        return a, b

    async def __call__(self, req: Request) -> Response | StreamResponse:
        rstate = req.state
        exclude: set[str] | frozenset[str] = rstate.exclude or frozenset()
        budget = self._budget
        charged = budget is not None and (rstate.retry or rstate.hedge)
        state = self.pick(exclude, budget if charged else None)
        if state is None:
            if charged and any(s.available() for s in self._states):
                raise RetryBudgetExhausted(
                    f"model group {req.model!r}: no deployment has retry budget left",
                )
            soonest = [s.breaker.retry_after() for s in self._states if s.breaker is not None]
            waits = [w for w in soonest if w is not None]
            raise CircuitOpen(
                f"model group {req.model!r}: every deployment's circuit breaker is open",
                deployment=self._states[0].id if len(self._states) == 1 else None,
                retry_after=min(waits) if waits else None,
            )
        if len(self._states) > 1 and state.pacer is not None:
            state = await self._with_capacity(req, state, exclude, budget if charged else None)
        rstate.deployment = state.id
        if budget is not None:
            if charged:
                budget.withdraw(state.id)
            else:
                budget.deposit(state.id)
        clock = self._clock
        start = clock.now()
        state.outstanding += 1
        try:
            result = await state.handler(req)
        except UpstreamFailure as exc:
            state.outstanding -= 1
            if not isinstance(exc, CircuitOpen):
                state.observe(None, exc.error_class != "rate_limited")
            raise
        except BaseException:
            state.outstanding -= 1
            raise
        state.observe(clock.now() - start, False)
        if isinstance(result, StreamResponse):
            return StreamResponse(
                result.chunks, headers=result.headers, close=_release(state, result)
            )
        state.outstanding -= 1
        return result


def _release(state: DeploymentState, stream: StreamResponse) -> Any:
    async def close() -> None:
        state.outstanding -= 1
        await stream.aclose()

    return close
