"""The configuration file's schema and loading.

Config is validated once, at start-up, by pydantic; nothing here runs per request.
Every object is frozen and keyword-only.  Strings may reference the environment as
``${NAME}`` or ``${NAME:-default}``; references are resolved at load time and an
unset variable without a default is an error naming the key.  API keys are kept as
:class:`pydantic.SecretStr` so that no repr, log line or error ever prints them.

Errors are raised as :class:`brace.errors.ConfigError` whose message names the
file, the key path (``models.chat.deployments[0].rpm``) and what was expected.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from .errors import ConfigError
from .presets import PRESETS, Family, Preset

__all__ = [
    "ERROR_CLASSES",
    "UNAVAILABLE",
    "BraceConfig",
    "BreakerConfig",
    "CacheConfig",
    "CacheOverride",
    "CapacityConfig",
    "ContextConfig",
    "Deployment",
    "FallbackRule",
    "HedgeConfig",
    "KeysConfig",
    "ModelGroup",
    "Prices",
    "RetryConfig",
    "RunsConfig",
    "ServerConfig",
    "TelemetryConfig",
    "Timeouts",
    "load_config",
    "parse_config",
]

_PYDANTIC_INTERNAL = re.compile(r"^function-(after|before|wrap|plain)(\[|$)")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Prices(_Frozen):
    """USD per one million tokens."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cached_input: float | None = Field(default=None, ge=0)


class Timeouts(_Frozen):
    """Per-attempt timeouts, in seconds (each also capped by the request's deadline).

    ``connect``: TCP/TLS connect.  ``first_token``: a stream's first chunk must
    arrive within this.  ``stall``: the longest silence between two chunks of a
    stream.  ``total``: one attempt, start to last byte (a JSON answer's whole
    generation).
    """

    connect: float = Field(default=5.0, gt=0)
    first_token: float = Field(default=60.0, gt=0)
    stall: float = Field(default=30.0, gt=0)
    total: float = Field(default=300.0, gt=0)


UNAVAILABLE = (
    "rate_limited",
    "overloaded",
    "server_error",
    "timeout",
    "connection_error",
    "malformed_response",
    "circuit_open",
)
"""The classes ``unavailable`` stands for in ``fallbacks[].on``."""

ErrorClassName = Literal[
    "rate_limited",
    "overloaded",
    "server_error",
    "timeout",
    "connection_error",
    "malformed_response",
    "circuit_open",
    "context_window_exceeded",
    "content_filtered",
    "authentication",
    "bad_request",
    "not_found",
    "unavailable",
]
ERROR_CLASSES: tuple[str, ...] = tuple(c for c in get_args(ErrorClassName) if c != "unavailable")
"""Every class of upstream outcome a fallback rule can name (``unavailable`` is an alias)."""


class RetryConfig(_Frozen):
    """Retries inside a model group (across its deployments)."""

    max_attempts: int = Field(default=3, ge=1, le=10)
    """Attempts per request in this group, the first included."""
    backoff_base: float = Field(default=0.1, ge=0)
    """Full jitter: the n-th retry on the same deployment waits U(0, min(max, base·2ⁿ))."""
    backoff_max: float = Field(default=5.0, ge=0)
    budget_ratio: float = Field(default=0.2, ge=0, le=10)
    """Retries to a deployment are at most this share of its requests over the window..."""
    budget_min_retries_per_second: float = Field(default=10.0, ge=0)
    """...plus this many per second of the window, so that a quiet deployment (or a
    cold start) can still retry (Finagle's defaults: 20% and 10/s over 10 s)."""
    budget_window: float = Field(default=10.0, gt=0)


class BreakerConfig(_Frozen):
    """One circuit breaker per deployment, over server-side failures only."""

    enabled: bool = True
    window: float = Field(default=10.0, gt=0)
    """Rolling window (seconds) over which the failure rate is measured."""
    min_requests: int = Field(default=10, ge=1)
    """No trip below this many counted requests in the window."""
    failure_rate: float = Field(default=0.3, gt=0, le=1)
    """Trip when this share of counted requests failed server-side (5xx, timeouts, connection errors)."""
    open_for: float = Field(default=5.0, gt=0)
    """First open period; doubles on each consecutive trip..."""
    max_open_for: float = Field(default=60.0, gt=0)
    """...up to this."""
    half_open_probes: int = Field(default=3, ge=1)
    """Probes let through when half-open; all must succeed to close."""


