"""``brace keys``: the values its options take, their parsers and help, and the
request body they make (shared by ``create`` and ``update``).

A value that does not parse raises :class:`typer.BadParameter` with the form it
expects (exit code 2).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

import typer

__all__ = [
    "CLEARABLE",
    "PERIODS",
    "Budget",
    "BudgetOpt",
    "ExpiresAtOpt",
    "ExpiresInOpt",
    "JsonOpt",
    "KeyIdArg",
    "Meta",
    "MetaOpt",
    "ModelOpt",
    "PriorityOpt",
    "RpmOpt",
    "TeamOpt",
    "TpmOpt",
    "body_fields",
    "parse_clearable",
]

PERIODS = ("day", "month", "total")
_MODES = ("hard", "soft")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw]?)")
CLEARABLE = ("team", "rpm", "tpm", "priority", "metadata")


# ----------------------------------------------------------------------------- option values


@dataclass(frozen=True, slots=True)
class Budget:
    period: str
    limit_usd: float
    mode: str

    def to_api(self) -> dict[str, Any]:
        return {"period": self.period, "limit_usd": self.limit_usd, "mode": self.mode}


@dataclass(frozen=True, slots=True)
class Meta:
    key: str
    value: str


def _parse_budget(value: str) -> Budget:
    form = "expected PERIOD:USD[:MODE] with PERIOD day, month or total and MODE hard or soft, e.g. day:5 or month:50:soft"
    parts = value.strip().split(":")
    if len(parts) not in (2, 3):
        raise typer.BadParameter(f"{value!r}: {form}")
    period, amount = parts[0].strip().lower(), parts[1].strip().removeprefix("$")
    mode = parts[2].strip().lower() if len(parts) == 3 else "hard"
    if period not in PERIODS:
        raise typer.BadParameter(f"{value!r}: unknown period {period!r}; {form}")
    if mode not in _MODES:
        raise typer.BadParameter(f"{value!r}: unknown mode {mode!r}; {form}")
    try:
        usd = float(amount)
    except ValueError:
        raise typer.BadParameter(f"{value!r}: {amount!r} is not an amount in USD; {form}") from None
    if not math.isfinite(usd) or usd < 0:
        raise typer.BadParameter(f"{value!r}: the amount must be a finite USD value >= 0")
    return Budget(period, usd, mode)


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


def parse_clearable(value: str) -> str:
    name = value.strip().lower()
    if name not in CLEARABLE:
        raise typer.BadParameter(f"{value!r}: expected one of {', '.join(CLEARABLE)}")
    return name


def _parse_meta(value: str) -> Meta:
    key, sep, val = value.partition("=")
    if not sep or not key.strip():
        raise typer.BadParameter(f"{value!r}: expected KEY=VALUE, e.g. owner=alice")
    return Meta(key.strip(), val)


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
    list[Budget] | None,
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
    list[Meta] | None,
    typer.Option(
        "--meta", parser=_parse_meta, metavar="KEY=VALUE", help="A metadata entry (repeat it)."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the API's JSON answer.")]
KeyIdArg = Annotated[str, typer.Argument(help="The key's id (key_...).", show_default=False)]


def body_fields(
    *,
    team: str | None,
    models: list[str] | None,
    rpm: int | None,
    tpm: int | None,
    priority: str | None,
    budgets: list[Budget] | None,
    expires_in: float | None,
    expires_at: str | None,
    meta: list[Meta] | None,
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
