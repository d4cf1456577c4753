from brace.providers._sse import SSEDecoder


def test_one_event_per_data_line() -> None:
    d = SSEDecoder()
    assert d.feed(b'data: {"a":1}\n\ndata: {"b":2}\n\n') == [(None, b'{"a":1}'), (None, b'{"b":2}')]
    assert d.pending == b""


def test_events_split_across_pieces_at_every_offset() -> None:
    stream = b'event: message_start\ndata: {"x":1}\n\n: ping comment\n\ndata: [DONE]\n\n'
    for cut in range(1, len(stream)):
        d = SSEDecoder()
        got = d.feed(stream[:cut]) + d.feed(stream[cut:])
        assert got == [(b"message_start", b'{"x":1}'), (None, b"[DONE]")], cut


def test_crlf_and_split_crlf() -> None:
    stream = b'data: {"a":1}\r\n\r\ndata: {"b":2}\r\n\r\n'
    for cut in range(1, len(stream)):
        d = SSEDecoder()
        got = d.feed(stream[:cut]) + d.feed(stream[cut:])
        assert got == [(None, b'{"a":1}'), (None, b'{"b":2}')], cut


def test_multiline_data_joined() -> None:
    d = SSEDecoder()
    assert d.feed(b"data: line1\ndata: line2\n\n") == [(None, b"line1\nline2")]


def test_incomplete_event_kept() -> None:
    d = SSEDecoder()
    assert d.feed(b'data: {"a"') == []
    assert d.pending == b'data: {"a"'
