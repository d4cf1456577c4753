"""A circuit breaker per deployment, over server-side failures only.

:class:`CircuitBreaker` is the state machine of one deployment; :class:`BreakerPolicy`
is the policy that consults it before each attempt and feeds it each outcome.  The
balancer's health filter asks :meth:`CircuitBreaker.available` to skip open
deployments; a request that still reaches an open one fails fast with
:class:`~brace.errors.CircuitOpen` (503, ``retry-after``) without being sent.

::

                 failures/requests >= failure_rate
                 and requests >= min_requests
       ┌────────┐      (in the rolling window)       ┌──────┐
       │ CLOSED │ ─────────────────────────────────▶ │ OPEN │ ◀──────────┐
       └────────┘                                    └──────┘            │
           ▲                                 open period passed          │ one probe
           │                                 (checked lazily on access)  │ fails
           │                                             ▼               │ (longer period)
           │    half_open_probes probes succeed   ┌───────────┐          │
           └───────────────────────────────────── │ HALF_OPEN │ ─────────┘
                  (the window is cleared)         └───────────┘
                                               at most half_open_probes
                                               attempts in flight

What counts: only server-side outcomes.  :data:`FAILURE_CLASSES` (``server_error``,
``overloaded``, ``timeout``, ``connection_error``, ``malformed_response``) are
failures, a ``None`` class is a success, and everything else (:data:`IGNORED_CLASSES`:
429s, which are the pacing policy's business, the caller's 4xx mistakes, the
request's own deadline, another breaker's refusal) counts neither as a failure nor
in the volume.

The open period is ``min(max_open_for, open_for * 2**consecutive_trips)``; the
number of consecutive trips goes back to 0 only after the breaker has stayed closed
for a whole window, so a flapping upstream is left alone for longer each time.

Defaults (:class:`brace.config.BreakerConfig`): ``window`` 10 s (in 10 buckets of
1 s), ``min_requests`` 10, ``failure_rate`` 0.3, ``open_for`` 5 s, ``max_open_for``
60 s, ``half_open_probes`` 3.

There are no timers and no tasks: every transition is computed from the injected
clock when the breaker is used or looked at.  Each transition emits
:class:`~brace.events.BreakerChanged`.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from ..clock import Clock
from ..config import BreakerConfig
from ..errors import CircuitOpen, UpstreamFailure
from ..events import BreakerChanged, EventBus
from ..stack import Handler, Request, Response, StreamResponse

__all__ = [
    "FAILURE_CLASSES",
    "IGNORED_CLASSES",
    "BreakerPolicy",
    "BreakerState",
    "CircuitBreaker",
]

BreakerState = Literal["closed", "open", "half_open"]

FAILURE_CLASSES: Final = frozenset(
    {"server_error", "overloaded", "timeout", "connection_error", "malformed_response"}
)
"""Error classes that count as failures of the deployment."""

IGNORED_CLASSES: Final = frozenset(
    {
        "rate_limited",
        "bad_request",
        "context_window_exceeded",
        "content_filtered",
        "authentication",
        "not_found",
        "deadline_exceeded",
        "circuit_open",
    }
)
"""Error classes that say nothing about the deployment's health (not even volume).
Any class in neither set is ignored as well."""

_CLOSED: Final = "closed"
_OPEN: Final = "open"
_HALF_OPEN: Final = "half_open"
_BUCKETS: Final = 10
_MAX_DOUBLINGS: Final = 62  # 2**62 * open_for is past any max_open_for; avoids float overflow


class CircuitBreaker:
    """The breaker of one deployment.

    Outcomes go in through :meth:`record` (``None`` for a success, else the
    attempt's ``error_class``).  Attempts are admitted by :meth:`acquire` (or
    :meth:`admit`, which also returns a ticket) and a cancelled attempt gives its
    half-open probe slot back with :meth:`release`.
    """

    __slots__ = (
        "_clock",
        "_closed_since",
        "_config",
        "_deployment",
        "_epoch",
        "_events",
        "_fails",
        "_failure_rate",
        "_head",
        "_inv_width",
        "_max_probes",
        "_min_requests",
        "_open_for",
        "_open_until",
        "_probes",
        "_reqs",
        "_state",
        "_successes",
        "_total_fails",
        "_total_reqs",
        "_trips",
        "_window",
    )

    def __init__(
        self,
        deployment: str,
        config: BreakerConfig,
        *,
        clock: Clock,
        events: EventBus | None = None,
    ) -> None:
        self._deployment = deployment
        self._config = config
        self._clock = clock
        self._events = events
        # copied out of the (pydantic) config: plain slots are cheaper on the hot path
        self._window = config.window
        self._min_requests = config.min_requests
        self._failure_rate = config.failure_rate
        self._max_probes = config.half_open_probes
        now = clock.now()
        self._state: BreakerState = _CLOSED
        self._epoch = 0  # bumped on every transition; tickets from an older epoch are stale
        self._trips = 0
        self._closed_since = now
        self._open_until = 0.0
        self._open_for = 0.0
        self._probes = 0  # half-open probe slots in flight
        self._successes = 0  # half-open probe successes so far
        # The rolling window: a ring of _BUCKETS buckets keyed by int(now / width);
        # _head is the newest bucket index and the totals are the sums over the ring.
        self._inv_width = _BUCKETS / config.window
        self._reqs = [0] * _BUCKETS
        self._fails = [0] * _BUCKETS
        self._total_reqs = 0
        self._total_fails = 0
        self._head = int(now * self._inv_width)

    # ------------------------------------------------------------------ reading

    @property
    def deployment(self) -> str:
        return self._deployment

    @property
    def config(self) -> BreakerConfig:
        return self._config

    @property
    def state(self) -> BreakerState:
        """``closed``, ``open`` or ``half_open`` as of now."""
        self._refresh(self._clock.now())
        return self._state

    def available(self) -> bool:
        """Would an attempt be let through now?  Takes no probe slot."""
        if self._state == _CLOSED:
            return True
        self._refresh(self._clock.now())
        if self._state == _OPEN:
            return False
        return self._probes < self._max_probes

    def retry_after(self) -> float | None:
        """Seconds until the open period ends; ``None`` unless open."""
        now = self._clock.now()
        self._refresh(now)
        if self._state == _OPEN:
            return self._open_until - now
        return None

    def snapshot(self) -> dict[str, Any]:
        """The breaker's state for the admin API and metrics (plain JSON values)."""
        now = self._clock.now()
        self._refresh(now)
        self._advance(int(now * self._inv_width))
        reqs, fails = self._total_reqs, self._total_fails
        return {
            "deployment": self._deployment,
            "state": self._state,
            "requests": reqs,
            "failures": fails,
            "failure_rate": fails / reqs if reqs else 0.0,
            "consecutive_trips": self._trips,
            "open_for": self._open_for if self._state == _OPEN else None,
            "retry_after": self._open_until - now if self._state == _OPEN else None,
            "probes_in_flight": self._probes if self._state == _HALF_OPEN else 0,
            "probe_successes": self._successes if self._state == _HALF_OPEN else 0,
        }

    # ------------------------------------------------------------------ admission

    def admit(self) -> int | None:
        """Admit one attempt now, taking a probe slot when half-open.

        Returns a ticket (the current state's epoch) or ``None`` when refused.  Give
        the ticket back to :meth:`record` / :meth:`release` so that the outcome of an
        attempt admitted before a state change (a slow request started while closed,
        a probe of an earlier half-open round) is dropped instead of being mistaken
        for a current probe.
        """
        if self._state == _CLOSED:  # only record() leaves closed: no clock needed
            return self._epoch
        self._refresh(self._clock.now())
        if self._state == _HALF_OPEN and self._probes < self._max_probes:
            self._probes += 1
            return self._epoch
        return None

    def acquire(self) -> bool:
        """Like :meth:`available`, but takes a probe slot when half-open."""
        return self.admit() is not None

    def release(self, *, ticket: int | None = None) -> None:
        """Give back a probe slot without an outcome (the attempt was cancelled)."""
        if ticket is not None and ticket != self._epoch:
            return
        if self._state == _HALF_OPEN and self._probes:
            self._probes -= 1

    def record(self, error_class: str | None, *, ticket: int | None = None) -> None:
        """Record one attempt's outcome: ``None`` on success, else its error class.

        With a ``ticket`` from :meth:`admit`, an outcome from before the last
        transition is dropped.  In half-open, recording frees the probe's slot.
        """
        now = self._clock.now()
        self._refresh(now)
        if ticket is not None and ticket != self._epoch:
            return
        state = self._state
        if state == _CLOSED:
            if error_class is None:
                failed = False
            elif error_class in FAILURE_CLASSES:
                failed = True
            else:
                return
            idx = int(now * self._inv_width)
            if idx > self._head:
                self._advance(idx)
            slot = self._head % _BUCKETS
            self._reqs[slot] += 1
            reqs = self._total_reqs = self._total_reqs + 1
            fails = self._total_fails
            if failed:
                self._fails[slot] += 1
                fails = self._total_fails = fails + 1
            if reqs >= self._min_requests and fails / reqs >= self._failure_rate:
                self._trip(now)
        elif state == _HALF_OPEN:
            if self._probes:
                self._probes -= 1
            if error_class is None:
                self._successes += 1
                if self._successes >= self._max_probes:
                    self._close(now)
            elif error_class in FAILURE_CLASSES:
                self._trip(now)
        # open: nothing is let through, so nothing current can be recorded

    def rejection(self) -> CircuitOpen:
        """The :class:`CircuitOpen` error for an attempt refused now."""
        retry_after = self.retry_after()
        if retry_after is None:
            why = f"half-open, {self._probes} probe(s) already in flight"
        else:
            why = f"retry in {retry_after:.1f}s"
        return CircuitOpen(
            f"deployment {self._deployment}: circuit open ({why})",
            deployment=self._deployment,
            retry_after=retry_after,
        )

    # ------------------------------------------------------------------ internals

    def _refresh(self, now: float) -> None:
        """Apply the time-driven changes: open → half-open, and forget past trips."""
        state = self._state
        if state == _CLOSED:
            if self._trips and now - self._closed_since >= self._window:
                self._trips = 0
        elif state == _OPEN and now >= self._open_until:
            self._probes = 0
            self._successes = 0
            self._transition(_HALF_OPEN, None)

    def _advance(self, idx: int) -> None:
        """Move the window's head to bucket ``idx``, emptying the buckets it passes."""
        head = self._head
        if idx <= head:
            return
        reqs, fails = self._reqs, self._fails
        if idx - head >= _BUCKETS:
            for i in range(_BUCKETS):
                reqs[i] = 0
                fails[i] = 0
            self._total_reqs = 0
            self._total_fails = 0
        else:
            for i in range(head + 1, idx + 1):
                slot = i % _BUCKETS
                self._total_reqs -= reqs[slot]
                self._total_fails -= fails[slot]
                reqs[slot] = 0
                fails[slot] = 0
        self._head = idx

    def _trip(self, now: float) -> None:
        config = self._config
        period = min(config.max_open_for, config.open_for * (1 << min(self._trips, _MAX_DOUBLINGS)))
        self._trips += 1
        self._open_for = period
        self._open_until = now + period
        self._probes = 0
        self._successes = 0
        self._transition(_OPEN, period)

    def _close(self, now: float) -> None:
        self._probes = 0
        self._successes = 0
        self._closed_since = now
        self._advance(self._head + _BUCKETS)  # clear the window
        self._head = int(now * self._inv_width)
        self._transition(_CLOSED, None)

    def _transition(self, new: BreakerState, open_for: float | None) -> None:
        old = self._state
        self._state = new
        self._epoch += 1
        if self._events is not None:
            self._events.emit(BreakerChanged(self._deployment, old, new, open_for))


class BreakerPolicy:
    """Fails fast with :class:`CircuitOpen` while the deployment's breaker is open,
    and feeds the breaker every outcome of the attempts it lets through.

    For a stream, success is recorded when the inner handler returns (the attempt
    policy below has already waited for the first chunk).
    """

    __slots__ = ("_breaker",)

    def __init__(self, breaker: CircuitBreaker) -> None:
        self._breaker = breaker

    @property
    def breaker(self) -> CircuitBreaker:
        return self._breaker

    def wrap(self, inner: Handler) -> Handler:
        breaker = self._breaker

        async def handler(req: Request) -> Response | StreamResponse:
            ticket = breaker.admit()
            if ticket is None:
                raise breaker.rejection()
            try:
                response = await inner(req)
            except UpstreamFailure as exc:
                breaker.record(exc.error_class, ticket=ticket)
                raise
            except BaseException:  # cancelled (client gone) or a bug: no outcome
                breaker.release(ticket=ticket)
                raise
            breaker.record(None, ticket=ticket)
            return response

        return handler
