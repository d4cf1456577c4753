"""The two tiny interfaces at Brace's core, and the builder that orders a stack.

A :data:`Handler` is an async callable from a :class:`Request` to a :class:`Response`
(or a :class:`StreamResponse`).  A :class:`Policy` wraps a handler and returns a
handler, like tower's ``Layer``.  Providers are the innermost handlers; everything
that makes a call reliable is a policy.  The gateway and the in-process client run
the same stack, built by :func:`build_stack` in one documented order: **the first
policy in the list sees the request first**.

Bodies stay plain dicts (requests) and bytes (responses) on the hot path: no
validation model ever wraps a whole body.

What the layers decide about a request travels in :class:`RequestState`
(``request.state``): typed, documented fields, each written by one layer (or the
door) and read by the layers below it and by telemetry, plus
:class:`Extensions`, a typed slot for what one policy keeps for itself or hands to
one other policy without every layer knowing its type.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, Protocol, TypeVar

import orjson

from .errors import BraceError

__all__ = [
    "Attempt",
    "CacheOutcome",
    "Extensions",
    "Handler",
    "LinkedBy",
    "Operation",
    "Policy",
    "Request",
    "RequestState",
    "Response",
    "RunRef",
    "StreamResponse",
    "answering_group",
    "build_stack",
    "collect_stream",
    "frame_payloads",
    "sse_frame",
]

Operation = Literal["chat", "embeddings"]
CacheOutcome = Literal["hit", "miss", "bypass"]

T = TypeVar("T")


class Attempt(NamedTuple):
    """One attempt at a deployment, as the attempt policy records it in
    :attr:`RequestState.attempts` (telemetry reads these)."""

    deployment: str
    error_class: str | None
    status: int | None
    duration: float
    started: float
    """On the engine's clock (monotonic)."""
    hedge: bool = False
    group: str = ""
    error: str | None = None
    retry_delay: float | None = None
    """The backoff the retry policy waited before this attempt (``None``: not a retry
    after a wait decision — a first attempt, a hedge, a fallback)."""


LinkedBy = Literal["header", "body", "context", "conversation"]
"""How a request joined its run: ``x-brace-run-id``, ``metadata.brace_run_id``, the
in-process ``client.run(...)`` context, or continuing the conversation of an answer the
run gave (no identity sent at all)."""


@dataclass(slots=True)
class RunRef:
    """A request's agent run (``request.state.run``): named by the door, or found by the
    runs slot from the conversation the request continues (:mod:`brace.runs`)."""

    id: str
    tenant: str
    """The run's owner (``RequestState.owner``): run ids are scoped to it."""
    linked_by: LinkedBy
    agent: str | None = None
    label: str | None = None
    """``x-brace-run-step``: the caller's name for this step."""
    trace_id: str | None = None
    """The run's trace (32 hex): every request of the run is a span in it."""
    span_id: str | None = None
    """The run's ``invoke_agent`` span (16 hex): the parent of its requests' spans."""
    sampled: bool = True
    """Traced or not, decided once per run (a run's trace is whole or absent)."""


class Extensions:
    """Typed, policy-private data on a request, keyed by its class (tower's / http's
    ``Extensions``): ``state.ext.insert(value)``, ``state.ext.get(MyType)``.

    For what one layer keeps for itself, or hands to a layer it knows, without adding
    a field every other layer must learn.  Empty until first used.
    """

    __slots__ = ("_items",)

    def __init__(self) -> None:
        self._items: dict[type, object] = {}

    def insert(self, value: object) -> None:
        """Keep ``value`` under its class (replacing one kept before)."""
        self._items[type(value)] = value

    def get(self, cls: type[T]) -> T | None:
        """The value kept under ``cls``, or ``None``."""
        value = self._items.get(cls)
        return value if isinstance(value, cls) else None

    def remove(self, cls: type[T]) -> T | None:
        """Forget the value kept under ``cls``; returns it (or ``None``)."""
        value = self._items.pop(cls, None)
        return value if isinstance(value, cls) else None

    def __len__(self) -> int:
        return len(self._items)

    def copy(self) -> Extensions:
        out = Extensions()
        out._items = self._items.copy()
        return out


