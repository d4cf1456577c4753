"""``brace mock``: the chaos upstream.

A fake OpenAI- and Anthropic-compatible LLM API that injects the failures real providers
produce (rate limits, 5xx, hangs, stalled and truncated streams, malformed bodies, connection
resets), on a seeded schedule. See ``docs/mock.md``.

Errors: invalid settings raise ``pydantic.ValidationError`` (a ``ValueError``) from
:class:`MockConfig`; the CLI reports them with the source and key and exits with status 2.
"""

from brace.mock._app import ENGINE_KEY, create_app
from brace.mock._cli import register_cli
from brace.mock._config import MockConfig
from brace.mock._distribution import Distribution
from brace.mock._profiles import PROFILES, Profile
from brace.mock._server import MockServer, start_server
from brace.mock._testing import RunningMock, serve_mock

__all__ = [
    "ENGINE_KEY",
    "PROFILES",
    "Distribution",
    "MockConfig",
    "MockServer",
    "Profile",
    "RunningMock",
    "create_app",
    "register_cli",
    "serve_mock",
    "start_server",
]
