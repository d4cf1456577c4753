"""``brace logs`` and ``brace trace``: read the request log of a running gateway.

Both talk to the gateway's admin API over HTTP (``/admin/requests``,
``/admin/requests/{id}``, ``/admin/traces/{id}``), so they work whatever the store
engine.  With ``server.admin_key`` set, put the key in ``$BRACE_ADMIN_KEY`` (or the
variable named by ``--admin-key-env``): it is sent as ``Authorization: Bearer``.
"""

from __future__ import annotations

import time
import urllib.parse
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ._admin_client import DEFAULT_URL, AdminClient, AdminError, KeyEnvOpt, UrlOpt

__all__ = ["register_cli"]

_FOLLOW_LOOKBACK = 300.0
"""``--follow`` re-reads this many seconds before the newest row it has seen: records
are written when a request ends, so a long request can land after shorter, later ones."""
_PAGE = 500
_BAR = 40


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).strftime("%m-%d %H:%M:%S")


def _ms(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds * 1000:.0f}"


def _status(row: dict[str, Any]) -> str:
    if row.get("error_class"):
        return f"[red]{row['status']} {escape(row['error_class'])}[/]"
    return f"[green]{row['status']}[/]"


def _notes(row: dict[str, Any]) -> str:
    notes = []
    fallback = row.get("fallback")
    if fallback:
        notes.append("fallback " + ">".join(fallback))
    if row.get("hedged"):
        notes.append("hedged")
    if row.get("absorbed"):
        notes.append(f"{row['absorbed']} absorbed")
    if row.get("client_disconnected"):
        notes.append("client gone")
    return escape(", ".join(notes))


def _table(rows: list[dict[str, Any]], *, header: bool) -> Table:
    table = Table(show_header=header, box=None, pad_edge=False, header_style="bold")
    for name, width, justify in (
        ("time", 14, "left"),
        ("request", 24, "left"),
        ("model", 16, "left"),
        ("deployment", 18, "left"),
        ("status", 22, "left"),
        ("ms", 7, "right"),
        ("ttft", 6, "right"),
        ("tokens", 11, "right"),
        ("cost $", 9, "right"),
        ("att", 3, "right"),
        ("notes", None, "left"),
    ):
        table.add_column(
            name,
            width=width,
            min_width=12 if width is None else None,
            justify=justify,  # type: ignore[arg-type]  # one of rich's JustifyMethod literals
            no_wrap=True,
            overflow="ellipsis",
        )
    for r in rows:
        tokens = ""
        if r.get("input_tokens") is not None or r.get("output_tokens") is not None:
            tokens = f"{r.get('input_tokens') or 0}/{r.get('output_tokens') or 0}"
        cost = "" if r.get("cost_usd") is None else f"{r['cost_usd']:.5f}"
        table.add_row(
            _when(r["started_at"]),
            escape(r["request_id"]),
            escape(r["model"]),
            escape(r.get("deployment") or ""),
            _status(r),
            _ms(r["duration"]),
            _ms(r.get("ttft")),
            tokens,
            cost,
            str(r.get("attempts_count", "")),
            _notes(r),
        )
    return table


def logs(
    url: UrlOpt = DEFAULT_URL,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep polling and print new requests.")
    ] = False,
    model: Annotated[str | None, typer.Option(help="Only this model group.")] = None,
    status: Annotated[
        str | None, typer.Option(help="An HTTP status (429), a class (5xx), ok or error.")
    ] = None,
    error_class: Annotated[
        str | None, typer.Option("--error-class", help="Only this error class.")
    ] = None,
    limit: Annotated[
        int, typer.Option(help="How many recent requests to show.", min=1, max=1000)
    ] = 20,
    admin_key_env: KeyEnvOpt = "BRACE_ADMIN_KEY",
    interval: Annotated[float, typer.Option(hidden=True, min=0.05)] = 1.0,
) -> None:
    """Show the most recent requests (newest last); --follow prints new ones as they come."""
    out = Console(soft_wrap=False)
    err = Console(stderr=True, soft_wrap=True)
    client = AdminClient(url, admin_key_env)
    filters: dict[str, Any] = {"model": model, "status": status, "error_class": error_class}
    try:
        page = client.get("/admin/requests", {**filters, "limit": limit})
        rows: list[dict[str, Any]] = list(reversed(page["data"]))
        out.print(_table(rows, header=True))
        if not follow:
            if not rows:
                out.print("[dim]no request in the log yet[/]")
            return
        seen = {r["request_id"]: r["started_at"] for r in rows}
        newest = max(seen.values(), default=time.time())
        while True:
            time.sleep(interval)
            fresh = _newer(client, filters, newest - _FOLLOW_LOOKBACK, seen)
            if fresh:
                out.print(_table(fresh, header=False))
                newest = max(newest, *(r["started_at"] for r in fresh))
                horizon = newest - _FOLLOW_LOOKBACK
                seen = {k: v for k, v in seen.items() if v >= horizon}
    except AdminError as exc:
        err.print(f"[bold red]brace logs:[/] {escape(exc.message)}", highlight=False)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


