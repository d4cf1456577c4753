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

import urllib.parse
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.markup import escape

from ._admin_client import DEFAULT_URL, AdminClient, AdminError, KeyEnvOpt, UrlOpt
from ._keys_cli_options import (
    CLEARABLE,
    BudgetOpt,
    ExpiresAtOpt,
    ExpiresInOpt,
    JsonOpt,
    KeyIdArg,
    MetaOpt,
    ModelOpt,
    PriorityOpt,
    RpmOpt,
    TeamOpt,
    TpmOpt,
    body_fields,
    parse_clearable,
)
from ._keys_cli_render import (
    keys_table,
    print_json,
    print_key,
    print_propagation,
    spend_summary,
    teams_table,
    when,
)

__all__ = ["register_cli"]

_TIMEOUT = 65.0
"""Seconds to wait for an answer: a change answers once every gateway has loaded it,
which ``keys.propagation_timeout`` (at most 60 s) bounds."""


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
    body = {"name": name} | body_fields(
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
        print_json(created)
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
    print_key(s.out, created)
    print_propagation(s.out, created.get("propagation"))


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
        print_json(page)
        return
    keys: list[dict[str, Any]] = page["data"]
    if not keys:
        s.out.print("[dim]no key[/]" + (" matches" if team or state else " yet"))
        return
    s.out.print(keys_table(keys), soft_wrap=False)


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
        print_json(key)
        return
    print_key(s.out, key)


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
            parser=parse_clearable,
            metavar="|".join(CLEARABLE),
            help="Remove this setting (repeat it): team, rpm, tpm, priority or metadata.",
        ),
    ] = None,
    json: JsonOpt = False,
    url: UrlOpt = DEFAULT_URL,
    admin_key_env: KeyEnvOpt = "BRACE_ADMIN_KEY",
) -> None:
    """Change a key: only the options given change (--meta replaces the metadata)."""
    body = body_fields(
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
        print_json(updated)
        return
    s.out.print(f"[green]updated[/] key [bold]{escape(updated['id'])}[/]", highlight=False)
    print_key(s.out, updated)
    print_propagation(s.out, updated.get("propagation"))


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
        print_json(revoked)
        return
    s.out.print(
        f"[red]revoked[/] key [bold]{escape(revoked['id'])}[/] ({escape(revoked['name'])}) "
        f"at {when(revoked.get('revoked_at'))}",
        highlight=False,
    )
    print_propagation(s.out, revoked.get("propagation"))


def teams(
    json: JsonOpt = False,
    url: UrlOpt = DEFAULT_URL,
    admin_key_env: KeyEnvOpt = "BRACE_ADMIN_KEY",
) -> None:
    """List teams (of a key, or with budgets) with their budgets and spend."""
    s = _Session("teams", url, admin_key_env)
    page = s.call("GET", "/admin/teams")
    if json:
        print_json(page)
        return
    if not page["data"]:
        s.out.print("[dim]no team yet[/]")
        return
    s.out.print(teams_table(page["data"]), soft_wrap=False)


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
        print_json(result)
        return
    spend = spend_summary(result.get("usage") or []) or "no budget"
    s.out.print(
        f"[green]team[/] [bold]{escape(result['team'])}[/]: {escape(spend)}", highlight=False
    )
    print_propagation(s.out, result.get("propagation"))


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
