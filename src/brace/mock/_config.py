"""``MockConfig``: the frozen, validated settings of one mock upstream.

Built once (CLI, YAML, ``POST /_mock/config``), never per request. A ``profile`` is a layer
*under* the explicit fields: ``MockConfig(profile="flaky", latency="50")`` has flaky's fault
rates and 50 ms latency; explicit ``error_rates`` are merged over the profile's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from brace.mock._agent import MAX_PARALLEL, MAX_TURNS, tool_names
from brace.mock._distribution import Distribution
from brace.mock._kinds import FaultKind
from brace.mock._profiles import PROFILES
from brace.mock._scenario import parse_scenario

__all__ = ["DEFAULT_MODELS", "MockConfig", "parse_error_rates"]

DEFAULT_MODELS: tuple[str, ...] = (
    "gpt-4o-mini",
    "gpt-4o",
    "text-embedding-3-small",
    "claude-sonnet-4-5",
)


class MockConfig(BaseModel):
    """Settings of the chaos upstream. All durations are documented with their unit."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    profile: str | None = None
    """Named profile (see ``PROFILES``) layered under the explicit fields."""
    latency: Distribution = Field(default_factory=Distribution)
    """Delay before the first byte of every inference response, ms."""
    chunks: int = Field(default=20, ge=1, le=100_000)
    """Number of SSE writes a streamed answer is split into."""
    chunk_delay: Distribution = Field(default_factory=Distribution)
    """Delay between two streamed chunks, ms."""
    rpm: int | None = Field(default=None, gt=0)
    """Requests per minute (token bucket); None is unlimited."""
    tpm: int | None = Field(default=None, gt=0)
    burst_seconds: float = Field(default=60.0, gt=0, le=60)
    """Bucket capacity, in seconds of refill: 60 (default, like OpenAI) lets the whole
    per-minute quota out as a burst; 1 allows only a second's worth (rpm/60) at once,
    like an upstream enforcing "10 requests per second"."""
    """Tokens per minute (token bucket); None is unlimited."""
    default_max_tokens: int = Field(default=256, ge=0)
    """Completion tokens charged to the tpm bucket when a request sets no max_tokens."""
    error_rates: dict[FaultKind, float] = Field(default_factory=dict)
    """Probability of each fault per inference request; the sum must be <= 1."""
    retry_after_seconds: float = Field(default=1.0, ge=0)
    """retry-after sent with injected 503/529 and injected 429, seconds."""
    hang_seconds: float = Field(default=600.0, ge=0)
    """How long a hung request stays silent before the connection is dropped, seconds."""
    stall_seconds: float = Field(default=30.0, ge=0)
    """How long a stalled response pauses halfway, seconds."""
    scenario: str | None = None
    """Time-scripted phases, e.g. ``"healthy:10s,outage:5s,healthy"``."""
    seed: int | None = None
    """Seed of the default random generator; None draws from the OS."""
    models: tuple[str, ...] = Field(default=DEFAULT_MODELS, min_length=1)
    """Model ids listed by GET /v1/models (requests echo whatever model they name)."""
    embedding_dim: int = Field(default=1536, ge=1, le=65_536)
    """Length of embedding vectors unless the request sets ``dimensions``."""
    reply_tokens: int | None = Field(default=None, ge=1)
    """Pad every text reply to this many tokens (bigger bodies for benchmarks)."""
    agent_turns: int | None = Field(default=None, ge=0, le=MAX_TURNS)
    """Play an agent's model: a request that declares tools is answered with tool calls
    until its history holds this many tool-call turns, then with a final answer. None: off."""
    agent_parallel: int = Field(default=1, ge=1, le=MAX_PARALLEL)
    """Tool calls per agent turn."""
    agent_tools: tuple[str, ...] = ()
    """Tools an agent turn calls, cycled (those the request declares); empty: all declared."""

    _explicit: dict[str, Any] = PrivateAttr(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _layer_profile(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        if isinstance(data, MockConfig):
            return data
        if not isinstance(data, Mapping):
            return handler(data)
        explicit = {str(key): value for key, value in data.items()}
        merged: dict[str, Any] = dict(data)
        name = data.get("profile")
        if isinstance(name, str) and name in PROFILES:
            base = {key: _thaw(value) for key, value in PROFILES[name].settings.items()}
            base_rates = base.get("error_rates")
            rates = {
                **(base_rates if isinstance(base_rates, dict) else {}),
                **_str_keys(data.get("error_rates") or {}),
            }
            merged = {**base, **data}
            if rates or "error_rates" in base:
                merged["error_rates"] = rates
        config = handler(merged)
        assert isinstance(config, MockConfig)
        config._explicit = explicit
        return config

    @field_validator("profile")
    @classmethod
    def _known_profile(cls, value: str | None) -> str | None:
        if value is not None and value not in PROFILES:
            raise ValueError(f"unknown profile {value!r}; known: {', '.join(PROFILES)}")
        return value

    @field_validator("error_rates", mode="before")
    @classmethod
    def _rate_keys(cls, value: Any) -> Any:
        return _str_keys(value) if isinstance(value, Mapping) else value

    @field_validator("error_rates")
    @classmethod
    def _rates_sum(cls, value: dict[FaultKind, float], info: ValidationInfo) -> dict[str, float]:
        for kind, rate in value.items():
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"rate for {kind} must be within 0..1, got {rate}")
        if sum(value.values()) > 1.0 + 1e-9:
            raise ValueError("fault rates add up to more than 1")
        return {kind: rate for kind, rate in value.items() if rate > 0}

    @field_validator("scenario")
    @classmethod
    def _valid_scenario(cls, value: str | None) -> str | None:
        if value is not None:
            parse_scenario(value)
        return value

    @field_validator("models", mode="before")
    @classmethod
    def _models_list(cls, value: Any) -> Any:
        return tuple(m.strip() for m in value.split(",")) if isinstance(value, str) else value

    @field_validator("agent_tools", mode="before")
    @classmethod
    def _split_tool_names(cls, value: Any) -> Any:
        return tool_names(value) if isinstance(value, str) else value

    @field_validator("agent_tools")
    @classmethod
    def _bounded_tool_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tool_names(value)

    @property
    def explicit_fields(self) -> frozenset[str]:
        """Fields given explicitly (not defaulted, not from the profile)."""
        return frozenset(self._explicit)

    def overrides(self) -> dict[str, Any]:
        """The explicit fields as given: what ``POST /_mock/config`` merges onto."""
        return dict(self._explicit)

    def merged(self, partial: Mapping[str, Any]) -> MockConfig:
        """A new config: this one's explicit fields updated with ``partial``."""
        return MockConfig.model_validate({**self.overrides(), **partial})


def _thaw(value: object) -> object:
    return dict(value) if isinstance(value, Mapping) else value


def _str_keys(value: Mapping[Any, Any]) -> dict[str, Any]:
    return {str(key): rate for key, rate in value.items()}


def parse_error_rates(spec: str) -> dict[str, float]:
    """Parse the CLI form ``503=0.4,hang=0.05`` into a rates dict."""
    rates: dict[str, float] = {}
    for item in spec.split(","):
        if not item.strip():
            continue
        key, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"bad error rate {item!r}: use KIND=RATE, e.g. 503=0.4")
        try:
            rates[key.strip()] = float(value)
        except ValueError:
            raise ValueError(f"bad error rate {item!r}: {value!r} is not a number") from None
    return rates
