"""The engine: config in, one ready handler per model group out.

Both the gateway (``brace serve``) and the in-process client use an :class:`Engine`,
so they run the same stack.  The stack of a group is built here, in one place and
in this order (the first policy sees the request first)::

    (policies, outermost first)   -- none yet in the default stack
    balance                       pick a deployment (smooth weighted round-robin)
    provider                      wire adapter + the shared HTTP client pool

The engine owns the shared upstream HTTP session and closes it in :meth:`aclose`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import aiohttp

from .config import BraceConfig
from .errors import ModelNotFound
from .policies.balance import Balancer, Target
from .providers import make_provider, make_session
from .stack import Handler, Policy, build_stack

__all__ = ["Engine"]


class Engine:
    """Owns the upstream session and the per-group stacks of one config."""

    def __init__(
        self,
        config: BraceConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        policies: Sequence[Policy] = (),
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self._policies = tuple(policies)
        self._session = session
        self._owns_session = session is None
        self._stacks: dict[str, Handler] = {}
        self._balancers: dict[str, Balancer] = {}

    async def start(self) -> None:
        """Create the HTTP pool and build every group's stack (idempotent)."""
        if self._stacks:
            return
        if self._session is None:
            self._session = make_session()
        for name, group in self.config.models.items():
            balancer = Balancer(
                [Target(d.id, d.weight, make_provider(d, self._session)) for d in group.deployments]
            )
            self._balancers[name] = balancer
            self._stacks[name] = build_stack(balancer, self._policies)

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

    async def aclose(self) -> None:
        self._stacks.clear()
        self._balancers.clear()
        if self._session is not None and self._owns_session:
            await self._session.close()
        self._session = None
