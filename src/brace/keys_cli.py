"""``brace keys``: manage the virtual keys and team budgets of a running gateway.

Every command drives the gateway's admin API over HTTP (``/admin/keys``,
``/admin/teams``), so it works whatever the key database.  The master key
(``server.admin_key``) is read from ``$BRACE_ADMIN_KEY`` (or the variable named by
``--admin-key-env``), never from a flag, and is never printed.

::

    brace keys create NAME [--team T] [--model M ...] [--rpm N] [--tpm N]
                           [--priority interactive|batch] [--budget PERIOD:USD[:MODE] ...]
                           [--expires-in 30d | --expires-at ISO] [--meta K=V ...] [--json]
    brace keys list [--team T] [--state active|expired|revoked] [--json]
    brace keys show ID [--json]
    brace keys update ID [--name N] [create's options] [--clear-models] [--clear-budgets]
                         [--no-expiry] [--clear team|rpm|tpm|priority|metadata ...] [--json]
    brace keys revoke ID [--json]
    brace keys teams [--json]
    brace keys team-budget TEAM (--budget PERIOD:USD[:MODE] ... | --clear-budgets) [--json]

An API error is printed as one line (``401 ...``, ``404 no key with id ...``) and
exits 1; an option that does not parse exits 2 with the form it expects.
"""

from __future__ import annotations

import math
import re
import time
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ._admin_client import DEFAULT_URL, AdminClient, AdminError, KeyEnvOpt, UrlOpt

__all__ = ["register_cli"]

_TIMEOUT = 65.0
"""Seconds to wait for an answer: a change answers once every gateway has loaded it,
which ``keys.propagation_timeout`` (at most 60 s) bounds."""
_PERIODS = ("day", "month", "total")
_MODES = ("hard", "soft")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw]?)")
_CLEARABLE = ("team", "rpm", "tpm", "priority", "metadata")
_STATE_STYLE = {"active": "green", "expired": "yellow", "revoked": "red"}


# ----------------------------------------------------------------------------- option values


@dataclass(frozen=True, slots=True)
class _Budget:
    period: str
    limit_usd: float
    mode: str

    def to_api(self) -> dict[str, Any]:
        return {"period": self.period, "limit_usd": self.limit_usd, "mode": self.mode}


@dataclass(frozen=True, slots=True)
class _Meta:
    key: str
    value: str


def _parse_budget(value: str) -> _Budget:
    form = "expected PERIOD:USD[:MODE] with PERIOD day, month or total and MODE hard or soft, e.g. day:5 or month:50:soft"
    parts = value.strip().split(":")
    if len(parts) not in (2, 3):
        raise typer.BadParameter(f"{value!r}: {form}")
    period, amount = parts[0].strip().lower(), parts[1].strip().removeprefix("$")
    mode = parts[2].strip().lower() if len(parts) == 3 else "hard"
    if period not in _PERIODS:
        raise typer.BadParameter(f"{value!r}: unknown period {period!r}; {form}")
    if mode not in _MODES:
        raise typer.BadParameter(f"{value!r}: unknown mode {mode!r}; {form}")
    try:
        usd = float(amount)
    except ValueError:
        raise typer.BadParameter(f"{value!r}: {amount!r} is not an amount in USD; {form}") from None
    if not math.isfinite(usd) or usd < 0:
        raise typer.BadParameter(f"{value!r}: the amount must be a finite USD value >= 0")
    return _Budget(period, usd, mode)


def _parse_duration(value: str) -> float:
    m = _DURATION.fullmatch(value.strip().lower())
    seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"] if m else 0.0
    if seconds <= 0:
        raise typer.BadParameter(
            f"{value!r}: expected a duration such as 30d, 12h, 45m or 3600 (seconds), "
            "with unit s, m, h, d or w"
        )
    return seconds


def _parse_expires_at(value: str) -> str:
    text = value.strip()
    try:
        if math.isfinite(float(text)):
            return text  # epoch seconds
    except ValueError:
        pass
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(
            f"{value!r}: expected an ISO 8601 time such as 2026-12-31T00:00:00Z "
            "(UTC unless it says) or epoch seconds"
        ) from None
    return text


def _parse_clearable(value: str) -> str:
    name = value.strip().lower()
    if name not in _CLEARABLE:
        raise typer.BadParameter(f"{value!r}: expected one of {', '.join(_CLEARABLE)}")
    return name


def _parse_meta(value: str) -> _Meta:
    key, sep, val = value.partition("=")
    if not sep or not key.strip():
        raise typer.BadParameter(f"{value!r}: expected KEY=VALUE, e.g. owner=alice")
    return _Meta(key.strip(), val)


