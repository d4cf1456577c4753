"""The gateway: an aiohttp application around an :class:`~brace.engine.Engine`.

:class:`Gateway` owns the engine and the HTTP server.  :meth:`Gateway.run` serves
until SIGINT/SIGTERM, then shuts down gracefully: ``/readyz`` turns 503, the
listening socket closes (no new connections), in-flight requests get up to
``server.shutdown_timeout`` seconds to finish, then the upstream pool closes.
A client that disconnects cancels its handler, which closes its upstream request.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Awaitable, Callable

from aiohttp import web

from ..config import BraceConfig
from ..engine import Engine
from ..errors import ConfigError
from ..keys import Keys
from ..telemetry.hub import Telemetry
from ._access import access_control
from ._http import GATEWAY, LOOPBACK, REQUEST_IDS, RequestIds
from .routes import admin, chat, embeddings, keys, logs, metrics, models, runs, ui

__all__ = ["Gateway", "tune_gc"]

log = logging.getLogger("brace.gateway")


class Gateway:
    def __init__(self, config: BraceConfig, *, engine: Engine | None = None) -> None:
        self.config = config
        self.keys = Keys(config)
        self.engine = engine if engine is not None else Engine(config, keys=self.keys)
        self.telemetry = Telemetry(config, self.engine)
        self.stopping = False
        self.host = config.server.host
        """The address served (``start(host=...)`` may override the config's)."""
        self._runner: web.AppRunner | None = None
        self._sites: list[web.TCPSite] = []
        self.app = self._build_app()

    @property
    def ready(self) -> bool:
        return self.engine.started and not self.stopping

    def _build_app(self) -> web.Application:
        # The body limit is enforced by routes (413, OpenAI-shaped); aiohttp's own
        # check stays one byte above as a backstop.  Who may call which route is
        # checked in one place, access_control: a route no module declared is admin-only.
        app = web.Application(
            client_max_size=self.config.server.max_body_bytes + 1, middlewares=[access_control]
        )
        app[REQUEST_IDS] = RequestIds()
        app[GATEWAY] = self
        chat.setup(app, self)
        embeddings.setup(app, self)
        models.setup(app, self)
        admin.setup(app, self)
        keys.setup(app, self)
        metrics.setup(app, self)
        logs.setup(app, self)
        runs.setup(app, self)
        ui.setup(app, self)
        models.setup_fallback(app)  # last: unknown paths get an OpenAI-shaped 404
        return app

    async def start(self, *, host: str | None = None, port: int | None = None) -> int:
        """Start the engine and listen; returns the bound port (useful with port 0)."""
        server = self.config.server
        self.host = host if host is not None else server.host
        await self.keys.start()
        try:
            self._check_exposure(self.host)
        except ConfigError:
            await self.keys.aclose()
            raise
        await self.engine.start()
        await self.telemetry.start()
        self.telemetry.metrics.add_source(self.keys.metrics, self.keys.METRICS_DOCS)
        runner = web.AppRunner(
            self.app,
            handler_cancellation=True,
            access_log=None,
            keepalive_timeout=server.keepalive_timeout,
            shutdown_timeout=server.shutdown_timeout,
        )
        await runner.setup()
        site = web.TCPSite(
            runner,
            host if host is not None else server.host,
            server.port if port is None else port,
            backlog=2048,
            reuse_address=True,
        )
        await site.start()
        self._runner = runner
        self._sites = [site]
        return self.port

    def _check_exposure(self, host: str) -> None:
        """Local mode (no master key, no virtual key) says so loudly, and refuses a
        non-loopback address unless ``server.allow_unauthenticated``."""
        if self.keys.ring.auth_required:
            return
        if host not in LOOPBACK and not self.config.server.allow_unauthenticated:
            raise ConfigError(
                f"refusing to serve {host} in local mode: no master key and no virtual key "
                "exist, so anyone who can reach this address could use every model. Set "
                "BRACE_ADMIN_KEY (server.admin_key) and create keys with `brace keys create`, "
                "or pass --allow-unauthenticated (server.allow_unauthenticated: true)."
            )
        log.warning(
            "LOCAL MODE: no master key and no virtual key — every request is served without "
            "authentication%s. Set BRACE_ADMIN_KEY and create keys (`brace keys create`) to "
            "require keys.",
            "" if host in LOOPBACK else f" on {host}, a NON-LOOPBACK address",
        )

    @property
    def port(self) -> int:
        for site in self._sites:
            srv = site._server  # aiohttp keeps the asyncio server here
            sockets = getattr(srv, "sockets", None)
            if sockets:
                return int(sockets[0].getsockname()[1])
        raise RuntimeError("the gateway is not listening")

    async def stop(self) -> None:
        """Graceful stop: not ready, no new connections, drain in-flight, close upstreams."""
        if self.stopping:
            return
        self.stopping = True
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.telemetry.aclose()  # after the drain: every record is flushed
        await self.engine.aclose()  # budget settlements still running reach the ledger
        await self.keys.aclose()  # settled spend written

    async def run(
        self,
        *,
        host: str | None = None,
        port: int | None = None,
        on_started: Callable[[int], Awaitable[None] | None] | None = None,
    ) -> None:
        """Serve until SIGINT or SIGTERM, then stop gracefully."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        restore_gc = None
        try:
            bound = await self.start(host=host, port=port)
            if on_started is not None:
                maybe = on_started(bound)
                if maybe is not None:
                    await maybe
            restore_gc = tune_gc(self.config.server.gc_threshold)
            await stop.wait()
            log.info(
                "shutting down: draining in-flight requests (up to %ss)",
                self.config.server.shutdown_timeout,
            )
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            await self.stop()
            if restore_gc is not None:
                restore_gc()


def tune_gc(threshold: int) -> Callable[[], None] | None:
    """Collect, freeze what exists (start-up's objects are never collected again) and
    raise the generation-0 threshold to ``threshold``; returns what undoes it
    (``None`` when ``threshold`` is 0: the collector is left alone)."""
    if threshold <= 0:
        return None
    before = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(threshold, before[1], before[2])

    def restore() -> None:
        gc.set_threshold(*before)
        gc.unfreeze()

    return restore