class CapacityConfig(_Frozen):
    """Pacing, adaptive concurrency and admission for a model group."""

    default_max_tokens: int = Field(default=256, ge=0)
    """Completion tokens reserved for a request that sets no max_tokens (upstreams
    charge the requested maximum against TPM when the request arrives)."""
    headroom: float = Field(default=0.02, ge=0, lt=0.5)
    """Share of every rpm/tpm limit Brace leaves unused, absorbing clock and token-count
    differences with the upstream (2% costs ~2% of throughput, saves the odd 429)."""
    max_queue: int = Field(default=1000, ge=0)
    """Requests waiting for capacity in this group; more are shed with 429."""
    adaptive_concurrency: bool = True
    """Per deployment: halve-ish the in-flight limit on overload/timeouts, grow it
    back on success (AIMD), starting at ``max_concurrency`` (or 64)."""
    prefer: Literal["latency", "order", "cost"] = "latency"
    """Among deployments with capacity now: least loaded and fastest (power of two
    choices), the first listed, or the cheapest by ``prices``."""
    spill_to_fallback: bool = True
    """With no capacity now in this group, try its ``unavailable``/``rate_limited``
    fallback groups that have capacity now before queueing."""


class CacheConfig(_Frozen):
    """``cache:`` in ``brace.yaml`` (defaults for every group, and the backend)."""

    enabled: bool = False
    mode: Literal["opt_out", "opt_in"] = "opt_out"
    """``opt_out``: every cacheable request is cached unless it says ``no-cache`` /
    ``no-store``.  ``opt_in``: only requests with ``x-brace-cache: use``."""
    ttl: float = Field(default=3600.0, gt=0)
    """Seconds an entry lives."""
    max_entry_kb: int = Field(default=256, gt=0)
    """Larger answers (the JSON body, or a stream's assembled text) are not stored."""
    shared: bool = False
    """``false``: entries are per tenant (the caller's key hash). ``true``: every key
    shares them (only for groups whose answers are not private)."""
    backend: Literal["sqlite", "redis"] = "sqlite"
    """``redis`` uses ``server.redis_url`` (shared by every gateway)."""
    path: str = "brace-cache.db"
    """SQLite: the cache file."""
    max_size_mb: int = Field(default=256, gt=0)
    """SQLite: bound of the stored bytes; least recently used entries go first."""

    def merged(self, override: CacheOverride | None) -> CacheConfig:
        """This config with a group's ``cache:`` overrides applied."""
        if override is None:
            return self
        changes = {k: v for k, v in override.model_dump().items() if v is not None}
        return self.model_copy(update=changes)


class CacheOverride(_Frozen):
    """``models.<group>.cache:``: per-group overrides of :class:`CacheConfig`."""

    enabled: bool | None = None
    mode: Literal["opt_out", "opt_in"] | None = None
    ttl: float | None = Field(default=None, gt=0)
    max_entry_kb: int | None = Field(default=None, gt=0)
    shared: bool | None = None


class ContextConfig(_Frozen):
    """A model group's ``context:`` section: count prompts against the smallest
    deployment ``context_window`` and reject, trim or route (docs/context.md)."""

    mode: Literal["reject", "trim", "route"] = "reject"
    """What to do with a request that cannot fit the group's smallest context window:
    answer 400 before any upstream call, drop messages until it fits, or raise the
    error a ``context_window_exceeded`` fallback rule takes to a larger group."""
    strategy: Literal["drop_oldest", "middle_out"] = "drop_oldest"
    """``trim`` only: ``drop_oldest`` drops the oldest turns first; ``middle_out`` keeps
    the first user message and the most recent turns, dropping from the middle.
    System messages, the last user message and the last turn are never dropped, and a
    tool call is never separated from its results."""
    family: Literal["auto"] | Family = "auto"
    """Tokenizer family; ``auto`` guesses it from the deployment's model and provider."""
    reserve_output_tokens: int = Field(default=256, ge=0)
    """``trim`` only: room kept for the answer when the request sets no max_tokens."""
    margin: float | None = Field(default=None, ge=0, lt=0.9)
    """Share by which an estimated count may be off (``None``: the family's measured
    95th percentile, see docs/context.md; exact counts use 0)."""


class HedgeConfig(_Frozen):
    """Opt-in: after a delay, send a second attempt to another deployment; first answer wins."""

    enabled: bool = False
    after: float | Literal["p95"] = "p95"
    """A fixed delay in seconds, or ``p95`` of the group's observed latency."""
    min_after: float = Field(default=0.05, ge=0)
    """Lower bound of the ``p95`` delay.  Until 20 latencies are known, ``p95`` does not hedge."""
    max_after: float = Field(default=10.0, gt=0)


def _unavailable() -> list[ErrorClassName]:
    return ["unavailable"]


