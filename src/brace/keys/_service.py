"""Keys, budgets and their policies, wired from one config for one gateway."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from ..config import BraceConfig
from ..policies.budget import BudgetPolicy
from ..policies.fallback import answering_group
from ..policies.key_limits import KeyLimitPolicy
from ..stack import Policy, Request, Response
from ..state import LimiterBackend
from ..telemetry.cost import Pricing
from ._ledger import BudgetAlert, Ledger, LocalLedger, RedisLedger
from ._ring import KeyRing
from ._store import KeyStore, open_key_store

__all__ = ["Keys"]

log = logging.getLogger("brace.keys")


class Keys:
    """The key store, the in-memory key ring, the spend ledger, and the two policies
    (key rate limits, budgets) the engine places after the cache."""

    def __init__(self, config: BraceConfig) -> None:
        self.config = config
        cfg = config.keys
        server = config.server
        self.store: KeyStore = open_key_store(config.keys_database)
        self.ring = KeyRing(
            self.store,
            master_key=server.admin_key.get_secret_value() if server.admin_key else None,
            refresh_seconds=cfg.refresh_seconds,
            propagation_timeout=cfg.propagation_timeout,
        )
        local = LocalLedger(
            self.store,
            sync_seconds=cfg.spend_sync_seconds,
            alert_at=cfg.alert_at,
            on_alert=self._alert,
        )
        self.ledger: Ledger = (
            RedisLedger(
                server.redis_url.get_secret_value(), local, namespace=server.instance_namespace
            )
            if server.redis_url
            else local
        )
        self.pricing = Pricing(config)
        self.alerts: list[BudgetAlert] = []
        """The latest soft-budget alerts (bounded), for metrics and the dashboard."""
        self._webhooks: set[asyncio.Task[None]] = set()
        self.budget_policy: BudgetPolicy | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        await self.store.start()
        try:
            await self.ring.start()
            await self.ledger.start()
        except BaseException:
            await self.store.aclose()
            raise

    async def aclose(self) -> None:
        if self.budget_policy is not None:
            await self.budget_policy.drain()
        await self.ledger.aclose()  # writes the last settled spend
        await self.ring.aclose()
        for task in list(self._webhooks):
            task.cancel()
        await self.store.aclose()

    # ------------------------------------------------------------------ the policies

    def policies(self, limiter: Callable[[], LimiterBackend | None]) -> list[Policy]:
        """Key rate limits, then budgets (the engine puts them after the cache)."""
        models = self.config.models
        default_max = {n: g.capacity.default_max_tokens for n, g in models.items()}
        self.budget_policy = BudgetPolicy(
            self.ledger,
            scopes=self.ring.scopes,
            prices={n: self._worst_prices(n) for n in models},
            default_max_tokens=default_max,
            cost=self.cost,
        )
        return [
            KeyLimitPolicy(limiter, default_max_tokens=default_max),
            self.budget_policy,
        ]

    def _worst_prices(self, group: str) -> tuple[float, float]:
        """The highest (input, output) price of the group and every group it falls back to."""
        seen: set[str] = set()
        todo = [group]
        price_in = price_out = 0.0
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            g = self.config.models[name]
            for d in g.deployments:
                p = self.pricing.price(d.id, group=name)
                if p is not None:
                    price_in, price_out = max(price_in, p.input), max(price_out, p.output)
            todo.extend(rule.to for rule in g.fallbacks)
        return price_in, price_out

    def cost(self, req: Request, result: Response | None) -> float:
        """The real cost of a finished request, from the usage its upstream reported."""
        try:
            meta = req.meta
            deployment = meta.get("deployment")
            if not deployment:
                return 0.0
            if result is not None:
                body = result.json()
                usage, model = body.get("usage"), body.get("model")
            else:
                usage, model = meta.get("usage"), meta.get("response_model")
            if not isinstance(usage, dict):
                return 0.0
            details = usage.get("prompt_tokens_details")
            cached = details.get("cached_tokens") if isinstance(details, dict) else None
            cost = self.pricing.cost(
                deployment,
                model if isinstance(model, str) else None,
                _int(usage.get("prompt_tokens")),
                _int(usage.get("completion_tokens")),
                _int(cached),
                group=answering_group(req),
            )
            return float(cost or 0.0)
        except Exception:  # never fail a request over its bill
            log.exception("budgets: cannot price request %s", req.request_id)
            return 0.0

    # ------------------------------------------------------------------ alerts

    def _alert(self, alert: BudgetAlert) -> None:
        self.alerts.append(alert)
        del self.alerts[:-100]
        url = self.config.keys.alert_webhook
        if url:
            task = asyncio.get_running_loop().create_task(self._post(url, alert))
            self._webhooks.add(task)
            task.add_done_callback(self._webhooks.discard)

    async def _post(self, url: str, alert: BudgetAlert) -> None:
        import aiohttp

        payload: dict[str, Any] = {
            "type": "brace.budget_alert",
            "scope": alert.scope,
            "label": alert.label,
            "period": alert.period,
            "limit_usd": alert.limit_usd,
            "spent_usd": alert.spent_usd,
            "threshold": alert.threshold,
        }
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
                session.post(url, json=payload) as resp,
            ):
                if resp.status >= 300:
                    log.warning("budget alert webhook answered %s", resp.status)
        except Exception as exc:
            log.warning("budget alert webhook failed: %s", type(exc).__name__)

    def stats(self) -> dict[str, Any]:
        return {**self.ring.stats(), "ledger": self.ledger.stats()}

    METRICS_DOCS: ClassVar[Mapping[str, str]] = {
        "keys_local_mode": "1 when no master key and no virtual key exist: requests are not authenticated.",
        "keys_active": "Virtual keys that are neither expired nor revoked.",
        "keys_poll_errors_total": "Failed reads of the key database by the refresh loop.",
        "budget_held_usd": "USD held by requests in flight on key and team budgets (this gateway).",
        "budget_alerts_total": "Soft-budget alerts fired (log line, and webhook when configured).",
        "budget_sync_errors_total": "Failed writes/reads of settled spend to the key database (retried).",
    }

    def metrics(self) -> dict[str, float]:
        """Values for ``/metrics`` (see :attr:`METRICS_DOCS`)."""
        ring, ledger = self.ring.stats(), self.ledger.stats()
        return {
            "keys_local_mode": float(ring["mode"] == "local"),
            "keys_active": float(ring["active"]),
            "keys_poll_errors_total": float(ring["poll_errors"]),
            "budget_held_usd": float(ledger["held_usd"]),
            "budget_alerts_total": float(ledger["alerts"]),
            "budget_sync_errors_total": float(ledger["sync_errors"]),
        }


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
