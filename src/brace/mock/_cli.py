"""``brace mock``: run the chaos upstream from the command line."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from pydantic import ValidationError

from brace.mock._config import MockConfig, parse_error_rates

__all__ = ["build_config", "register_cli"]


def build_config(
    *,
    config_file: Path | None = None,
    profile: str | None = None,
    scenario: str | None = None,
    seed: int | None = None,
    latency: str | None = None,
    chunks: int | None = None,
    chunk_delay: str | None = None,
    rpm: int | None = None,
    tpm: int | None = None,
    burst_seconds: float | None = None,
    error_rate: str | None = None,
    agent_turns: int | None = None,
    agent_parallel: int | None = None,
    agent_tools: str | None = None,
) -> MockConfig:
    """Layer defaults < config file < command-line options; raise ``ValueError`` with the
    file name, the key and what to fix."""
    data: dict[str, Any] = {}
    source = "command line"
    if config_file is not None:
        source = str(config_file)
        try:
            loaded = yaml.safe_load(config_file.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"{config_file}: cannot read mock config: {exc}") from None
        if not isinstance(loaded, dict):
            raise ValueError(f"{config_file}: the mock config must be a mapping of options")
        data.update(loaded.get("mock", loaded) if "mock" in loaded else loaded)
    cli = {
        "profile": profile,
        "scenario": scenario,
        "seed": seed,
        "latency": latency,
        "chunks": chunks,
        "chunk_delay": chunk_delay,
        "rpm": rpm,
        "tpm": tpm,
        "burst_seconds": burst_seconds,
        "agent_turns": agent_turns,
        "agent_parallel": agent_parallel,
        "agent_tools": agent_tools,
    }
    data.update({key: value for key, value in cli.items() if value is not None})
    if error_rate is not None:
        data["error_rates"] = {**(data.get("error_rates") or {}), **parse_error_rates(error_rate)}
    try:
        return MockConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'config'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ValueError(f"{source}: invalid mock config: {problems}") from None


async def _serve(config: MockConfig, host: str, port: int, use_aiohttp: bool) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    label = f"profile={config.profile or 'none'} seed={config.seed}"
    if use_aiohttp:
        from aiohttp import web

        from brace.mock._app import create_app

        runner = web.AppRunner(
            create_app(config), access_log=None, handler_cancellation=True, shutdown_timeout=2.0
        )
        await runner.setup()
        site = web.TCPSite(runner, host, port, backlog=2048)
        await site.start()
        bound = runner.addresses[0][1]
        typer.echo(f"brace mock listening on http://{host}:{bound} (aiohttp, {label})")
        await stop.wait()
        await runner.cleanup()
    else:
        from brace.mock._server import start_server

        server = await start_server(config, host, port)
        typer.echo(f"brace mock listening on http://{host}:{server.port} ({label})")
        await stop.wait()
        await server.stop()


def _run(config: MockConfig, host: str, port: int, use_aiohttp: bool) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        asyncio.run(_serve(config, host, port, use_aiohttp))
    else:
        uvloop.run(_serve(config, host, port, use_aiohttp))


def mock(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port (0 picks a free one).")] = 4010,
    profile: Annotated[str | None, typer.Option(help="Named fault profile.")] = None,
    scenario: Annotated[
        str | None, typer.Option(help="Timed phases, e.g. healthy:10s,outage:5s,healthy.")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for reproducible faults.")] = None,
    latency: Annotated[
        str | None, typer.Option(help="Latency before the first byte, ms: 50, uniform(10,50)...")
    ] = None,
    chunks: Annotated[int | None, typer.Option(help="Chunks per streamed answer.")] = None,
    chunk_delay: Annotated[
        str | None, typer.Option(help="Delay between streamed chunks, ms (a distribution).")
    ] = None,
    rpm: Annotated[int | None, typer.Option(help="Requests per minute limit.")] = None,
    tpm: Annotated[int | None, typer.Option(help="Tokens per minute limit.")] = None,
    burst_seconds: Annotated[
        float | None,
        typer.Option(help="Rate-limit bucket size in seconds of refill (default 60: a minute)."),
    ] = None,
    error_rate: Annotated[
        str | None, typer.Option(help="Fault rates, e.g. 503=0.4,hang=0.05,reset=0.01.")
    ] = None,
    agent_turns: Annotated[
        int | None,
        typer.Option(help="Play an agent's model: tool-call turns before the final answer."),
    ] = None,
    agent_parallel: Annotated[
        int | None, typer.Option(help="Tool calls per agent turn (default 1).")
    ] = None,
    agent_tools: Annotated[
        str | None, typer.Option(help="Tools agent turns call, e.g. search,fetch (default all).")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="YAML/JSON file of MockConfig fields.")
    ] = None,
    use_aiohttp: Annotated[
        bool, typer.Option("--aiohttp", help="Serve with aiohttp instead of the fast server.")
    ] = False,
) -> None:
    """Run the chaos upstream: an OpenAI- and Anthropic-compatible fake LLM API."""
    try:
        built = build_config(
            config_file=config,
            profile=profile,
            scenario=scenario,
            seed=seed,
            latency=latency,
            chunks=chunks,
            chunk_delay=chunk_delay,
            rpm=rpm,
            tpm=tpm,
            burst_seconds=burst_seconds,
            error_rate=error_rate,
            agent_turns=agent_turns,
            agent_parallel=agent_parallel,
            agent_tools=agent_tools,
        )
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    _run(built, host, port, use_aiohttp)


def register_cli(app: typer.Typer) -> None:
    """Add the ``mock`` command to ``app``."""
    app.command("mock")(mock)
