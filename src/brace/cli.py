"""The ``brace`` command: ``serve``, ``check``, ``mock``, ``logs``, ``trace``, ``keys``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from .config import BraceConfig, load_config
from .errors import ConfigError

__all__ = ["app", "main"]

app = typer.Typer(
    name="brace",
    help="Brace: a reliability gateway for LLM APIs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ConfigOpt = Annotated[
    Path, typer.Option("--config", "-c", help="Config file (YAML).", show_default=True)
]


def _run(coro: Coroutine[Any, Any, None]) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux/macOS
        asyncio.run(coro)
        return
    uvloop.run(coro)


def _load(path: Path, err: Console) -> BraceConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        err.print(f"[bold red]invalid config[/]\n{escape(exc.message)}", highlight=False)
        raise typer.Exit(2) from None


@app.command()
def serve(
    config: ConfigOpt = Path("brace.yaml"),
    host: Annotated[str | None, typer.Option(help="Override server.host.")] = None,
    port: Annotated[int | None, typer.Option(help="Override server.port.")] = None,
    demo: Annotated[
        bool,
        typer.Option(
            "--demo",
            help="No config file: serve demo models in front of a built-in simulated upstream.",
        ),
    ] = False,
    allow_unauthenticated: Annotated[
        bool,
        typer.Option(
            "--allow-unauthenticated",
            help="Serve a non-loopback address in local mode (no master key, no virtual "
            "key): anyone who can reach it may use every model. Sets "
            "server.allow_unauthenticated.",
        ),
    ] = False,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Run the OpenAI-compatible gateway."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    err = Console(stderr=True, soft_wrap=True)
    out = Console(soft_wrap=True)
    cfg = None if demo else _load(config, err)

    async def main() -> None:
        from .gateway import Gateway

        runner = None
        nonlocal cfg
        if cfg is None:
            from .demo import demo_config, start_demo_upstream

            runner, upstream_port = await start_demo_upstream()
            cfg = demo_config(
                upstream_port,
                host=host or "127.0.0.1",
                port=4000 if port is None else port,
            )
        # The flags go into the config, not only to Gateway.run: what reads
        # server.host (the admin API's loopback-only rule) must see the real address.
        overrides: dict[str, Any] = {"allow_unauthenticated": True} if allow_unauthenticated else {}
        if host is not None:
            overrides["host"] = host
        if port is not None:
            overrides["port"] = port
        if overrides:
            cfg = cfg.model_copy(update={"server": cfg.server.model_copy(update=overrides)})
        gateway = Gateway(cfg)

        def started(bound: int) -> None:
            shown_host = host or cfg.server.host
            out.print(
                f"[bold green]brace[/] gateway listening on http://{shown_host}:{bound}/v1 "
                f"({len(cfg.models)} models: {escape(', '.join(cfg.models))})",
                highlight=False,
            )
            if runner is not None:
                out.print(
                    "[yellow]demo mode:[/] every model answers from the built-in simulated "
                    "upstream (brace mock). Try:\n"
                    + escape(
                        f"  curl -s http://127.0.0.1:{bound}/v1/chat/completions "
                        "-H 'content-type: application/json' "
                        '-d \'{"model":"demo","messages":[{"role":"user","content":"hi"}]}\''
                    ),
                    highlight=False,
                )

        try:
            await gateway.run(host=host, port=port, on_started=started)
        finally:
            if runner is not None:
                await runner.cleanup()

    try:
        _run(main())
    except ConfigError as exc:
        err.print(f"[bold red]cannot start:[/] {escape(exc.message)}", highlight=False)
        raise typer.Exit(2) from None
    except OSError as exc:
        err.print(f"[bold red]cannot start:[/] {escape(str(exc.strerror or exc))}", highlight=False)
        raise typer.Exit(1) from None


@app.command()
def check(config: ConfigOpt = Path("brace.yaml")) -> None:
    """Validate a config file and print what it serves (no secret is printed)."""
    err = Console(stderr=True, soft_wrap=True)
    cfg = _load(config, err)
    out = Console(soft_wrap=True)
    for name, group in cfg.models.items():
        out.print(f"[bold]{escape(name)}[/]", highlight=False)
        for d in group.deployments:
            key = "key set" if d.api_key else "no key"
            out.print(escape(f"  - {d.id}: {d.preset.wire} wire, {d.url} ({key})"), highlight=False)
    out.print(f"[green]ok[/]: {escape(str(config))}", highlight=False)


def _register_mock() -> None:
    try:
        from .mock import register_cli
    except ImportError:  # pragma: no cover
        return
    register_cli(app)


_register_mock()


def _register_logs() -> None:
    from .logs_cli import register_cli as register_logs

    register_logs(app)


_register_logs()


def _register_keys() -> None:
    from .keys_cli import register_cli as register_keys

    register_keys(app)


_register_keys()


def _register_runs() -> None:
    from .runs_cli import register_cli as register_runs

    register_runs(app)


_register_runs()


def main() -> None:
    app(prog_name="brace")


if __name__ == "__main__":  # pragma: no cover
    main()