class FallbackRule(_Frozen):
    to: str
    """The model group to try next."""
    on: list[ErrorClassName] = Field(default_factory=_unavailable, min_length=1)
    """Error classes that trigger it; ``unavailable`` stands for rate limited, overloaded,
    server error, timeout, connection error, malformed response and circuit open."""

    @property
    def classes(self) -> frozenset[str]:
        out: set[str] = set()
        for c in self.on:
            out.update(UNAVAILABLE if c == "unavailable" else (c,))
        return frozenset(out)


class Deployment(_Frozen):
    """One upstream that can serve a model group."""

    provider: str
    """A preset name (see ``brace.presets.PRESETS``)."""
    model: str = Field(min_length=1)
    """The model name sent upstream."""
    name: str | None = None
    """A stable id for logs, headers and metrics (default ``provider/model``)."""
    base_url: str | None = None
    api_key: SecretStr | None = None
    api_version: str | None = None
    """Azure only: the ``api-version`` query parameter."""
    azure_deployment: str | None = None
    """Azure only: the deployment name in the URL path (default: ``model``)."""
    headers: dict[str, str] = Field(default_factory=dict)
    """Extra headers sent upstream (e.g. OpenRouter's ``HTTP-Referer``)."""
    rpm: int | None = Field(default=None, gt=0)
    tpm: int | None = Field(default=None, gt=0)
    max_concurrency: int | None = Field(default=None, gt=0)
    burst_seconds: float = Field(default=1.0, gt=0, le=60)
    """Pacing: how many seconds of the rpm/tpm rate may be sent at once (a burst).
    Small is safe whatever the upstream's bucket; 60 spends a whole minute's quota."""
    context_window: int | None = Field(default=None, gt=0)
    prices: Prices | None = None
    weight: float = Field(default=1.0, gt=0)
    timeouts: Timeouts = Field(default_factory=Timeouts)

    @field_validator("provider")
    @classmethod
    def _known_provider(cls, value: str) -> str:
        if value not in PRESETS:
            names = ", ".join(sorted(PRESETS))
            raise ValueError(f"unknown provider {value!r}; expected one of: {names}")
        return value

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https:// (got {value!r})")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _complete(self) -> Deployment:
        preset = self.preset
        if self.base_url is None and preset.base_url is None:
            raise ValueError(f"provider {self.provider!r} has no default base_url; set base_url")
        default_openai = self.provider == "openai" and self.base_url is None
        if self.api_key is None and (preset.needs_key or default_openai):
            raise ValueError(
                f"provider {self.provider!r} needs an api_key; "
                "set api_key: ${ENV_VAR} (an environment reference)"
            )
        if preset.azure and not self.api_version:
            raise ValueError("provider 'azure' needs api_version (e.g. 2024-10-21)")
        return self

    @property
    def preset(self) -> Preset:
        return PRESETS[self.provider]

    @property
    def url(self) -> str:
        """The effective base URL."""
        url = self.base_url or self.preset.base_url
        assert url is not None  # guaranteed by _complete
        return url

    @property
    def id(self) -> str:
        return self.name or f"{self.provider}/{self.model}"


class ModelGroup(_Frozen):
    """A model name clients ask for, served by one or more deployments."""

    deployments: list[Deployment] = Field(min_length=1)
    description: str | None = None
    deadline: float = Field(default=300.0, gt=0)
    """Seconds for the whole request: queueing, retries and fallbacks together.
    A caller may ask for less with the ``x-brace-timeout`` header (seconds)."""
    retry: RetryConfig = Field(default_factory=RetryConfig)
    capacity: CapacityConfig = Field(default_factory=CapacityConfig)
    cache: CacheOverride | None = None
    """Overrides of the top-level ``cache:`` for this group."""
    context: ContextConfig | None = None
    """Context-window handling (needs ``context_window`` on a deployment)."""
    breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    hedge: HedgeConfig = Field(default_factory=HedgeConfig)
    fallbacks: list[FallbackRule] = Field(default_factory=list)
    """Tried in order when the group fails with a matching error class."""
    max_fallbacks: int = Field(default=2, ge=0, le=10)
    """Most fallback hops per request."""


