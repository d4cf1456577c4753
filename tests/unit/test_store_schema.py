"""The request log's pure parts: row mapping, cursors, filters, migrations bookkeeping,
time parameters."""

from __future__ import annotations

import pytest

from brace.errors import BadRequest, ConfigError
from brace.gateway.routes.logs import parse_time
from brace.store._migrations import check_applied
from brace.store.requests import MIGRATIONS, InvalidQuery, Migration, SchemaTooNew
from brace.store.requests._queries import (
    _percentile,
    _status_clause,
    decode_cursor,
    encode_cursor,
)
from brace.store.requests._rows import (
    ATTEMPT_COLUMNS,
    REQUEST_COLUMNS,
    attempt_rows,
    request_row,
    row_to_request,
    unique_records,
)
from brace.telemetry.record import AttemptRecord, RequestRecord


def record(**kw: object) -> RequestRecord:
    base: dict[str, object] = {
        "request_id": "r1",
        "trace_id": "a" * 32,
        "span_id": "b" * 16,
        "parent_span_id": None,
        "operation": "chat",
        "model": "gpt",
        "started_at": 1_700_000_000.5,
        "duration": 0.25,
        "status": 200,
        "attempts": [
            AttemptRecord("d1", "gpt", "openai", 0.0, 0.1, "rate_limited", 429),
            AttemptRecord("d2", "gpt", "openai", 0.1, 0.15, None, 200, hedge=True),
        ],
        "finish_reasons": ["stop"],
        "content": {"messages": [{"role": "user", "content": "hi"}]},
    }
    base.update(kw)
    return RequestRecord(**base)  # type: ignore[arg-type]


def test_request_row_matches_the_columns_and_drops_content_unless_captured() -> None:
    r = record()
    row = request_row(r, capture_content=False)
    assert len(row) == len(REQUEST_COLUMNS)
    values = dict(zip(REQUEST_COLUMNS, row, strict=True))
    assert values["content"] is None
    assert values["attempts_count"] == 2
    assert values["absorbed"] == 1
    assert values["finish_reasons"] == '["stop"]'
    assert values["stream"] == 0 and values["hedged"] == 0
    captured = dict(zip(REQUEST_COLUMNS, request_row(r, capture_content=True), strict=True))
    assert captured["content"] == '{"messages":[{"role":"user","content":"hi"}]}'


def test_attempt_rows_are_numbered_in_order() -> None:
    rows = attempt_rows(record())
    assert [len(r) for r in rows] == [len(ATTEMPT_COLUMNS)] * 2
    assert [(r[1], r[2], r[9]) for r in rows] == [(0, "d1", 0), (1, "d2", 1)]


def test_row_to_request_decodes_booleans_json_and_group() -> None:
    values = dict(
        zip(REQUEST_COLUMNS, request_row(record(group="gpt"), capture_content=True), strict=True)
    )
    out = row_to_request(values)
    assert out["group"] == "gpt" and "grp" not in out
    assert out["stream"] is False
    assert out["finish_reasons"] == ["stop"]
    assert out["content"]["messages"][0]["content"] == "hi"


def test_unique_records_keeps_the_first_of_each_id() -> None:
    a, b, c = record(status=200), record(status=500), record(request_id="r2")
    assert unique_records([a, b, c]) == [a, c]


def test_cursor_round_trips_exactly() -> None:
    started = 1_700_000_000.123456789
    assert decode_cursor(encode_cursor(started, "req|1")) == (started, "req|1")
    for bad in ("", "not-base64!", encode_cursor(float("nan"), "x"), "eHl6"):
        with pytest.raises(InvalidQuery) as info:
            decode_cursor(bad)
        assert info.value.param == "before"


@pytest.mark.parametrize(
    ("status", "clause", "params"),
    [
        (429, "status = ?", [429]),
        ("503", "status = ?", [503]),
        ("5xx", "status >= ? AND status < ?", [500, 600]),
        ("ok", "error_class IS NULL", []),
        ("error", "error_class IS NOT NULL", []),
    ],
)
def test_status_filter(status: int | str, clause: str, params: list[int]) -> None:
    assert _status_clause(status) == (clause, params)


def test_bad_status_filter_names_the_param() -> None:
    with pytest.raises(InvalidQuery) as info:
        _status_clause("teapot")
    assert info.value.param == "status"


def test_percentile_is_nearest_rank() -> None:
    values = [float(i) for i in range(1, 101)]
    assert _percentile(values, 0.5) == 50.0
    assert _percentile(values, 0.99) == 99.0
    assert _percentile([7.0], 0.99) == 7.0
    assert _percentile([], 0.5) is None


def test_migrations_are_named_and_ordered() -> None:
    names = [m.name for m in MIGRATIONS]
    assert names[:2] == ["0001_requests", "0002_attempts"]
    assert names == sorted(names)


def test_check_applied_returns_pending_in_order_and_refuses_newer() -> None:
    extra = (*MIGRATIONS, Migration("0099_later", ("SELECT 1",)))
    assert [m.name for m in check_applied([], extra, "db")] == [m.name for m in extra]
    pending = check_applied(["0001_requests"], extra, "db")
    assert [m.name for m in pending] == [m.name for m in extra[1:]]
    assert pending[0].name == "0002_attempts" and pending[-1].name == "0099_later"
    assert check_applied([m.name for m in MIGRATIONS], MIGRATIONS, "db") == []
    with pytest.raises(SchemaTooNew) as info:
        check_applied(["0001_requests", "0002_attempts", "0042_future"], MIGRATIONS, "x.db")
    assert isinstance(info.value, ConfigError)
    assert "0042_future" in info.value.message and "x.db" in info.value.message


def test_parse_time_accepts_epoch_iso_and_ages() -> None:
    assert parse_time("1700000000.5", "since") == 1_700_000_000.5
    assert parse_time("2024-05-01T00:00:00Z", "since") == 1_714_521_600.0
    assert parse_time("2024-05-01T00:00:00", "since") == 1_714_521_600.0
    assert parse_time("15m", "since", now=10_000.0) == 10_000.0 - 900
    assert parse_time("2d", "since", now=1_000_000.0) == 1_000_000.0 - 172_800
    for bad in ("yesterday", "-5", "inf"):
        with pytest.raises(BadRequest) as info:
            parse_time(bad, "until")
        assert info.value.param == "until"
