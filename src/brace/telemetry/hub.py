"""Wire the telemetry subscribers to an engine's event bus.

:class:`Telemetry` owns the subscribers built from ``telemetry:`` in the config — the
Prometheus metrics (always, in memory), the request-log store (SQLite by default,
PostgreSQL, or off) and the tracer (OpenTelemetry spans, optional OTLP export) — and
routes each event to them.  Subscribers only record: the store and the tracer queue
the record for their own background task (bounded; overflow is counted), so the
request path never waits on a database or an exporter.  :meth:`aclose` flushes.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..runs import RunUpdated, StepUpdated
from .record import RequestEnded

if TYPE_CHECKING:
    from ..config import BraceConfig
    from ..store.requests import Store
    from .metrics import EngineView, Metrics
    from .tracing import Tracer

__all__ = ["Telemetry"]

log = logging.getLogger("brace.telemetry")


class Telemetry:
    def __init__(self, config: BraceConfig, engine: EngineView) -> None:
        from .metrics import Metrics

        self.config = config.telemetry
        self.engine = engine
        self.metrics: Metrics = Metrics(engine)
        self.store: Store | None = None
        self.tracer: Tracer | None = None
        self._unsubscribe: Any = None

    async def start(self) -> None:
        cfg = self.config
        if cfg.enabled and cfg.store != "off":
            from ..store.requests import open_store

            self.store = open_store(cfg)
            await self.store.start()
            self.metrics.add_writer("store", self.store.stats)
        if cfg.enabled and cfg.otlp_endpoint:
            from .tracing import Tracer

            servers = {
                d.id: d.url for g in self.engine.config.models.values() for d in g.deployments
            }
            tracer = self.tracer = Tracer(cfg, servers=servers)
            await tracer.start()
            self.metrics.add_writer("tracer", tracer.stats)
        kinds = self.metrics.kinds
        if self.store is not None:
            kinds = kinds | {RunUpdated, StepUpdated}  # runs and steps go to the store
        self._unsubscribe = self.engine.events.subscribe(self._on_event, kinds=kinds)

    def _on_event(self, event: Any) -> None:
        if isinstance(event, RequestEnded):
            record = event.record
            self.metrics.observe_request(record)
            if self.store is not None:
                self.store.submit(record)
            if self.tracer is not None:
                self.tracer.submit(record)
        elif isinstance(event, StepUpdated):
            if self.store is not None:
                self.store.submit_step(event.step)
        elif isinstance(event, RunUpdated):
            if self.store is not None:
                self.store.submit_run(event.run)
        else:
            self.metrics.on_event(event)

    async def aclose(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self.tracer is not None:
            await self.tracer.aclose()
        if self.store is not None:
            await self.store.aclose()