class ServerConfig(_Frozen):
    host: str = "127.0.0.1"
    port: int = Field(default=4000, ge=0, le=65535)
    max_body_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    """Larger request bodies are refused with 413."""
    shutdown_timeout: float = Field(default=30.0, ge=0)
    """On SIGTERM/SIGINT: stop accepting, then wait this long for in-flight requests."""
    keepalive_timeout: float = Field(default=75.0, ge=0)
    redis_url: SecretStr | None = None
    """Share limits, reservations and learned limits across gateway instances
    (``${REDIS_URL}``, e.g. redis://127.0.0.1:6379/0).  Without it, all state is
    in-process."""
    instance_namespace: str = "brace"
    """Prefix of the Redis keys: gateways sharing limits must use the same one."""
    admin_key: SecretStr | None = None
    """The master key (an environment reference; ``$BRACE_ADMIN_KEY`` when the file does
    not set it): Bearer key of the admin API, which manages virtual keys.  Without it
    the admin API answers only when the gateway listens on a loopback address."""
    allow_unauthenticated: bool = False
    """Local mode (no master key, no virtual key) on a non-loopback address serves
    anyone who can reach it: refused at start-up unless this is ``true``
    (``brace serve --allow-unauthenticated``)."""
    gc_threshold: int = Field(default=20_000, ge=0)
    """``brace serve`` only (it owns the process): the generation-0 threshold of
    Python's cyclic garbage collector while serving (Python's default: 700), after
    freezing what start-up allocated (``gc.freeze``).  At 700, the objects of the
    requests in flight keep crossing the threshold and the collector ran ~2,000
    times a minute under load, ~38 µs per request (``docs/benchmarks.md``); garbage
    cycles are still collected, ~20,000 allocations apart.  ``0`` leaves the
    collector as Python set it.  The in-process client never touches it."""


class KeysConfig(_Frozen):
    """Virtual API keys and budgets (``docs/keys.md``)."""

    database: str | None = None
    """Where keys, team budgets and spend live: a SQLite path or a PostgreSQL URL.
    Default: ``telemetry.database`` (``brace.db``)."""
    refresh_seconds: float = Field(default=0.25, gt=0, le=60)
    """How often each gateway checks the database for key changes made elsewhere."""
    propagation_timeout: float = Field(default=2.0, ge=0, le=60)
    """An admin change answers once every live gateway has loaded it, or after this."""
    spend_sync_seconds: float = Field(default=1.0, gt=0, le=60)
    """How often settled spend is written to the database (and, without Redis, how
    often the other gateways' spend is read back)."""
    alert_webhook: str | None = None
    """Soft budgets: also POST each alert as JSON here (the log line and the metric
    are always on)."""
    alert_at: list[float] = Field(default_factory=lambda: [0.8, 1.0])
    """Fractions of a soft budget at which an alert fires (once per period)."""

    @field_validator("alert_at")
    @classmethod
    def _fractions(cls, v: list[float]) -> list[float]:
        if any(not 0 < x <= 10 for x in v):
            raise ValueError("alert_at: fractions of the budget, each in (0, 10]")
        return sorted(set(v))


class TelemetryConfig(_Frozen):
    """Traces, metrics, the request log and spend."""

    enabled: bool = True
    store: Literal["sqlite", "postgres", "off"] = "sqlite"
    """Where the request log and traces go (a bounded background writer)."""
    database: str = "brace.db"
    """SQLite: a file path.  PostgreSQL: a URL, e.g. ``${DATABASE_URL}``."""
    capture_content: bool = False
    """Store request messages and answers (off: only metadata, tokens and cost)."""
    retention_days: float = Field(default=30.0, gt=0)
    retention_max_rows: int = Field(default=1_000_000, gt=0)
    writer_queue: int = Field(default=10_000, gt=0)
    """Records waiting for the writer; beyond it they are dropped and counted."""
    otlp_endpoint: str | None = None
    """OTLP/HTTP traces endpoint, e.g. http://127.0.0.1:4318/v1/traces (Jaeger, Tempo,
    Langfuse, Phoenix...).  Off by default."""
    otlp_headers: dict[str, str] = Field(default_factory=dict)
    service_name: str = "brace"
    trace_sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0)
    """Share of requests exported as spans, chosen by trace id (the same requests on
    every gateway of a trace); a request with any failure (surfaced or absorbed) is
    always exported."""


class RunsConfig(_Frozen):
    """Agent runs (docs/runs.md): requests grouped into runs, with their tool steps."""

    enabled: bool = True
    """Track runs (a request with no run identity and no ``tools`` pays nothing either way)."""
    link_conversations: bool = True
    """Put a request with no run identity into the run whose answer its messages continue."""
    idle_timeout: float = Field(default=600.0, gt=0)
    """Seconds without a request after which a running run is ``abandoned``."""
    max_active: int = Field(default=10_000, gt=0)
    """Runs kept in memory; beyond it the least recently active is let go (as abandoned
    if still running)."""
    link_index_size: int = Field(default=20_000, gt=0)
    """Answers remembered for conversation linking (the newest)."""
    max_tool_calls: int = Field(default=128, gt=0)
    """Tool steps opened per answer at most (the rest are counted, not tracked)."""


