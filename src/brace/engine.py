"""The engine: config in, one ready handler per model group out.

Both the gateway (``brace serve``) and the in-process client use an :class:`Engine`,
so they run the same stack.  Every group's stack is built here, in one place and
in this order — **the first policy sees the request first**::

    observe       times the request; at its end emits one RequestEnded record (telemetry)
    runs          with ``runs.enabled``: puts a request into its agent run (named, or found
                  from the conversation it continues); derives model and tool steps
    deadline      sets the request's one deadline (group ``deadline``, or less if asked)
    cache         opt-in per group: an exact-match hit answers at once (JSON or replayed stream)
    key limits    with ``keys`` (the gateway): the virtual key's RPM/TPM, refused at once
    budget        with ``keys``: hold the worst-case cost on key/team budgets, settle after
    admission     bounded priority queue, fair between tenants, honest 429s when full/late
    fallback      on a matching error class, try the next group's core (bounded hops);
                  with no capacity now, spill to a rate-limit fallback group that has some
    ── core of the group (what a fallback from another group calls) ──
    context       opt-in: count the prompt against the group's smallest context window:
                  reject / trim / route (a context_window_exceeded fallback takes it)
    retry         backoff + jitter, retry-after, per-deployment retry budget
    hedge         only with ``hedge.enabled``: a second attempt after p95 / a fixed delay
    balance       health, retry budget, capacity now (spill-over), then power of two choices
      ── per deployment ──
      breaker     per deployment; open → the attempt is not sent
      pacing      adaptive concurrency + RPM/TPM reservations (local or Redis), learned limits
      attempt     first-token / total / stall timeouts, capped by the deadline
      provider    wire adapter + the shared HTTP client pool

Each slot is filled here and only here (:meth:`Engine._layers` for a group's outer
slots, :meth:`Engine._build_core` for its core): a config flag never reorders
this, it only adds or removes its own layer.  What the layers share is made before
them, in this order, so that building has no loop: the limiter backend, the
``CapacityFreed`` signal (pacers call it, admission queues listen), the pacers and
balancers of every group's core, the pricing, the cache backend, then each group's
outer layers.  The engine owns the shared upstream HTTP session and closes it in
:meth:`aclose`.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import aiohttp

from ._tasks import stop_task
from .cache import CacheBackend, CachePolicy, make_backend
from .clock import Clock, SystemClock
from .config import BraceConfig, CacheConfig
from .context import ContextPolicy, Encodings
from .errors import ModelNotFound
from .events import EventBus
from .policies.admission import AdmissionPolicy, CapacityFreed
from .policies.attempt import AttemptPolicy
from .policies.balance import Balancer, DeploymentState
from .policies.breaker import BreakerPolicy, CircuitBreaker
from .policies.budget import BudgetPolicy
from .policies.deadline import DeadlinePolicy
from .policies.fallback import FallbackPolicy
from .policies.hedge import HedgePolicy
from .policies.key_limits import KeyLimitPolicy
from .policies.pacing import Pacer, PacingPolicy
from .policies.retry import RetryBudget, RetryPolicy
from .providers import make_provider, make_session
from .runs import RunPolicy, RunTracker
from .stack import Handler, Policy, build_stack
from .state import LimiterBackend, make_limiter
from .telemetry.cost import Pricing
from .telemetry.observe import ObservePolicy

if TYPE_CHECKING:
    from .keys import Keys

__all__ = ["Engine"]


class Engine:
    """Owns the upstream session and the per-group stacks of one config.

    ``keys`` (the gateway's virtual keys and budgets) adds the key-limit and budget
    slots; the in-process client has none."""

    def __init__(
        self,
        config: BraceConfig,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        events: EventBus | None = None,
        keys: Keys | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.config = config
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.rng = rng if rng is not None else random.Random()
        self.events = events if events is not None else EventBus()
        self._keys = keys
        self._session = session
        self._owns_session = session is None
        self._stacks: dict[str, Handler] = {}
        self._cores: dict[str, Handler] = {}
        self._balancers: dict[str, Balancer] = {}
        self._budgets: dict[str, RetryBudget] = {}
        self._pacers: dict[str, Pacer] = {}
        self._admissions: dict[str, AdmissionPolicy] = {}
        self._freed = CapacityFreed()
        self._budget: BudgetPolicy | None = None
        self.runs: RunTracker | None = None
        """The agent-run tracker (``None`` with ``runs.enabled: false``)."""
        self._runs_policy: RunPolicy | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self.limiter: LimiterBackend | None = None
        self._encodings = Encodings()
        self._cache_backend: CacheBackend | None = None
        self._caches: list[CachePolicy] = []

    async def start(self) -> None:
        """Create the HTTP pool and build every group's stack (idempotent)."""
        if self._stacks:
            return
        if self._session is None:
            self._session = make_session()
        server = self.config.server
        self.limiter = make_limiter(
            server.redis_url.get_secret_value() if server.redis_url else None,
            clock=self.clock,
            namespace=server.instance_namespace,
        )
        await self.limiter.start()
        for name in self.config.models:
            self._cores[name] = self._build_core(name, self._session)
        providers = {d.id: d.provider for g in self.config.models.values() for d in g.deployments}
        self.pricing = Pricing(self.config)
        cache_cfgs = {n: self.config.cache.merged(g.cache) for n, g in self.config.models.items()}
        if any(c.enabled for c in cache_cfgs.values()):
            self._cache_backend = make_backend(
                self.config.cache,
                redis_url=server.redis_url.get_secret_value() if server.redis_url else None,
                namespace=server.instance_namespace,
            )
            await self._cache_backend.start()
        observe = ObservePolicy(
            clock=self.clock,
            events=self.events,
            pricing=self.pricing,
            providers=providers,
            capture_content=self.config.telemetry.capture_content,
        )
        if self.config.runs.enabled:
            self.runs = RunTracker(
                self.config.runs,
                events=self.events,
                capture_content=self.config.telemetry.capture_content,
                rng=random.Random(self.rng.random()),
            )
            self._runs_policy = RunPolicy(self.runs, cost=self.pricing.request_cost)
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_runs())
        guards = self._guards()
        for name in self.config.models:
            layers = self._layers(name, observe, cache_cfgs[name], guards)
            self._stacks[name] = build_stack(self._cores[name], layers)

    def _guards(self) -> list[Policy]:
        """The key-limit and budget slots (only with ``keys``), shared by every group."""
        keys = self._keys
        if keys is None:
            return []
        assert self.limiter is not None
        models = self.config.models
        default_max = {n: g.capacity.default_max_tokens for n, g in models.items()}
        self._budget = BudgetPolicy(
            keys.ledger,
            scopes=keys.ring.scopes,
            prices={n: self.pricing.worst_prices(n) for n in models},
            default_max_tokens=default_max,
            cost=self.pricing.request_cost,
        )
        return [KeyLimitPolicy(self.limiter, default_max_tokens=default_max), self._budget]

    def _layers(
        self, name: str, observe: Policy, cache_cfg: CacheConfig, guards: list[Policy]
    ) -> list[Policy]:
        """A group's outer slots, outermost first: observe, deadline, cache, key limits,
        budget, admission, fallback (the core goes below them)."""
        group = self.config.models[name]
        layers: list[Policy] = [observe]
        if self._runs_policy is not None:
            layers.append(self._runs_policy)
        layers.append(DeadlinePolicy(group.deadline, clock=self.clock))
        if cache_cfg.enabled:
            assert self._cache_backend is not None
            cache = CachePolicy(cache_cfg, self._cache_backend, price=self._cache_price(name))
            self._caches.append(cache)
            layers.append(cache)
        admission = AdmissionPolicy(
            name,
            max_queue=group.capacity.max_queue,
            clock=self.clock,
            rate=self._group_rate(name),
        )
        self._admissions[name] = admission
        self._freed.listen(admission.released)
        return [
            *layers,
            *guards,
            admission,
            FallbackPolicy(
                name,
                group.fallbacks,
                self._cores,
                max_hops=group.max_fallbacks,
                clock=self.clock,
                events=self.events,
                spill=group.capacity.spill_to_fallback,
            ),
        ]

    def _build_core(self, name: str, session: aiohttp.ClientSession) -> Handler:
        group = self.config.models[name]
        clock, events = self.clock, self.events
        assert self.limiter is not None
        states = []
        for d in group.deployments:
            layers: list[Policy] = []
            breaker = None
            if group.breaker.enabled:
                breaker = CircuitBreaker(d.id, group.breaker, clock=clock, events=events)
                layers.append(BreakerPolicy(breaker))
            pacer = self._pacers.get(f"{d.url}|{d.model}")
            if pacer is None:
                pacer = Pacer(d, group.capacity, self.limiter, clock=clock, on_release=self._freed)
                self._pacers[pacer.key] = pacer
            layers.append(PacingPolicy(pacer, group.capacity))
            layers.append(AttemptPolicy(d.id, name, d.timeouts, clock=clock, events=events))
            handler = build_stack(make_provider(d, session), layers)
            price = (d.prices.input + d.prices.output) if d.prices else 0.0
            states.append(
                DeploymentState(
                    d.id, handler, weight=d.weight, breaker=breaker, pacer=pacer, price=price
                )
            )
        budget = RetryBudget(group.retry, clock=clock)
        balancer = Balancer(
            states,
            clock=clock,
            rng=random.Random(self.rng.random()),
            budget=budget,
            prefer=group.capacity.prefer,
            default_max_tokens=group.capacity.default_max_tokens,
        )
        self._balancers[name] = balancer
        self._budgets[name] = budget
        core: list[Policy] = []
        if group.context is not None:
            core.append(
                ContextPolicy(
                    name,
                    group.context,
                    group.deployments,
                    fallbacks=group.fallbacks,
                    encodings=self._encodings,
                )
            )
        core += [
            RetryPolicy(
                name,
                group.retry,
                has_alternative=balancer.has_alternative,
                budget_exhausted=balancer.budget_exhausted,
                clock=clock,
                events=events,
                rng=random.Random(self.rng.random()),
            )
        ]
        if group.hedge.enabled:
            core.append(
                HedgePolicy(
                    name,
                    group.hedge,
                    has_alternative=balancer.has_alternative,
                    clock=clock,
                    events=events,
                )
            )
        return build_stack(balancer, core)

    def _cache_price(
        self, group: str
    ) -> Callable[[str | None, str | None], tuple[float, float] | None]:
        """The cache's price lookup for ``group`` (what a hit saved)."""

        def price(deployment: str | None, model: str | None) -> tuple[float, float] | None:
            p = self.pricing.price(deployment, model, group=group) if deployment else None
            return (p.input, p.output) if p else None

        return price

    def _group_rate(self, name: str) -> Callable[[int], float | None]:
        """Requests per second the group's deployments sustain (``None``: unknown)."""

        def rate(prompt_tokens: int) -> float | None:
            balancer = self._balancers.get(name)
            if balancer is None:
                return None
            default = self.config.models[name].capacity.default_max_tokens
            total = 0.0
            for s in balancer.deployments:
                if s.pacer is None or not s.available():
                    continue
                r = s.pacer.request_rate(prompt_tokens + default)
                if r is None:
                    return None
                total += r
            return total or None

        return rate

    @property
    def started(self) -> bool:
        return bool(self._stacks)

    @property
    def model_names(self) -> list[str]:
        return list(self.config.models)

    def handler(self, model: str) -> Handler:
        """The stack serving ``model``; :class:`ModelNotFound` if none does."""
        try:
            return self._stacks[model]
        except KeyError:
            raise ModelNotFound(
                f"model {model!r} is not configured on this gateway; "
                f"available models: {', '.join(sorted(self.config.models))}",
                param="model",
            ) from None

    def deployments(self) -> dict[str, list[dict[str, Any]]]:
        """Health of every deployment, by group (breaker, load, latency, retry budget)."""
        out: dict[str, list[dict[str, Any]]] = {}
        for name, balancer in self._balancers.items():
            budget = self._budgets[name]
            out[name] = [
                {**s.snapshot(), "retry_budget": budget.snapshot(s.id)}
                for s in balancer.deployments
            ]
        return out

    def admission(self) -> dict[str, dict[str, Any]]:
        """Queue depth, shed and waited counts per group."""
        return {name: a.snapshot() for name, a in self._admissions.items()}

    async def _sweep_runs(self) -> None:
        """Abandon idle runs, on the engine's clock (a quarter of the idle timeout, at
        most every 30 s)."""
        assert self.runs is not None
        every = min(self.config.runs.idle_timeout / 4, 30.0)
        while True:
            await self.clock.sleep(every)
            self.runs.sweep()

    async def aclose(self) -> None:
        if self._sweeper is not None:
            await stop_task(self._sweeper)
            self._sweeper = None
        self._runs_policy = None
        if self._budget is not None:  # settlements still running reach the ledger
            await self._budget.drain()
            self._budget = None
        self._freed = CapacityFreed()
        for cache in self._caches:
            await cache.flush()
        self._caches.clear()
        if self._cache_backend is not None:
            await self._cache_backend.aclose()
            self._cache_backend = None
        self._stacks.clear()
        self._cores.clear()
        self._balancers.clear()
        self._admissions.clear()
        self._pacers.clear()
        if self.limiter is not None:
            await self.limiter.aclose()
            self.limiter = None
        if self._session is not None and self._owns_session:
            await self._session.close()
        self._session = None
