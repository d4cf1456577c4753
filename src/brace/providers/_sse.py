"""An incremental Server-Sent Events decoder that works on bytes.

Upstream streams arrive in arbitrary network pieces; :meth:`SSEDecoder.feed` takes
each piece and returns the complete events it closed, keeping the rest.  The fast
path (one ``data:`` line per event, as OpenAI-compatible servers send) costs one
``find`` and one slice per event.
"""

from __future__ import annotations

__all__ = ["SSEDecoder", "SSEEvent", "parse_block"]

SSEEvent = tuple[bytes | None, bytes]
"""``(event name or None, data)``; comment-only blocks are dropped."""


class SSEDecoder:
    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, piece: bytes) -> list[SSEEvent]:
        buf = self._buf + piece if self._buf else piece
        if b"\r" in buf:
            # CRLF (or a CRLF split across pieces, kept in _buf) normalised to LF.
            buf = buf.replace(b"\r\n", b"\n")
            if buf.endswith(b"\r"):
                self._buf = buf
                return self._drain(buf[:-1], keep_cr=True)
        return self._drain(buf, keep_cr=False)

    def _drain(self, buf: bytes, *, keep_cr: bool) -> list[SSEEvent]:
        events: list[SSEEvent] = []
        start = 0
        while True:
            end = buf.find(b"\n\n", start)
            if end < 0:
                break
            block = buf[start:end]
            start = end + 2
            if block.startswith(b"data: ") and b"\n" not in block:
                events.append((None, block[6:]))
                continue
            event = parse_block(block)
            if event is not None:
                events.append(event)
        rest = buf[start:]
        self._buf = rest + b"\r" if keep_cr else rest
        return events

    @property
    def pending(self) -> bytes:
        """Bytes received but not yet closed into an event."""
        return self._buf


def parse_block(block: bytes) -> SSEEvent | None:
    name: bytes | None = None
    data: list[bytes] = []
    for line in block.split(b"\n"):
        if not line or line.startswith(b":"):
            continue
        field, sep, value = line.partition(b":")
        if sep and value.startswith(b" "):
            value = value[1:]
        if field == b"data":
            data.append(value)
        elif field == b"event":
            name = value
    if not data and name is None:
        return None
    return name, b"\n".join(data)