def _newer(
    client: AdminClient, filters: dict[str, Any], since: float, seen: dict[str, float]
) -> list[dict[str, Any]]:
    """Rows since ``since`` not yet seen (marks them seen), oldest first."""
    fresh: list[dict[str, Any]] = []
    cursor = None
    for _ in range(20):  # at most 10,000 rows a poll
        page = client.get(
            "/admin/requests", {**filters, "since": since, "limit": _PAGE, "before": cursor}
        )
        for r in page["data"]:
            if r["request_id"] not in seen:
                seen[r["request_id"]] = r["started_at"]
                fresh.append(r)
        cursor = page.get("next_cursor")
        if not cursor:
            break
    fresh.sort(key=lambda r: (r["started_at"], r["request_id"]))
    return fresh


def _bar(offset: float, duration: float, scale: float, color: str) -> str:
    start = min(_BAR - 1, int(offset / scale * _BAR)) if scale > 0 else 0
    length = max(1, round(duration / scale * _BAR)) if scale > 0 else 1
    length = min(length, _BAR - start)
    rest = _BAR - start - length
    return f"[dim]{'·' * start}[/][{color}]{'█' * length}[/][dim]{'·' * rest}[/]"


def _print_request(out: Console, r: dict[str, Any]) -> None:
    route = escape(r["model"])
    if r.get("group") and r["group"] != r["model"]:
        route += f" → {escape(r['group'])}"
    out.print(
        f"[bold]request[/] {escape(r['request_id'])}  {escape(r['operation'])} {route}"
        f"{' (stream)' if r.get('stream') else ''}  {_status(r)}  "
        f"{_ms(r['duration'])} ms" + (f"  ttft {_ms(r['ttft'])} ms" if r.get("ttft") else ""),
        highlight=False,
    )
    details = [f"trace {r['trace_id']}", f"at {_when(r['started_at'])}"]
    if r.get("deployment"):
        details.append(f"deployment {r['deployment']}")
    if r.get("input_tokens") is not None or r.get("output_tokens") is not None:
        details.append(
            f"tokens {r.get('input_tokens') or 0} in / {r.get('output_tokens') or 0} out"
        )
    if r.get("cost_usd") is not None:
        details.append(f"${r['cost_usd']:.6f}")
    if r.get("queue_wait"):
        details.append(f"queued {_ms(r['queue_wait'])} ms")
    if r.get("fallback"):
        details.append("fallback " + " > ".join(r["fallback"]))
    out.print(escape("  ".join(details)), highlight=False)
    if r.get("error"):
        out.print(f"[red]error:[/] {escape(str(r['error']))}", highlight=False)
    attempts = r.get("attempts") or []
    if not attempts:
        out.print("[dim]no attempt reached a deployment[/]")
        return
    scale = max([float(r["duration"])] + [a["offset"] + a["duration"] for a in attempts])
    for i, a in enumerate(attempts):
        failed = a.get("error_class") is not None
        marks = []
        if a.get("hedge"):
            marks.append("hedge")
        elif a["group"] != r["model"]:
            marks.append(f"fallback → {a['group']}")
        elif i > 0:
            waited = a.get("retry_delay")
            marks.append("retry" if waited is None else f"retry after {_ms(waited)} ms")
        outcome = (
            f"[red]{a.get('status') or '-'} {escape(a['error_class'])}[/]"
            if failed
            else f"[green]{a.get('status') or '-'} ok[/]"
        )
        out.print(
            f"  +{_ms(a['offset']):>6} ms {_bar(a['offset'], a['duration'], scale, 'red' if failed else 'green')}"
            f" {_ms(a['duration']):>6} ms  {escape(a['deployment'])}  {outcome}"
            + (f"  [yellow]{escape(', '.join(marks))}[/]" if marks else ""),
            highlight=False,
        )


def trace(
    request_id: Annotated[str, typer.Argument(help="A request id (or a trace id).")],
    url: UrlOpt = DEFAULT_URL,
    admin_key_env: KeyEnvOpt = "BRACE_ADMIN_KEY",
) -> None:
    """Show a request with a timeline of its attempts (retries, hedges, fallbacks),
    and the other requests of its trace."""
    out = Console(soft_wrap=True)
    err = Console(stderr=True, soft_wrap=True)
    client = AdminClient(url, admin_key_env)
    quoted = urllib.parse.quote(request_id, safe="")
    try:
        try:
            found = client.get(f"/admin/requests/{quoted}")
        except AdminError as exc:
            if exc.status != 404:
                raise
            # not a request id: maybe a trace id
            for r in client.get(f"/admin/traces/{quoted}")["data"]:
                _print_request(out, r)
                out.print()
            return
        _print_request(out, found)
        others = client.get(f"/admin/traces/{urllib.parse.quote(found['trace_id'], safe='')}")
        siblings = [r for r in others["data"] if r["request_id"] != found["request_id"]]
        if siblings:
            out.print(f"\n[bold]trace[/] {escape(found['trace_id'])}: {len(siblings) + 1} requests")
            out.print(_table(others["data"], header=True))
    except AdminError as exc:
        err.print(f"[bold red]brace trace:[/] {escape(exc.message)}", highlight=False)
        raise typer.Exit(1) from None


def register_cli(app: typer.Typer) -> None:
    """Add ``brace logs`` and ``brace trace`` to the ``brace`` command."""
    app.command("logs")(logs)
    app.command("trace")(trace)
