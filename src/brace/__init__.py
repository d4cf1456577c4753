"""Brace: a reliability gateway and library for LLM APIs.

The public surface is listed in ``__all__``; modules whose names start with an
underscore are private.
"""

from ._version import __version__
from .client import AsyncClient, Client
from .config import BraceConfig, Deployment, ModelGroup, load_config, parse_config
from .engine import Engine
from .errors import (
    AttemptsExhausted,
    BadRequest,
    BraceError,
    CircuitOpen,
    ConfigError,
    ContentFiltered,
    ContextWindowExceeded,
    DeadlineExceeded,
    MalformedResponse,
    ModelNotFound,
    Overloaded,
    PayloadTooLarge,
    RateLimited,
    RequestError,
    ServerError,
    UpstreamAuthError,
    UpstreamBadRequest,
    UpstreamConnectionError,
    UpstreamFailure,
    UpstreamNotFound,
    UpstreamTimeout,
)
from .stack import Handler, Policy, Request, Response, StreamResponse, build_stack

__all__ = [
    "AsyncClient",
    "AttemptsExhausted",
    "BadRequest",
    "BraceConfig",
    "BraceError",
    "CircuitOpen",
    "Client",
    "ConfigError",
    "ContentFiltered",
    "ContextWindowExceeded",
    "DeadlineExceeded",
    "Deployment",
    "Engine",
    "Handler",
    "MalformedResponse",
    "ModelGroup",
    "ModelNotFound",
    "Overloaded",
    "PayloadTooLarge",
    "Policy",
    "RateLimited",
    "Request",
    "RequestError",
    "Response",
    "ServerError",
    "StreamResponse",
    "UpstreamAuthError",
    "UpstreamBadRequest",
    "UpstreamConnectionError",
    "UpstreamFailure",
    "UpstreamNotFound",
    "UpstreamTimeout",
    "__version__",
    "build_stack",
    "load_config",
    "parse_config",
]
