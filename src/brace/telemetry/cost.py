"""The cost of a request, from its token usage and a price.

The deployment's configured ``prices`` win; otherwise the maintained price table of
the ``genai-prices`` package (bundled data, no network) is asked once per
(provider, model) and cached.  Prices are USD per million tokens: input, output, and
cached input (cache reads) when known; reasoning tokens are output tokens.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ..config import BraceConfig
from ..presets import PRESETS
from ..stack import Request, Response, answering_group

__all__ = ["Price", "Pricing"]

log = logging.getLogger("brace.cost")


@dataclass(frozen=True, slots=True)
class Price:
    input: float
    output: float
    cached_input: float | None = None

    def cost(self, input_tokens: int, output_tokens: int, cached_tokens: int = 0) -> float:
        cached = min(cached_tokens, input_tokens)
        cached_rate = self.input if self.cached_input is None else self.cached_input
        return (
            (input_tokens - cached) * self.input
            + cached * cached_rate
            + output_tokens * self.output
        ) / 1_000_000


class Pricing:
    """Price lookup for a config's deployments (configured first, then genai-prices).

    Deployments are known by (model group, deployment id): a deployment's id is unique
    within its group only (the default id, ``provider/model``, easily repeats across
    groups, e.g. one model on two hosts at different prices).  A lookup without a
    group takes the first group that has the id."""

    def __init__(self, config: BraceConfig) -> None:
        self._configured: dict[tuple[str, str], Price] = {}
        self._providers: dict[tuple[str, str], str] = {}
        self._models: dict[tuple[str, str], str] = {}
        self._first_group: dict[str, str] = {}
        for group_name, group in config.models.items():
            for d in group.deployments:
                key = (group_name, d.id)
                self._first_group.setdefault(d.id, group_name)
                self._providers[key] = d.provider
                self._models[key] = d.model
                if d.prices is not None:
                    self._configured[key] = Price(
                        d.prices.input, d.prices.output, d.prices.cached_input
                    )
        self._table: dict[tuple[str, str], Price | None] = {}
        self._fallbacks = {n: [r.to for r in g.fallbacks] for n, g in config.models.items()}

    def price(
        self, deployment: str, response_model: str | None = None, *, group: str | None = None
    ) -> Price | None:
        key = (group or "", deployment)
        if key not in self._providers:
            key = (self._first_group.get(deployment, ""), deployment)
        configured = self._configured.get(key)
        if configured is not None:
            return configured
        provider = self._providers.get(key)
        model = response_model or self._models.get(key)
        if provider is None or model is None:
            return None
        key = (provider, model)
        if key not in self._table:
            self._table[key] = _lookup(provider, model)
        return self._table[key]

    def cost(
        self,
        deployment: str,
        response_model: str | None,
        input_tokens: int | None,
        output_tokens: int | None,
        cached_tokens: int | None = None,
        *,
        group: str | None = None,
    ) -> float | None:
        if input_tokens is None and output_tokens is None:
            return None
        price = self.price(deployment, response_model, group=group)
        if price is None:
            return None
        return price.cost(input_tokens or 0, output_tokens or 0, cached_tokens or 0)

    def worst_prices(self, group: str) -> tuple[float, float]:
        """The highest (input, output) price of ``group`` and of every group it falls
        back to (what a budget must hold before the request runs)."""
        seen: set[str] = set()
        todo = [group]
        price_in = price_out = 0.0
        while todo:
            name = todo.pop()
            if name in seen or name not in self._fallbacks:
                continue
            seen.add(name)
            for (g, deployment), _ in self._providers.items():
                if g != name:
                    continue
                p = self.price(deployment, group=name)
                if p is not None:
                    price_in, price_out = max(price_in, p.input), max(price_out, p.output)
            todo.extend(self._fallbacks[name])
        return price_in, price_out

    def request_cost(self, req: Request, result: Response | None) -> float:
        """The real cost of a finished request, from the usage its upstream reported
        (the JSON body, or what a stream left in ``req.state``); 0 when unknown."""
        try:
            state = req.state
            deployment = state.deployment
            if not deployment:
                return 0.0
            if result is not None:
                body = result.json()
                usage, model = body.get("usage"), body.get("model")
            else:
                usage, model = state.usage, state.response_model
            if not isinstance(usage, dict):
                return 0.0
            details = usage.get("prompt_tokens_details")
            cached = details.get("cached_tokens") if isinstance(details, dict) else None
            cost = self.cost(
                deployment,
                model if isinstance(model, str) else None,
                _int(usage.get("prompt_tokens")),
                _int(usage.get("completion_tokens")),
                _int(cached),
                group=answering_group(req),
            )
            return float(cost or 0.0)
        except Exception:  # never fail a request over its bill
            log.exception("cannot price request %s", req.request_id)
            return 0.0


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _lookup(provider: str, model: str) -> Price | None:
    try:
        from genai_prices import Usage, calc_price
    except ImportError:  # pragma: no cover - a dependency
        return None
    preset = PRESETS.get(provider)
    provider_id = preset.price_id if preset is not None else None
    try:
        # a small usage: long-context tiers must not set the everyday price
        per_in = calc_price(
            Usage(input_tokens=1000, output_tokens=0), model, provider_id=provider_id
        )
        per_out = calc_price(
            Usage(input_tokens=0, output_tokens=1000), model, provider_id=provider_id
        )
        per_cached = calc_price(
            Usage(input_tokens=1000, cache_read_tokens=1000, output_tokens=0),
            model,
            provider_id=provider_id,
        )
    except Exception:  # unknown model or provider: no price, not an error
        return None
    return Price(
        float(per_in.total_price) * 1000,
        float(per_out.total_price) * 1000,
        float(per_cached.total_price) * 1000,
    )
