"""``brace runs``: the agent runs of a running gateway (``list``, ``show``, ``follow``).

Over the admin API (``/admin/runs``, ``/admin/runs/{id}``), like ``brace logs``.  The
layouts read at 80 columns: a field that does not fit moves to a line of its own, and
ids (runs, keys, requests) are always printed whole, so that they can be copied.
"""

from __future__ import annotations

import textwrap
import time
import urllib.parse
from datetime import datetime
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.markup import escape

from ._admin_client import DEFAULT_URL, AdminClient, AdminError, KeyEnvOpt, UrlOpt

__all__ = ["register_cli"]

_STATUS_STYLE = {
    "running": "cyan",
    "completed": "green",
    "ok": "green",
    "failed": "bold red",
    "error": "red",
    "abandoned": "yellow",
    "unfinished": "yellow",
}
_FOLLOW_LIMIT = 200
_GAP = "  "

KeyOpt = Annotated[
    str | None,
    typer.Option("--key", help="The tenant: a virtual key's id, master, or local."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the admin API's JSON as is.")]


def _secs(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 100:
        return f"{seconds:.1f}s"
    if seconds < 600:
        return f"{seconds:.0f}s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest:02d}s"


def _clock(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).strftime("%H:%M:%S")


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).strftime("%m-%d %H:%M:%S")


def _fit(text: str, width: int) -> str:
    """``text`` in ``width`` columns (a name, never an id: ids are printed whole)."""
    if len(text) <= width:
        return text.ljust(width)
    return text[: max(0, width - 1)] + "…"


def _styled(status: str, width: int = 0) -> str:
    """``status`` in its colour, padded (outside the markup) to ``width`` columns."""
    style = _STATUS_STYLE.get(status, "")
    text = f"[{style}]{escape(status)}[/]" if style else escape(status)
    return text + " " * max(0, width - len(status))


def _pack(parts: list[str], width: int, indent: str = "") -> list[str]:
    """Plain ``parts`` joined by two spaces, on as few lines of ``width`` columns as
    they fit (a part is never split unless it is longer than a line)."""
    lines: list[str] = []
    current = ""
    for part in parts:
        if current and len(current) + len(_GAP) + len(part) > width:
            lines.append(current)
            current = indent + part
        else:
            current = f"{current}{_GAP}{part}" if current else indent + part
    if current:
        lines.append(current)
    return lines


def _cost(value: float | None) -> str:
    return "" if value is None else f"{value:.5f}"


def _fail(prog: str, exc: AdminError) -> typer.Exit:
    err = Console(stderr=True, soft_wrap=True)
    err.print(f"[bold red]brace runs {prog}:[/] {escape(exc.message)}", highlight=False)
    return typer.Exit(1)


def _read(prog: str, client: AdminClient, path: str, params: dict[str, Any]) -> Any:
    """``GET path`` of the admin API, or the command's error and exit status 1."""
    try:
        return client.get(path, params)
    except AdminError as exc:
        raise _fail(prog, exc) from None


def _echo_json(value: Any) -> None:
    typer.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


# ----------------------------------------------------------------------------- list


_LIST_FIXED = (("last", 8, "<"), ("status", 9, "<"), ("steps", 5, ">"), ("took", 7, ">"))


def list_lines(rows: list[dict[str, Any]], width: int, *, header: bool = True) -> list[str]:
    """The runs as rich-markup lines of at most ``width`` columns: one line a run when
    its ids fit beside the other fields, else its ids on a line of their own."""
    fixed = sum(w for _, w, _ in _LIST_FIXED) + 8 + len(_GAP) * len(_LIST_FIXED)
    run_w = max([3] + [len(r["run_id"]) for r in rows])
    key_w = max([3] + [len(r["tenant"]) for r in rows])
    agent_w = width - fixed - 2 * len(_GAP) - run_w - len(_GAP) - key_w
    wide = agent_w >= 8
    if not wide:
        agent_w = max(8, width - fixed - len(_GAP))
    out: list[str] = []
    if header:
        cells = [f"{name:{align}{w}}" for name, w, align in _LIST_FIXED]
        cells += [f"{'cost $':>8}", _fit("agent", agent_w)]
        if wide:
            cells += [_fit("run", run_w), "key"]
        out.append("[bold]" + escape(_GAP.join(cells).rstrip()) + "[/]")
    for r in rows:
        cells = [
            _clock(r["last_activity"]),
            _styled(r["status"], 9),
            f"{r['steps']:>5}",
            f"{_secs(r['duration']):>7}",
            f"{_cost(r['cost_usd']):>8}",
            escape(_fit(r.get("agent") or "", agent_w)),
        ]
        ids = escape(r["run_id"].ljust(run_w) + _GAP + r["tenant"])
        if wide:
            out.append(_GAP.join([*cells, ids]).rstrip())
        else:
            out.append(f"[bold]{escape(r['run_id'])}[/]{_GAP}key {escape(r['tenant'])}")
            out.append(_GAP.join(cells).rstrip())
    return out


def list_runs(
    url: UrlOpt = DEFAULT_URL,
    status: Annotated[
        str | None, typer.Option(help="running, completed, failed or abandoned.")
    ] = None,
    agent: Annotated[str | None, typer.Option(help="Only this agent.")] = None,
    key: KeyOpt = None,
    since: Annotated[
        str | None, typer.Option(help="Active since: epoch seconds, ISO 8601 or an age (2h).")
    ] = None,
    limit: Annotated[int, typer.Option(help="How many runs.", min=1, max=1000)] = 20,
    as_json: JsonOpt = False,
    admin_key_env: KeyEnvOpt = "BRACE_ADMIN_KEY",
) -> None:
    """The most recently active runs (newest last)."""
    params = {"status": status, "agent": agent, "key": key, "since": since, "limit": limit}
    page = _read("list", AdminClient(url, admin_key_env), "/admin/runs", params)
    if as_json:
        _echo_json(page)
        return
    out = Console(soft_wrap=False, highlight=False)
    rows = list(reversed(page["data"]))
    if not rows:
        out.print("[dim]no run yet[/]")
        return
    for line in list_lines(rows, out.width):
        out.print(line)


# ----------------------------------------------------------------------------- show


def _step_notes(step: dict[str, Any]) -> list[str]:
    notes: list[str] = []
    if step["kind"] == "model":
        if step.get("deployment"):
            notes.append(step["deployment"])
        if step.get("label"):
            notes.append(f"“{step['label']}”")
        if step.get("queue_wait"):
            notes.append(f"queued {_secs(step['queue_wait'])}")
        if step.get("retries"):
            waited = step.get("retry_wait") or 0
            retries = f"{step['retries']} retr{'y' if step['retries'] == 1 else 'ies'}"
            notes.append(retries + (f" (waited {_secs(waited)})" if waited else ""))
        if step.get("fallback"):
            notes.append("fallback " + ">".join(step["fallback"]))
        if step.get("tool_calls"):
            notes.append(f"{step['tool_calls']} tool call{'s' if step['tool_calls'] > 1 else ''}")
    elif step.get("result_bytes") is not None:
        notes.append(f"{step['result_bytes']} B result")
    if step.get("error_class"):
        notes.append(step["error_class"])
    return notes


def _ordered(steps: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """Steps in ``seq`` order, each tool step right after the model step whose answer
    asked for it (indented once), when that step is in the run."""
    openers = {s["request_id"] for s in steps if s["kind"] == "model" and s.get("request_id")}
    nested: dict[str, list[dict[str, Any]]] = {}
    top: list[dict[str, Any]] = []
    for s in sorted(steps, key=lambda s: s["seq"]):
        if s["kind"] == "tool" and s.get("opened_by") in openers:
            nested.setdefault(s["opened_by"], []).append(s)
        else:
            top.append(s)
    out: list[tuple[int, dict[str, Any]]] = []
    for s in top:
        out.append((0, s))
        out.extend((1, t) for t in nested.get(s.get("request_id") or "", []))
    return out


_NAME_W = 20


def show_lines(run: dict[str, Any], width: int) -> list[str]:
    """A run as rich-markup lines of at most ``width`` columns: a header, the failure,
    then one line a step (offset from the run's start, duration, kind and name,
    status, tokens and cost of a model step, notes: waits, retries, fallback, error)."""
    failed_seq = run.get("failure_step")
    who = [f"run {run['run_id']}", f"key {run['tenant']}"]
    if run.get("agent"):
        who.append(f"agent {run['agent']}")
    out = [f"[bold]{escape(line)}[/]" for line in _pack(who, width)]
    facts = [
        run["status"],
        f"started {_when(run['started_at'])}",
        f"took {_secs(run['duration'])}",
        f"{run['step_count']} steps ({run['model_steps']} model, {run['tool_steps']} tool)",
        f"tokens {run['input_tokens']} in / {run['output_tokens']} out",
        f"${run['cost_usd']:.6f}",
    ]
    if run.get("retries"):
        facts.append(f"{run['retries']} retries")
    if run.get("wait_s"):
        facts.append(f"waited {_secs(run['wait_s'])}")
    packed = _pack(facts, width)
    # the status leads the first line: in its colour
    out.append(_styled(run["status"]) + escape(packed[0][len(run["status"]) :]))
    out.extend(escape(line) for line in packed[1:])
    if run["status"] == "failed" or run.get("failure_class"):
        where = f"step {failed_seq}" if failed_seq is not None else "a step"
        cause = run.get("failure_class") or "unknown"
        if run.get("failure_deployment"):
            cause += f" on {run['failure_deployment']}"
        text = f"failed at {where}: {cause}"
        if run.get("failure_error"):
            text += f": {run['failure_error']}"
        out.extend(f"[bold red]{escape(line)}[/]" for line in textwrap.wrap(text, width))
    out.append("")
    head = [f"{'start':>8}", f"{'took':>7}", _fit("step", _NAME_W), _fit("status", 10)]
    head += [f"{'tokens':>10}", f"{'cost $':>8}"]
    out.append("[dim]" + escape(_GAP.join(head)) + "[/]")
    pad = " " * (8 + 7 + 2 * len(_GAP))
    plain = len(pad) + _NAME_W + 10 + 10 + 8 + 3 * len(_GAP)
    for depth, s in _ordered(run["steps"]):
        indent = "  " * depth
        name = _fit(f"{indent}{s['kind']:<5} {s['name']}", _NAME_W)
        offset = f"+{_secs(s['started_at'] - run['started_at'])}"
        tokens = cost = ""
        if s["kind"] == "model":
            if s.get("input_tokens") is not None or s.get("output_tokens") is not None:
                tokens = f"{s.get('input_tokens') or 0}/{s.get('output_tokens') or 0}"
            cost = _cost(s.get("cost_usd"))
        took = "running" if s.get("duration") is None else _secs(s["duration"])
        failed = s["seq"] == failed_seq
        cells = [
            ("[bold red]▶[/]" + f"{offset:>7}") if failed else f"{offset:>8}",
            f"{took:>7}",
            escape(name),
            _styled(s["status"], 10),
        ]
        used = len(pad) + _NAME_W + 10 + len(_GAP)
        if tokens or cost:  # a tool step has neither: its notes come closer
            cells += [f"{tokens:>10}", f"{cost:>8}"]
            used = plain
        line = _GAP.join(cells)
        notes = ", ".join(_step_notes(s))
        if notes and used + len(_GAP) + len(notes) <= width:
            line += _GAP + escape(notes)
            notes = ""
        out.append(line.rstrip())
        wrap = max(20, width - len(pad))
        if notes:
            out.extend(pad + escape(x) for x in textwrap.wrap(notes, wrap))
        if failed and s.get("error"):
            out.extend(pad + f"[red]{escape(x)}[/]" for x in textwrap.wrap(s["error"], wrap))
    if not run["steps"]:
        out.append("[dim]no step recorded[/]")
    return out


def show(
    run_id: Annotated[str, typer.Argument(help="The run's id (whole).")],
    key: KeyOpt = None,
    url: UrlOpt = DEFAULT_URL,
    as_json: JsonOpt = False,
    admin_key_env: KeyEnvOpt = "BRACE_ADMIN_KEY",
) -> None:
    """A run and its steps, in order, with timings, waits and the failure."""
    path = f"/admin/runs/{urllib.parse.quote(run_id, safe='')}"
    run = _read("show", AdminClient(url, admin_key_env), path, {"key": key})
    if as_json:
        _echo_json(run)
        return
    out = Console(soft_wrap=False, highlight=False)
    for line in show_lines(run, out.width):
        out.print(line)


# ----------------------------------------------------------------------------- follow


def follow_lines(
    rows: list[dict[str, Any]], seen: dict[tuple[str, str], str], width: int = 80
) -> list[str]:
    """Lines for each run not in ``seen`` and each whose status moved (``seen`` is
    updated), oldest activity first: the time, the change and the run's ids, then its
    agent, steps, duration, cost and failure, indented, in ``width`` columns."""
    out: list[str] = []
    indent = " " * 10
    for r in sorted(rows, key=lambda r: r["last_activity"]):
        k = (r["tenant"], r["run_id"])
        before = seen.get(k)
        if before == r["status"]:
            continue
        seen[k] = r["status"]
        head = f"{_clock(r['last_activity'])}  " + ("new " if before is None else f"{before} → ")
        ids = f"run {r['run_id']}  key {r['tenant']}"
        line = escape(head) + _styled(r["status"])
        if len(head) + len(r["status"]) + len(_GAP) + len(ids) <= width:
            out.append(line + _GAP + escape(ids))
        else:
            out += [line, indent + escape(ids)]
        details = [f"agent {r['agent']}"] if r.get("agent") else []
        details += [f"{r['steps']} steps", _secs(r["duration"]), f"${r['cost_usd']:.5f}"]
        if r.get("failure_class"):
            details.append(r["failure_class"])
        out += [escape(x) for x in _pack(details, width, indent)]
    return out


def follow(
    url: UrlOpt = DEFAULT_URL,
    key: KeyOpt = None,
    agent: Annotated[str | None, typer.Option(help="Only this agent.")] = None,
    interval: Annotated[float, typer.Option(help="Seconds between polls.", min=0.05)] = 1.0,
    admin_key_env: KeyEnvOpt = "BRACE_ADMIN_KEY",
) -> None:
    """Print runs as they start and as their status changes; Ctrl-C to stop."""
    out = Console(soft_wrap=True, highlight=False)
    client = AdminClient(url, admin_key_env)
    filters = {"key": key, "agent": agent, "limit": _FOLLOW_LIMIT}
    seen: dict[tuple[str, str], str] = {}
    abandoned = {**filters, "status": "abandoned", "limit": 50}
    try:
        first = True
        while True:
            rows = _read("follow", client, "/admin/runs", filters)["data"]
            # a run abandoned for idleness has no new activity: ask for those too
            rows += _read("follow", client, "/admin/runs", abandoned)["data"]
            lines = follow_lines(rows, seen, out.width)
            if first:
                out.print(f"[dim]following {len(seen)} recent runs; Ctrl-C to stop[/]")
                first = False
            else:
                for line in lines:
                    out.print(line)
            time.sleep(interval)
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


def register_cli(app: typer.Typer) -> None:
    """Add the ``brace runs`` command group to the ``brace`` command."""
    runs = typer.Typer(
        name="runs",
        help="Agent runs of a running gateway: list, show one, follow (admin API; the "
        "master key comes from $BRACE_ADMIN_KEY).",
        no_args_is_help=True,
    )
    runs.command("list")(list_runs)
    runs.command("show")(show)
    runs.command("follow")(follow)
    app.add_typer(runs, name="runs")