class BraceConfig(_Frozen):
    """The whole ``brace.yaml``."""

    server: ServerConfig = Field(default_factory=ServerConfig)
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    keys: KeysConfig = Field(default_factory=KeysConfig)
    runs: RunsConfig = Field(default_factory=RunsConfig)
    models: dict[str, ModelGroup] = Field(min_length=1)

    @property
    def keys_database(self) -> str:
        """The database of keys and spend: ``keys.database``, else ``telemetry.database``."""
        return self.keys.database or self.telemetry.database

    @model_validator(mode="after")
    def _unique_deployment_ids(self) -> BraceConfig:
        for group_name, group in self.models.items():
            for i, rule in enumerate(group.fallbacks):
                if rule.to not in self.models:
                    raise ValueError(
                        f"models.{group_name}.fallbacks[{i}].to: no model group named "
                        f"{rule.to!r}; expected one of: {', '.join(sorted(self.models))}"
                    )
                if rule.to == group_name:
                    raise ValueError(
                        f"models.{group_name}.fallbacks[{i}].to: a group cannot fall back to itself"
                    )
            seen: set[str] = set()
            for dep in group.deployments:
                if dep.id in seen:
                    raise ValueError(
                        f"model group {group_name!r} has two deployments named {dep.id!r}; "
                        "give each a distinct name:"
                    )
                seen.add(dep.id)
        return self


# ----------------------------------------------------------------------------- loading


def _resolve_env(value: Any, path: str, env: Mapping[str, str], source: str) -> Any:
    if isinstance(value, str):

        def repl(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            raise ConfigError(
                f"{source}: {path}: environment variable {name} is not set "
                f"(set it, or write ${{{name}:-default}})"
            )

        return _ENV_REF.sub(repl, value)
    if isinstance(value, dict):
        return {
            k: _resolve_env(v, f"{path}.{k}" if path else str(k), env, source)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_resolve_env(v, f"{path}[{i}]", env, source) for i, v in enumerate(value)]
    return value


def _format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PYDANTIC_INTERNAL.match(str(part)):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _check_inline_secrets(raw: Any, source: str) -> None:
    """API keys must be environment references so that config files hold no secret."""
    server = raw.get("server") if isinstance(raw, dict) else None
    admin = server.get("admin_key") if isinstance(server, dict) else None
    if isinstance(admin, str) and not _ENV_REF.fullmatch(admin.strip()):
        raise ConfigError(
            f"{source}: server.admin_key: write an environment reference such as "
            "${BRACE_ADMIN_KEY}, not the key itself"
        )
    models = raw.get("models") if isinstance(raw, dict) else None
    if not isinstance(models, dict):
        return
    for gname, group in models.items():
        deps = group.get("deployments") if isinstance(group, dict) else None
        if not isinstance(deps, list):
            continue
        for i, dep in enumerate(deps):
            key = dep.get("api_key") if isinstance(dep, dict) else None
            if isinstance(key, str) and not _ENV_REF.fullmatch(key.strip()):
                raise ConfigError(
                    f"{source}: models.{gname}.deployments[{i}].api_key: write an environment "
                    "reference such as ${OPENAI_API_KEY}, not the key itself, so that the file "
                    "holds no secret"
                )


def parse_config(
    raw: Any, *, source: str = "<config>", env: Mapping[str, str] | None = None
) -> BraceConfig:
    """Validate an already-parsed config mapping (e.g. from YAML)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level with a 'models' key")
    _check_inline_secrets(raw, source)
    env = os.environ if env is None else env
    resolved = _resolve_env(raw, "", env, source)
    master = env.get("BRACE_ADMIN_KEY")
    if master:
        server = resolved.setdefault("server", {})
        if isinstance(server, dict) and server.get("admin_key") is None:
            server["admin_key"] = master
    try:
        return BraceConfig.model_validate(resolved)
    except ValidationError as exc:
        lines = []
        for err in exc.errors(include_url=False, include_input=False):
            msg = err["msg"].removeprefix("Value error, ")
            where = f"{_format_loc(err['loc'])}: " if err["loc"] else ""
            lines.append(f"{source}: {where}{msg}")
        raise ConfigError("\n".join(lines)) from None


def load_config(path: str | Path, *, env: Mapping[str, str] | None = None) -> BraceConfig:
    """Read and validate a YAML config file."""
    p = Path(path)
    source = str(p)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{source}: file not found (pass --config PATH, or run `brace serve --demo`)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{source}:{where}: invalid YAML: {problem}") from None
    return parse_config(raw, source=source, env=env)
