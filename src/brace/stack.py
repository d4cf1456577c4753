"""The two tiny interfaces at Brace's core, and the builder that orders a stack.

A :data:`Handler` is an async callable from a :class:`Request` to a :class:`Response`
(or a :class:`StreamResponse`).  A :class:`Policy` wraps a handler and returns a
handler, like tower's ``Layer``.  Providers are the innermost handlers; everything
that makes a call reliable is a policy.  The gateway and the in-process client run
the same stack, built by :func:`build_stack` in one documented order: **the first
policy in the list sees the request first**.

Bodies stay plain dicts (requests) and bytes (responses) on the hot path: no
validation model ever wraps a whole body.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import orjson

__all__ = [
    "Handler",
    "Operation",
    "Policy",
    "Request",
    "Response",
    "StreamResponse",
    "build_stack",
    "collect_stream",
    "frame_payloads",
    "sse_frame",
]

Operation = Literal["chat", "embeddings"]


@dataclass(slots=True)
class Request:
    """One call entering the stack.

    ``body`` is the caller's JSON body as a plain dict, untouched but for what a
    policy must change (a provider rewrites ``model`` on its own copy).  ``meta`` is
    a scratch space where policies leave what they decided (chosen deployment,
    attempts...) for later layers, headers and telemetry.
    """

    operation: Operation
    model: str
    body: dict[str, Any]
    stream: bool = False
    request_id: str = ""
    deadline: float | None = None
    headers: dict[str, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Response:
    """A complete answer: an OpenAI-shaped JSON body, kept as bytes."""

    body: bytes
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    _parsed: dict[str, Any] | None = None
    upstream: Mapping[str, str] | None = None
    """The upstream's response headers (rate-limit learning); never sent to the caller."""

    def json(self) -> dict[str, Any]:
        """The body parsed once, on demand (telemetry, tests)."""
        if self._parsed is None:
            parsed = orjson.loads(self.body)
            self._parsed = parsed if isinstance(parsed, dict) else {"value": parsed}
        return self._parsed


class StreamResponse:
    """A streamed answer, as SSE *frames* of OpenAI ``chat.completion.chunk`` events.

    Each item of :attr:`chunks` is a frame: one or more complete events, each
    ``data: {json}\n\n``, as bytes — typically what one network read of the upstream
    delivered, so that a gateway relays a burst of events with one write.  The
    final ``data: [DONE]`` is not included; whoever renders the stream adds it.
    :func:`sse_frame` builds a frame and :func:`frame_payloads` splits one.
    :meth:`aclose` releases the upstream connection and must be called when the
    consumer stops early (client disconnect, error).
    """

    __slots__ = ("_close", "chunks", "headers", "upstream")

    def __init__(
        self,
        chunks: AsyncIterator[bytes],
        *,
        headers: dict[str, str] | None = None,
        close: Callable[[], Awaitable[None]] | None = None,
        upstream: Mapping[str, str] | None = None,
    ) -> None:
        self.chunks = chunks
        self.headers = headers if headers is not None else {}
        self._close = close
        self.upstream = upstream

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self.chunks

    async def aclose(self) -> None:
        """Stop the chunk iterator (running its cleanup) and release the upstream."""
        close, self._close = self._close, None
        closer = getattr(self.chunks, "aclose", None)
        if closer is not None:
            await closer()
        if close is not None:
            await close()


Handler = Callable[[Request], Awaitable[Response | StreamResponse]]


class Policy(Protocol):
    """Wraps a handler and returns a handler (tower's ``Layer``)."""

    def wrap(self, inner: Handler) -> Handler: ...


def build_stack(inner: Handler, policies: Sequence[Policy]) -> Handler:
    """Compose ``policies`` around ``inner``; ``policies[0]`` sees the request first."""
    handler = inner
    for policy in reversed(policies):
        handler = policy.wrap(handler)
    return handler


def sse_frame(payloads: Iterable[bytes]) -> bytes:
    """A frame of SSE events from JSON payloads."""
    return b"".join([b"data: " + p + b"\n\n" for p in payloads])


def frame_payloads(frame: bytes) -> list[bytes]:
    """The JSON payloads of a frame's events."""
    return [e[6:] for e in frame.split(b"\n\n") if e.startswith(b"data: ")]


async def collect_stream(stream: StreamResponse) -> list[dict[str, Any]]:
    """Read a whole stream into parsed chunks (tests and the in-process client)."""
    out: list[dict[str, Any]] = []
    try:
        async for frame in stream:
            out.extend(orjson.loads(p) for p in frame_payloads(frame))
    finally:
        await stream.aclose()
    return out
