"""Keys, budgets and their policies, wired from one config for one gateway."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, ClassVar

from ..config import BraceConfig
from ._ledger import BudgetAlert, Ledger, LocalLedger, RedisLedger
from ._ring import KeyRing
from ._store import KeyStore, open_key_store

__all__ = ["Keys"]

log = logging.getLogger("brace.keys")


class Keys:
    """The key store, the in-memory key ring and the spend ledger of one gateway; the
    engine builds the two policies that use them (key rate limits, budgets)."""

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
        self.alerts: list[BudgetAlert] = []
        """The latest soft-budget alerts (bounded), for metrics and the dashboard."""
        self._webhooks: set[asyncio.Task[None]] = set()

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
        """Close after the engine (whose budget policy settles into the ledger)."""
        await self.ledger.aclose()  # writes the last settled spend
        await self.ring.aclose()
        for task in list(self._webhooks):
            task.cancel()
        await self.store.aclose()

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