TeamOpt = Annotated[
    str | None,
    typer.Option(help="The key's team: its spend also counts against the team's budgets."),
]
ModelOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--model", "-m", help="A model group the key may use (repeat it). Default: every group."
    ),
]
RpmOpt = Annotated[int | None, typer.Option(min=1, help="Requests per minute for this key.")]
TpmOpt = Annotated[int | None, typer.Option(min=1, help="Tokens per minute for this key.")]
PriorityOpt = Annotated[
    Literal["interactive", "batch"] | None,
    typer.Option(help="Admission priority of the key's requests: interactive or batch."),
]
BudgetOpt = Annotated[
    list[_Budget] | None,
    typer.Option(
        "--budget",
        parser=_parse_budget,
        metavar="PERIOD:USD[:MODE]",
        help="A budget (repeat it): PERIOD day, month or total; MODE hard (refuse, the "
        "default) or soft (alert only). E.g. --budget day:5 --budget month:50:soft",
    ),
]
ExpiresInOpt = Annotated[
    float | None,
    typer.Option(
        parser=_parse_duration,
        metavar="DURATION",
        help="Expire after this long: 30d, 12h, 45m, 3600 (seconds).",
    ),
]
ExpiresAtOpt = Annotated[
    str | None,
    typer.Option(
        parser=_parse_expires_at,
        metavar="TIME",
        help="Expire at this ISO 8601 time (UTC unless it says), e.g. 2026-12-31T00:00:00Z.",
    ),
]
MetaOpt = Annotated[
    list[_Meta] | None,
    typer.Option(
        "--meta", parser=_parse_meta, metavar="KEY=VALUE", help="A metadata entry (repeat it)."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the API's JSON answer.")]
KeyIdArg = Annotated[str, typer.Argument(help="The key's id (key_...).", show_default=False)]


def _fields(
    *,
    team: str | None,
    models: list[str] | None,
    rpm: int | None,
    tpm: int | None,
    priority: str | None,
    budgets: list[_Budget] | None,
    expires_in: float | None,
    expires_at: str | None,
    meta: list[_Meta] | None,
) -> dict[str, Any]:
    """The request body's fields for the options given (absent ones are left out)."""
    if expires_in is not None and expires_at is not None:
        raise typer.BadParameter(
            "give --expires-in or --expires-at, not both", param_hint="'--expires-in'"
        )
    body: dict[str, Any] = {}
    for name, value in (("team", team), ("rpm", rpm), ("tpm", tpm), ("priority", priority)):
        if value is not None:
            body[name] = value
    if models:
        body["models"] = list(dict.fromkeys(models))
    if budgets:
        body["budgets"] = [b.to_api() for b in budgets]
    if expires_in is not None:
        body["expires_in"] = expires_in
    if expires_at is not None:
        body["expires_at"] = expires_at
    if meta:
        body["metadata"] = {m.key: m.value for m in meta}
    return body


# ----------------------------------------------------------------------------- rendering


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
    order = {p: i for i, p in enumerate(_PERIODS)}
    return sorted(usage, key=lambda u: order.get(u.get("period", ""), len(order)))


def _spend(usage: list[dict[str, Any]]) -> str:
    return ", ".join(s for s in (_use(u) for u in _periods(usage)) if s)


def _when(iso: str | None) -> str:
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


def _keys_table(keys: list[dict[str, Any]]) -> Table:
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
            _when(k.get("expires_at")) or "never",
            escape(_spend(k.get("usage") or [])),
        )
    return table


def _print_key(out: Console, k: dict[str, Any]) -> None:
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
            text += f", resets {_when(u['resets_at'])}"
        rows.append(("spend" if u is usage[0] else "", text))
    expires = k.get("expires_at")
    rows.append(("expires", f"{_when(expires)} ({_relative(expires)})" if expires else "never"))
    if k.get("revoked_at"):
        rows.append(("revoked", _when(k["revoked_at"])))
    rows.append(("created", _when(k.get("created_at"))))
    meta = k.get("metadata") or {}
    if meta:
        rows.append(("metadata", ", ".join(f"{a}={b}" for a, b in meta.items())))
    for label, text in rows:
        out.print(f"  {label:<9}{escape(text)}", highlight=False)


def _print_propagation(out: Console, p: dict[str, Any] | None) -> None:
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


def _print_json(data: Any) -> None:
    typer.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


# ----------------------------------------------------------------------------- commands


class _Session:
    """One command's client and consoles; turns an :class:`AdminError` into one line
    on stderr and exit code 1."""

    def __init__(self, command: str, url: str, key_env: str) -> None:
        self.command = command
        self.client = AdminClient(url, key_env, timeout=_TIMEOUT)
        self.out = Console(soft_wrap=True)
        self.err = Console(stderr=True, soft_wrap=True)

    def call(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        body: Any = None,
    ) -> Any:
        try:
            return self.client.request(method, path, params, body)
        except AdminError as exc:
            self.err.print(
                f"[bold red]brace keys {self.command}:[/] {escape(exc.message)}", highlight=False
            )
            raise typer.Exit(1) from None


def _key_path(key_id: str) -> str:
    return "/admin/keys/" + urllib.parse.quote(key_id, safe="")


def create(
    name: Annotated[str, typer.Argument(help="A name for the key (1 to 128 characters).")],
    team: TeamOpt = None,
    model: ModelOpt = None,
    rpm: RpmOpt = None,
    tpm: TpmOpt = None,
    priority: PriorityOpt = None,
    budget: BudgetOpt = None,
    expires_in: ExpiresInOpt = None,
    expires_at: ExpiresAtOpt = None,
    meta: MetaOpt = None,
    json: JsonOpt = False,
    url: UrlOpt = DEFAULT_URL,
    admin_key_env: KeyEnvOpt = "BRACE_ADMIN_KEY",
) -> None:
    """Create a key; it is printed this once (only its hash is stored)."""
    body = {"name": name} | _fields(
        team=team,
        models=model,
        rpm=rpm,
        tpm=tpm,
        priority=priority,
        budgets=budget,
        expires_in=expires_in,
        expires_at=expires_at,
        meta=meta,
    )
    s = _Session("create", url, admin_key_env)
    created = s.call("POST", "/admin/keys", body=body)
    if json:
        _print_json(created)
        return
    s.out.print(
        f"[green]created[/] key [bold]{escape(created['id'])}[/] ({escape(created['name'])})",
        highlight=False,
    )
    s.out.print(f"\n    {escape(created['key'])}\n", highlight=False)
    s.out.print(
        "[bold yellow]This is the only time the key is shown: it cannot be shown again.[/] "
        "Store it now (only its hash is kept).",
        highlight=False,
    )
    _print_key(s.out, created)
    _print_propagation(s.out, created.get("propagation"))


def list_keys(
    team: Annotated[str | None, typer.Option(help="Only this team's keys.")] = None,
    state: Annotated[
        Literal["active", "expired", "revoked"] | None,
        typer.Option(help="Only keys in this state: active, expired or revoked."),
    ] = None,
    json: JsonOpt = False,
    url: UrlOpt = DEFAULT_URL,
    admin_key_env: KeyEnvOpt = "BRACE_ADMIN_KEY",
) -> None:
    """List keys with their limits, state and spend against their budgets."""
    s = _Session("list", url, admin_key_env)
    page = s.call("GET", "/admin/keys", {"team": team, "state": state})
    if json:
        _print_json(page)
        return
    keys: list[dict[str, Any]] = page["data"]
    if not keys:
        s.out.print("[dim]no key[/]" + (" matches" if team or state else " yet"))
        return
    s.out.print(_keys_table(keys), soft_wrap=False)


def show(
    key_id: KeyIdArg,
    json: JsonOpt = False,
    url: UrlOpt = DEFAULT_URL,
    admin_key_env: KeyEnvOpt = "BRACE_ADMIN_KEY",
) -> None:
    """Show one key: limits, budgets and spend in each period, expiry."""
    s = _Session("show", url, admin_key_env)
    key = s.call("GET", _key_path(key_id))
    if json:
        _print_json(key)
        return
    _print_key(s.out, key)


def update(
    key_id: KeyIdArg,
    name: Annotated[str | None, typer.Option(help="A new name.")] = None,
    team: TeamOpt = None,
    model: ModelOpt = None,
    rpm: RpmOpt = None,
    tpm: TpmOpt = None,
    priority: PriorityOpt = None,
    budget: BudgetOpt = None,
    expires_in: ExpiresInOpt = None,
    expires_at: ExpiresAtOpt = None,
    meta: MetaOpt = None,
    clear_models: Annotated[
        bool, typer.Option("--clear-models", help="Allow every model group again.")
    ] = False,
    clear_budgets: Annotated[
        bool, typer.Option("--clear-budgets", help="Remove the key's budgets.")
    ] = False,
    no_expiry: Annotated[bool, typer.Option("--no-expiry", help="Never expire.")] = False,
    clear: Annotated[
        list[str] | None,
        typer.Option(
            "--clear",
            parser=_parse_clearable,
            metavar="|".join(_CLEARABLE),
            help="Remove this setting (repeat it): team, rpm, tpm, priority or metadata.",
        ),
    ] = None,
    json: JsonOpt = False,
    url: UrlOpt = DEFAULT_URL,
    admin_key_env: KeyEnvOpt = "BRACE_ADMIN_KEY",
) -> None:
    """Change a key: only the options given change (--meta replaces the metadata)."""
    body = _fields(
        team=team,
        models=model,
        rpm=rpm,
        tpm=tpm,
        priority=priority,
        budgets=budget,
        expires_in=expires_in,
        expires_at=expires_at,
        meta=meta,
    )
    if name is not None:
        body["name"] = name
    cleared: dict[str, str] = {c: f"--clear {c}" for c in clear or ()}
    if clear_models:
        cleared["models"] = "--clear-models"
    if clear_budgets:
        cleared["budgets"] = "--clear-budgets"
    if no_expiry:
        cleared["expires_at"] = "--no-expiry"
    for field, flag in cleared.items():
        if field in body or (field == "expires_at" and "expires_in" in body):
            raise typer.BadParameter(f"{flag} contradicts the value given", param_hint=f"'{flag}'")
        body[field] = [] if field == "budgets" else {} if field == "metadata" else None
    if not body:
        raise typer.BadParameter(
            "nothing to change: give at least one option (see brace keys update --help)"
        )
    s = _Session("update", url, admin_key_env)
    updated = s.call("PATCH", _key_path(key_id), body=body)
    if json:
        _print_json(updated)
        return
    s.out.print(f"[green]updated[/] key [bold]{escape(updated['id'])}[/]", highlight=False)
    _print_key(s.out, updated)
    _print_propagation(s.out, updated.get("propagation"))


def revoke(
    key_id: KeyIdArg,
    json: JsonOpt = False,
    url: UrlOpt = DEFAULT_URL,
    admin_key_env: KeyEnvOpt = "BRACE_ADMIN_KEY",
) -> None:
    """Revoke a key: every gateway sharing the key database refuses it from now on."""
    s = _Session("revoke", url, admin_key_env)
    revoked = s.call("POST", _key_path(key_id) + "/revoke")
    if json:
        _print_json(revoked)
        return
    s.out.print(
        f"[red]revoked[/] key [bold]{escape(revoked['id'])}[/] ({escape(revoked['name'])}) "
        f"at {_when(revoked.get('revoked_at'))}",
        highlight=False,
    )
    _print_propagation(s.out, revoked.get("propagation"))


def _teams_table(teams: list[dict[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("team", no_wrap=True, overflow="fold")
    table.add_column("keys", justify="right")
    table.add_column("budgets and spend", overflow="fold")
    for t in teams:
        table.add_row(
            escape(t["team"]), str(t.get("keys", 0)), escape(_spend(t.get("usage") or []))
        )
    return table


def teams(
    json: JsonOpt = False,
    url: UrlOpt = DEFAULT_URL,
    admin_key_env: KeyEnvOpt = "BRACE_ADMIN_KEY",
) -> None:
    """List teams (of a key, or with budgets) with their budgets and spend."""
    s = _Session("teams", url, admin_key_env)
    page = s.call("GET", "/admin/teams")
    if json:
        _print_json(page)
        return
    if not page["data"]:
        s.out.print("[dim]no team yet[/]")
        return
    s.out.print(_teams_table(page["data"]), soft_wrap=False)


def team_budget(
    team: Annotated[str, typer.Argument(help="The team's name.", show_default=False)],
    budget: BudgetOpt = None,
    clear_budgets: Annotated[
        bool, typer.Option("--clear-budgets", help="Remove the team's budgets.")
    ] = False,
    json: JsonOpt = False,
    url: UrlOpt = DEFAULT_URL,
    admin_key_env: KeyEnvOpt = "BRACE_ADMIN_KEY",
) -> None:
    """Set a team's budgets (they replace the team's current ones)."""
    if bool(budget) == clear_budgets:
        raise typer.BadParameter(
            "give --budget PERIOD:USD[:MODE] (repeat it) or --clear-budgets",
            param_hint="'--budget'",
        )
    s = _Session("team-budget", url, admin_key_env)
    body = {"budgets": [b.to_api() for b in budget or ()]}
    result = s.call("PUT", "/admin/teams/" + urllib.parse.quote(team, safe=""), body=body)
    if json:
        _print_json(result)
        return
    spend = _spend(result.get("usage") or []) or "no budget"
    s.out.print(
        f"[green]team[/] [bold]{escape(result['team'])}[/]: {escape(spend)}", highlight=False
    )
    _print_propagation(s.out, result.get("propagation"))


def register_cli(app: typer.Typer) -> None:
    """Add the ``brace keys`` command group to the ``brace`` command."""
    keys = typer.Typer(
        name="keys",
        help="Manage virtual keys and team budgets of a running gateway (admin API; the "
        "master key comes from $BRACE_ADMIN_KEY).",
        no_args_is_help=True,
    )
    keys.command("create")(create)
    keys.command("list")(list_keys)
    keys.command("show")(show)
    keys.command("update")(update)
    keys.command("revoke")(revoke)
    keys.command("teams")(teams)
    keys.command("team-budget")(team_budget)
    app.add_typer(keys, name="keys")
