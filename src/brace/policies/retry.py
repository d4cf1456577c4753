"""Retries inside a model group: a policy plus a budget, under the request's deadline.

For each failed attempt the policy decides:

1. **whether**: only retryable classes (rate limited, overloaded, server error,
   timeout, connection error, malformed response, circuit open) are retried, at
   most ``max_attempts`` attempts in all, and only to a deployment whose
   :class:`RetryBudget` has room (retries sent to it ≤ ``budget_ratio`` × its
   requests + ``budget_min_retries_per_second`` × ``budget_window`` over
   ``budget_window`` seconds; the balancer
   enforces it and charges the deployment that takes the retry), so a sick
   upstream is not hammered while retries that move to a healthy one stay cheap;
2. **where**: the failed deployment is excluded for this request, so the next
   attempt goes to another available deployment when there is one;
3. **when**: at once if another deployment takes the retry; otherwise after the
   upstream's ``retry-after`` if it gave one, else after full-jitter exponential
   backoff ``U(0, min(backoff_max, backoff_base · 2ⁿ⁻¹))``.  A wait that would end
   past the deadline is not taken: the last failure is returned at once, with its
   ``retry-after``.

When several attempts failed, :class:`~brace.errors.AttemptsExhausted` carries them all.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from ..clock import Clock
from ..config import RetryConfig
from ..errors import AttemptsExhausted, RetryBudgetExhausted, UpstreamFailure
from ..events import EventBus, Retried
from ..stack import Handler, Request, Response, StreamResponse

__all__ = ["RetryBudget", "RetryPolicy", "backoff_delay"]

_BUCKETS = 10


class RetryBudget:
    """Per-deployment sliding-window budget: may this deployment's failure be retried?"""

    __slots__ = ("_clock", "_min", "_ratio", "_ring", "_width")

    def __init__(self, config: RetryConfig, *, clock: Clock) -> None:
        self._clock = clock
        self._ratio = config.budget_ratio
        self._min = config.budget_min_retries_per_second * config.budget_window
        self._width = config.budget_window / _BUCKETS
        # deployment -> ring of [bucket_index, requests, retries]
        self._ring: dict[str, list[list[float]]] = {}

    def _bucket(self, deployment: str) -> tuple[list[list[float]], int]:
        ring = self._ring.get(deployment)
        if ring is None:
            ring = self._ring[deployment] = [[-1.0, 0.0, 0.0] for _ in range(_BUCKETS)]
        idx = int(self._clock.now() / self._width)
        slot = ring[idx % _BUCKETS]
        if slot[0] != idx:
            slot[0], slot[1], slot[2] = idx, 0.0, 0.0
        return ring, idx

    def _totals(self, deployment: str) -> tuple[float, float]:
        ring, idx = self._bucket(deployment)
        requests = retries = 0.0
        for b, req, ret in ring:
            if idx - _BUCKETS < b <= idx:
                requests += req
                retries += ret
        return requests, retries

    def deposit(self, deployment: str) -> None:
        """A first attempt went to ``deployment``."""
        ring, idx = self._bucket(deployment)
        ring[idx % _BUCKETS][1] += 1

    def can_withdraw(self, deployment: str) -> bool:
        """May one more retry (or hedge) be sent to ``deployment`` now?"""
        requests, retries = self._totals(deployment)
        return retries < self._ratio * requests + self._min

    def withdraw(self, deployment: str) -> None:
        """A retry (or hedge) was sent to ``deployment``."""
        ring, idx = self._bucket(deployment)
        ring[idx % _BUCKETS][2] += 1

    def try_withdraw(self, deployment: str) -> bool:
        """:meth:`can_withdraw`, and if so :meth:`withdraw`."""
        if not self.can_withdraw(deployment):
            return False
        self.withdraw(deployment)
        return True

    def snapshot(self, deployment: str) -> dict[str, float]:
        requests, retries = self._totals(deployment)
        return {
            "requests": requests,
            "retries": retries,
            "allowed": self._ratio * requests + self._min,
        }


def backoff_delay(config: RetryConfig, retry_number: int, rng: random.Random) -> float:
    """Full jitter: ``U(0, min(backoff_max, backoff_base · 2^(retry_number-1)))``."""
    cap = min(config.backoff_max, config.backoff_base * (2 ** (retry_number - 1)))
    return rng.uniform(0.0, cap)


class RetryPolicy:
    def __init__(
        self,
        group: str,
        config: RetryConfig,
        *,
        has_alternative: Callable[[set[str]], bool],
        budget_exhausted: Callable[[], bool] = lambda: False,
        clock: Clock,
        events: EventBus,
        rng: random.Random | None = None,
    ) -> None:
        self._group = group
        self._config = config
        self._has_alternative = has_alternative
        self._budget_exhausted = budget_exhausted
        self._clock = clock
        self._events = events
        self._rng = rng if rng is not None else random.Random()

    def wrap(self, inner: Handler) -> Handler:
        config = self._config
        clock = self._clock

        async def retry(req: Request) -> Response | StreamResponse:
            failures: list[UpstreamFailure] = []
            exclude: set[str] | None = None
            same_deployment_retries = 0
            state = req.state
            for attempt in range(1, config.max_attempts + 1):
                state.retry = attempt > 1
                try:
                    return await inner(req)
                except RetryBudgetExhausted:
                    break  # the failure that prompted this retry is the answer
                except UpstreamFailure as exc:
                    failed = exc.failures if isinstance(exc, AttemptsExhausted) else [exc]
                    failures.extend(failed)
                    if not failed[-1].retryable or attempt == config.max_attempts:
                        break
                    dep = exc.deployment or ""
                    if exclude is None:
                        exclude = state.exclude = set()
                    exclude.update(f.deployment for f in failed if f.deployment)
                    if self._budget_exhausted():
                        break  # deployments are up but none may take a retry: do not wait
                    if self._has_alternative(exclude):
                        delay = 0.0
                    else:
                        same_deployment_retries += 1
                        delay = (
                            exc.retry_after
                            if exc.retry_after is not None
                            else backoff_delay(config, same_deployment_retries, self._rng)
                        )
                        if req.deadline is not None and clock.now() + delay >= req.deadline:
                            break
                    self._events.emit(
                        Retried(
                            req.request_id, self._group, dep, exc.error_class, delay, attempt + 1
                        )
                    )
                    state.retry_delay = delay  # the next attempt records it
                    if delay > 0:
                        await clock.sleep(delay)
            state.retry = False
            if len(failures) == 1:
                raise failures[0]
            raise AttemptsExhausted(failures)

        return retry
