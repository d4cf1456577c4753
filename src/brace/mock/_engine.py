"""Routing and the control endpoints; the one object both transports drive.

Routes (method, path):

    POST /v1/chat/completions   POST /v1/embeddings   GET /v1/models   POST /v1/messages
    GET /_mock/stats   POST /_mock/reset   GET|POST /_mock/config   GET /healthz

Inference routes are counted in ``/_mock/stats``; control routes and ``/healthz`` are not.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs

import orjson
from pydantic import ValidationError

from brace.mock._anthropic import AnthropicRoutes
from brace.mock._config import MockConfig
from brace.mock._core import Core, MockRequest, Outcome
from brace.mock._dialects import JSON
from brace.mock._openai import OpenAIRoutes
from brace.mock._wire import Reply

__all__ = ["Engine", "Route"]

Route = Callable[[MockRequest], Awaitable[Outcome]]

_OK = b'{"status":"ok"}'


class Engine:
    """The mock upstream without a transport: ``handle`` turns a request into an outcome."""

    def __init__(self, config: MockConfig, clock: Callable[[], float], rng: random.Random) -> None:
        self.core = core = Core(config, clock, rng)
        openai, anthropic = OpenAIRoutes(core), AnthropicRoutes(core)
        self._openai_dialect = openai.dialect
        self.inference: dict[tuple[str, str], Route] = {
            ("POST", "/v1/chat/completions"): openai.chat,
            ("POST", "/v1/embeddings"): openai.embeddings,
            ("POST", "/v1/messages"): anthropic.messages,
        }
        self.routes: dict[tuple[str, str], Route] = {
            **self.inference,
            ("GET", "/v1/models"): openai.models,
            ("GET", "/_mock/stats"): self.stats,
            ("POST", "/_mock/reset"): self.reset,
            ("GET", "/_mock/config"): self.get_config,
            ("POST", "/_mock/config"): self.set_config,
            ("GET", "/healthz"): self.healthz,
        }
        self.paths = frozenset(path for _, path in self.routes)

    @property
    def config(self) -> MockConfig:
        """The live config."""
        return self.core.live.config

    async def handle(self, route: Route, request: MockRequest) -> Outcome:
        """Run one route and count the status it answers with."""
        outcome = await route(request)
        if outcome.status and (request.method, request.path) in self.inference:
            self.core.stats.status(outcome.status)
        return outcome

    def not_found(self, request: MockRequest) -> Reply:
        """404 (unknown path) or 405 (known path, other method), OpenAI-shaped."""
        status = 405 if request.path in self.paths else 404
        message = f"Unknown request URL: {request.method} {request.path}."
        return self._openai_dialect.error(status, "invalid_request_error", message, {}, None)

    def stop(self) -> None:
        """Wake hung and stalled responses so the server can shut down quickly."""
        self.core.stopping = True

    async def stats(self, request: MockRequest) -> Outcome:
        body = self.core.stats.snapshot()
        body["scenario"] = self.core.live.describe()
        return Reply(200, {"Content-Type": JSON}, orjson.dumps(body))

    async def reset(self, request: MockRequest) -> Outcome:
        self.core.reset()
        return Reply(200, {"Content-Type": JSON}, _OK)

    async def healthz(self, request: MockRequest) -> Outcome:
        return Reply(200, {"Content-Type": JSON}, _OK)

    async def get_config(self, request: MockRequest) -> Outcome:
        return Reply(200, {"Content-Type": JSON}, orjson.dumps(self._config_view()))

    async def set_config(self, request: MockRequest) -> Outcome:
        """Merge a partial config over the live one (``?replace=true``: over defaults)."""
        dialect = self._openai_dialect
        try:
            partial = orjson.loads(request.body or b"{}")
        except orjson.JSONDecodeError:
            return dialect.bad_request("The body must be a JSON object (a partial MockConfig).")
        if not isinstance(partial, dict):
            return dialect.bad_request("The body must be a JSON object (a partial MockConfig).")
        replace = parse_qs(request.query).get("replace", ["false"])[0].lower() in ("1", "true")
        try:
            new = MockConfig.model_validate(partial) if replace else self.config.merged(partial)
            self.core.live.swap(new)
        except (ValidationError, ValueError) as exc:
            return dialect.bad_request(f"Invalid mock config: {exc}", "config")
        return Reply(200, {"Content-Type": JSON}, orjson.dumps(self._config_view()))

    def _config_view(self) -> dict[str, object]:
        view: dict[str, object] = self.config.model_dump(mode="json")
        view["explicit_fields"] = sorted(self.config.explicit_fields)
        return view
