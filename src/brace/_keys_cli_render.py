"""``brace keys``: how keys, teams, spend and propagation are printed (rich markup,
every value from the API escaped)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ._keys_cli_options import PERIODS

__all__ = [
    "keys_table",
    "print_json",
    "print_key",
    "print_propagation",
    "spend_summary",
    "teams_table",
    "when",
]

_STATE_STYLE = {"active": "green", "expired": "yellow", "revoked": "red"}


def _usd(x: float) -> str:
    return f"${x:.4f}" if 0 < x < 0.01 else f"${x:.2f}"


def _use(u: dict[str, Any], *, all_periods: bool = False) -> str | None:
    """One period's spend, e.g. ``day $0.12/$5.00 (2%)``; ``None`` when there is
    nothing to say (no budget and no spend, unless ``all_periods``)."""
    spent, limit = float(u.get("spent_usd") or 0.0), u.get("limit_usd")
    if limit is None:
        return f"{u['period']} {_usd(spent)}" if spent > 0 or all_periods else None
    pct = f"{spent / limit * 100:.0f}%" if limit > 0 else ("0%" if spent == 0 else "over")
    text = f"{u['period']} {_usd(spent)}/{_usd(float(limit))} ({pct})"
    if u.get("mode") == "soft":
        text += " soft"
    return text


def _periods(usage: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The usage rows in the order day, month, total."""
    order = {p: i for i, p in enumerate(PERIODS)}
    return sorted(usage, key=lambda u: order.get(u.get("period", ""), len(order)))


def spend_summary(usage: list[dict[str, Any]]) -> str:
    return ", ".join(s for s in (_use(u) for u in _periods(usage)) if s)


def when(iso: str | None) -> str:
    """An API time (ISO 8601, UTC) as ``2026-12-31 00:00Z``."""
    if not iso:
        return ""
    dt = datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(UTC)
    return dt.strftime("%Y-%m-%d %H:%MZ")


def _relative(iso: str) -> str:
    delta = datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() - time.time()
    span = abs(delta)
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60)):
        if span >= size:
            amount = f"{span / size:.0f}{unit}"
            break
    else:
        amount = f"{span:.0f}s"
    return f"in {amount}" if delta >= 0 else f"{amount} ago"


def _state(key: dict[str, Any]) -> str:
    state = str(key["state"])
    return f"[{_STATE_STYLE.get(state, 'white')}]{escape(state)}[/]"


def _models(key: dict[str, Any]) -> str:
    models = key.get("models")
    return "all" if models is None else ", ".join(models) or "none"


def _limits(key: dict[str, Any]) -> str:
    return f"{key.get('rpm') or '-'}/{key.get('tpm') or '-'}"


def keys_table(keys: list[dict[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name, wrap in (
        ("id", False),
        ("name", False),
        ("team", False),
        ("prefix", False),
        ("models", True),
        ("rpm/tpm", False),
        ("state", False),
        ("expires", False),
        ("spend", True),
    ):
        table.add_column(name, no_wrap=not wrap, overflow="fold")
    for k in keys:
        table.add_row(
            escape(k["id"]),
            escape(k["name"]),
            escape(k.get("team") or ""),
            escape(k["prefix"]) + "…",
            escape(_models(k)),
            _limits(k),
            _state(k),
            when(k.get("expires_at")) or "never",
            escape(spend_summary(k.get("usage") or [])),
        )
    return table


def print_key(out: Console, k: dict[str, Any]) -> None:
    out.print(f"[bold]{escape(k['id'])}[/]  {escape(k['name'])}  {_state(k)}", highlight=False)
    rows: list[tuple[str, str]] = [
        ("prefix", k["prefix"] + "…"),
        ("team", k.get("team") or "-"),
        ("models", _models(k)),
        ("rpm/tpm", _limits(k)),
        ("priority", k.get("priority") or "-"),
    ]
    usage = _periods(k.get("usage") or [])
    for u in usage:
        text = _use(u, all_periods=True) or ""
        if u.get("held_usd"):
            text += f", {_usd(float(u['held_usd']))} held by requests in flight"
        if u.get("limit_usd") is not None and u.get("resets_at"):
            text += f", resets {when(u['resets_at'])}"
        rows.append(("spend" if u is usage[0] else "", text))
    expires = k.get("expires_at")
    rows.append(("expires", f"{when(expires)} ({_relative(expires)})" if expires else "never"))
    if k.get("revoked_at"):
        rows.append(("revoked", when(k["revoked_at"])))
    rows.append(("created", when(k.get("created_at"))))
    meta = k.get("metadata") or {}
    if meta:
        rows.append(("metadata", ", ".join(f"{a}={b}" for a, b in meta.items())))
    for label, text in rows:
        out.print(f"  {label:<9}{escape(text)}", highlight=False)


def print_propagation(out: Console, p: dict[str, Any] | None) -> None:
    if not p:
        return
    confirmed, instances = int(p.get("confirmed", 0)), int(p.get("instances", 0))
    if confirmed >= instances:
        out.print(
            f"propagation: [green]{confirmed}/{instances}[/] gateway instances confirmed",
            highlight=False,
        )
    else:
        out.print(
            f"propagation: [yellow]{confirmed}/{instances}[/] gateway instances confirmed "
            "within keys.propagation_timeout; the others load the change on their next "
            "refresh if they are alive",
            highlight=False,
        )


def print_json(data: Any) -> None:
    typer.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


def teams_table(teams: list[dict[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("team", no_wrap=True, overflow="fold")
    table.add_column("keys", justify="right")
    table.add_column("budgets and spend", overflow="fold")
    for t in teams:
        table.add_row(
            escape(t["team"]), str(t.get("keys", 0)), escape(spend_summary(t.get("usage") or []))
        )
    return table