@dataclass(slots=True)
class RequestState:
    """What the door and the layers decided about one request.

    Each field says who writes it; the layers below and telemetry read it.  A request
    that does not use a feature leaves its fields at their defaults (no cost).  Use
    :attr:`ext` for anything that is not of general interest.
    """

    # ── set by the door (gateway route or in-process client) ──
    tenant: str | None = None
    """Who the request is for: the virtual key's id, ``master``, a hash of the local-mode
    token; ``None`` in-process.  Admission's fairness and the cache's scope."""
    priority: str | None = None
    """``interactive`` | ``batch`` (``x-brace-priority`` or the key's); ``None``: interactive."""
    timeout: float | None = None
    """The caller's own time budget in seconds (``x-brace-timeout``); the deadline policy
    caps the group's deadline by it."""
    traceparent: str | None = None
    """The caller's W3C ``traceparent``: the request's spans join the caller's trace."""
    cache_control: tuple[str, ...] | None = None
    """``x-brace-cache`` tokens (``use``, ``no-cache``, ``no-store``)."""
    cache_max_age: float | None = None
    """``x-brace-cache-max-age``: only a younger cache entry may answer."""
    owner: str | None = None
    """Whose runs (and, later, journals and stored responses) the request may see and
    join: the virtual key's team or id, ``master``, or ``local`` (no key needed, and
    in-process).  ``None``: treated as ``local``."""
    run: RunRef | None = None
    """The agent run the request belongs to: named by the door (``x-brace-run-id``,
    ``metadata.brace_run_id``, ``client.run(...)``), or found by the runs slot from the
    conversation it continues (docs/runs.md)."""

    # ── set by the layers, outermost first ──
    cache: CacheOutcome | None = None
    """Cache policy: what the cache did (``x-brace-cache``)."""
    cache_age: float | None = None
    """Cache policy: the age of the entry that answered (a hit)."""
    cache_saved_usd: float | None = None
    """Cache policy: what the hit saved at the answering deployment's price."""
    queue_wait: float | None = None
    """Admission + pacing: seconds waited for capacity before the first attempt."""
    on_admit: Callable[[], None] | None = None
    """Admission → pacing: called once the request's reservation is granted, so the next
    queued request may go (set only while admission holds the request)."""
    fallback: list[str] | None = None
    """Fallback policy: the groups tried, in order, when the request fell back
    (``x-brace-fallback``); the last one answered."""
    prompt_tokens: int | None = None
    """Context policy: the prompt's counted tokens (after trimming)."""
    context_trimmed: int | None = None
    """Context policy: how many messages trimming dropped."""
    prompt_tokens_est: int | None = None
    """Pacing (or the first layer that needs it): the prompt estimate, computed once."""
    retry: bool = False
    """Retry policy: this pass through the balancer is a retry (charged to the budget)."""
    retry_delay: float | None = None
    """Retry policy → attempt policy: the wait chosen before the next attempt."""
    exclude: set[str] | None = None
    """Retry and hedge → balancer: deployments this request must not be sent to again."""
    hedge: bool = False
    """Hedge policy: this is the hedging (second) copy of the request."""
    hedged: bool = False
    """Hedge policy: the hedge answered."""
    deployment: str | None = None
    """Balancer: the deployment chosen last (the one that answered, on success)."""
    attempts: list[Attempt] | None = None
    """Attempt policy: every attempt, in the order they started."""

    # ── set by the provider (streams: as chunks pass) ──
    usage: dict[str, Any] | None = None
    """A stream's OpenAI-shaped usage (a JSON answer carries its own in the body)."""
    response_model: str | None = None
    """A stream's ``model`` as the upstream named it."""
    response_id: str | None = None
    """A stream's completion id."""
    finish_reasons: list[str] | None = None
    """A stream's finish reasons, one per choice that finished."""

    # ── set by whoever renders a stream ──
    stream_error: BraceError | None = None
    """The error that ended a stream after its first chunk went out."""
    client_disconnected: bool = False
    """The caller went away before the answer was complete."""

    _ext: Extensions | None = None

    @property
    def ext(self) -> Extensions:
        """Typed policy-private data (created on first use)."""
        ext = self._ext
        if ext is None:
            ext = self._ext = Extensions()
        return ext

    def fork(self) -> RequestState:
        """A copy for a second, concurrent pass through the lower layers (a hedge): the
        same door fields and decisions so far, its own ``exclude`` and extensions, the
        same ``attempts`` list (both copies record into it)."""
        other = copy.copy(self)
        if self.attempts is None:
            self.attempts = []
        other.attempts = self.attempts
        other.exclude = None if self.exclude is None else set(self.exclude)
        other._ext = None if self._ext is None else self._ext.copy()
        return other


@dataclass(slots=True)
class Request:
    """One call entering the stack.

    ``body`` is the caller's JSON body as a plain dict, untouched but for what a
    policy must change (a provider rewrites ``model`` on its own copy).  ``state`` is
    where the door and the policies leave what they decided (chosen deployment,
    attempts...) for later layers, headers and telemetry: see :class:`RequestState`.
    """

    operation: Operation
    model: str
    body: dict[str, Any]
    stream: bool = False
    request_id: str = ""
    deadline: float | None = None
    headers: dict[str, str] = field(default_factory=dict)
    state: RequestState = field(default_factory=RequestState)


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


def answering_group(req: Request) -> str:
    """The model group that answered ``req``: its last fallback hop, else the group it
    asked for (what prices, the request log and budgets attribute it to)."""
    hops = req.state.fallback
    return hops[-1] if hops else req.model


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
