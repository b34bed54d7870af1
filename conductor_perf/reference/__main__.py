"""``python -m conductor_perf.reference``: run the embedded reference conductor.

    python -m conductor_perf.reference [serve] --root DIR [--host 127.0.0.1] [--port 0] [--config FILE]
        [--api-key K] [--disable-task-start] [--heartbeat-interval S] [--max-clients-per-run N]
        [--max-concurrent-runs N] [--restart-delay S] [--log-file F] [--no-file-helper]
        [--agent-env {current,legacy,early}]
        [--slowdown-us N]
    python -m conductor_perf.reference --version

It speaks conductor-loop's command line (``run-agent serve --config --root --host --port
[--api-key] [--disable-task-start]``, ``run-agent --version``), so one can stand in for the other:
``conductor_perf/reference/bin/reference-run-agent`` is this command as an executable, which the
suite can start and own like a conductor-loop build (``CONDUCTOR_BINARY``). The ``serve`` word is
optional; the other flags are the reference's own.

The first line on stdout is the URL (``http://127.0.0.1:41234/``), flushed as soon as the socket
listens (``--port 0`` picks a free port). SIGTERM/SIGINT: stop accepting, end open SSE streams,
SIGTERM every agent process group (SIGKILL after a short grace), exit 0.

``--agent-env`` plays the agent environment of a conductor-loop build (``CONDUCTOR_AGENT_ENV``
when the flag is absent): ``current`` (default) exports ``JRUN_TASK_FOLDER``, ``JRUN_RUN_FOLDER``,
``JRUN_MESSAGE_BUS``, ``JRUN_RUNS_DIR``, ``JRUN_CONDUCTOR_URL``; ``legacy`` only the older names
``TASK_FOLDER``, ``RUN_FOLDER``, ``MESSAGE_BUS``, ``RUNS_DIR``, ``CONDUCTOR_URL`` (builds of
2026-02-20 to 02-26); ``early`` only ``MESSAGE_BUS`` and ``RUNS_DIR`` (builds before 2026-02-20,
where no agent can find its task folder in the environment).

``--slowdown-us N`` adds N microseconds of CPU work (a busy loop on the thread's CPU clock, not a
sleep) to every API request (``/api/...``) and changes nothing else: a build that is slower by a
known amount, to check that ``python -m conductor_perf.compare`` finds such a change.

Test double (hidden option): ``--debug-leak-kb N`` makes every HTTP request retain N KiB for the
life of the process, a deliberate leak that proves the leak test can fail
(``tests/test_leak_bench.py``). Never use it for measurements.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from ..formats import agentenv
from .app import ConductorServer, create_app, server_of
from .config import DEFAULT_VERSION, ConfigError, ReferenceConfig, load_config

SHUTDOWN_TIMEOUT_S = 3.0
SWITCH_INTERVAL_S = 0.001


@dataclass
class Running:
    """A started server: its URL, port and state."""

    url: str
    port: int
    server: ConductorServer
    app: web.Application


def leaking_middleware(kib: int) -> Any:
    """Test double: a middleware that keeps ``kib`` KiB per request for ever (``--debug-leak-kb``)."""
    kept: list[bytes] = []

    @web.middleware
    async def leak(request: web.Request, handler: Any) -> web.StreamResponse:
        kept.append(b"\xa5" * (kib * 1024))  # written, so the pages count in RSS/USS
        return await handler(request)

    return leak


@contextlib.asynccontextmanager
async def serve(config: ReferenceConfig, *, debug_leak_kb: int = 0) -> AsyncIterator[Running]:
    """Run the reference conductor on ``config.host:config.port`` (0 = free port) until the block ends."""
    app = create_app(config)
    if debug_leak_kb > 0:
        app.middlewares.append(leaking_middleware(debug_leak_kb))
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host, config.port, reuse_address=True, backlog=1024)
        await site.start()
        sockets = site._server.sockets if site._server is not None else []  # noqa: SLF001 - actual port of port 0
        port = sockets[0].getsockname()[1] if sockets else config.port
        server = server_of(app)
        server.port = port
        host = config.host if ":" not in config.host else f"[{config.host}]"
        yield Running(url=f"http://{host}:{port}/", port=port, server=server, app=app)
    finally:
        await runner.cleanup()


def build_parser() -> argparse.ArgumentParser:
    """The command line (flags override the config file)."""
    p = argparse.ArgumentParser(prog="python -m conductor_perf.reference", description=__doc__.split("\n\n")[0])
    p.add_argument("--version", action="store_true", help="print the version line and exit")
    p.add_argument("--root", help="storage root (default: config storage.runs_dir or ~/.run-agent/runs)")
    p.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (0 = pick a free one; default 0)")
    p.add_argument("--config", help="YAML config file with conductor-loop's keys")
    p.add_argument("--api-key", help="require this key (Authorization: Bearer or X-API-Key)")
    p.add_argument("--disable-task-start", action="store_true", help="answer POST /api/v1/tasks without running")
    p.add_argument("--heartbeat-interval", type=float, help="SSE heartbeat interval in seconds (default 30)")
    p.add_argument("--max-clients-per-run", type=int, help="SSE subscribers per run (default 2000)")
    p.add_argument("--max-concurrent-runs", type=int, help="agent processes at once (0 = unlimited)")
    p.add_argument("--restart-delay", type=float, help="seconds between task attempts (default 1.0)")
    p.add_argument("--log-file", help="append log lines here instead of stderr")
    p.add_argument("--no-file-helper", action="store_true",
                   help="do the task-creation file work on the event loop, not in a helper process "
                        "(for profilers that follow child processes)")  # fmt: skip
    p.add_argument("--agent-env", choices=agentenv.STYLES, default=None,
                   help="agent environment names of a conductor-loop build: current (JRUN_*, default), legacy "
                        "(TASK_FOLDER, RUN_FOLDER, MESSAGE_BUS, RUNS_DIR, CONDUCTOR_URL: builds of 2026-02-20 to "
                        "02-26) or early (MESSAGE_BUS, RUNS_DIR only: before 2026-02-20); default "
                        "CONDUCTOR_AGENT_ENV")  # fmt: skip
    p.add_argument("--slowdown-us", type=int, metavar="N",
                   help="add N microseconds of CPU work (a busy loop, not a sleep) to every API request "
                        "(/api/...) and nothing else: a known slowdown for A/B comparisons (default 0)")  # fmt: skip
    p.add_argument("--debug-leak-kb", type=int, default=0, help=argparse.SUPPRESS)  # test double, module doc
    return p


SUITE_FLAGS = ("--root", "--host", "--port", "--log-file", "--api-key", "--version")
"""Flags the suite sets itself when it starts the reference (extra flags must not repeat them)."""


def flags_problem(words: Sequence[str], *, reserved: Sequence[str] = SUITE_FLAGS) -> str:
    """The first problem of extra serve flags (unknown flag, bad value, a ``reserved`` one), or ``""``.

    >>> flags_problem(["--slowdown-us", "20"])
    ''
    >>> flags_problem(["--slowdown-us"])
    'argument --slowdown-us: expected one argument'
    """
    words = list(words)
    for word in words:
        name = word.split("=", 1)[0]
        if name in reserved:
            return f"{name} is set by the suite itself"
    parser = build_parser()

    def refuse(message: str) -> None:
        raise ValueError(message)

    parser.error = refuse  # type: ignore[method-assign]  # one line instead of usage and exit
    try:
        config_from_args(parser.parse_args(words[1:] if words[:1] == ["serve"] else words))  # reads --config
    except (ValueError, ConfigError) as exc:
        return str(exc)
    return ""


def config_from_args(args: argparse.Namespace) -> ReferenceConfig:
    """Config file + environment + flags -> :class:`ReferenceConfig`."""
    config_path = args.config or os.environ.get("CONDUCTOR_CONFIG") or None
    root = args.root or os.environ.get("CONDUCTOR_ROOT") or None
    cfg = load_config(config_path, root=root)
    cfg.host = args.host or os.environ.get("CONDUCTOR_HOST") or "127.0.0.1"
    if args.port is not None:
        cfg.port = args.port
    elif os.environ.get("CONDUCTOR_PORT", "").strip().isdigit():
        cfg.port = int(os.environ["CONDUCTOR_PORT"])
    else:
        cfg.port = 0
    key = args.api_key or os.environ.get("CONDUCTOR_API_KEY", "").strip()
    if key:
        cfg.api_key = key
    if args.disable_task_start:
        cfg.start_tasks = False
    if args.heartbeat_interval is not None:
        cfg.heartbeat_interval_s = args.heartbeat_interval
    if args.max_clients_per_run is not None:
        cfg.max_clients_per_run = args.max_clients_per_run
    if args.max_concurrent_runs is not None:
        cfg.max_concurrent_runs = max(0, args.max_concurrent_runs)
    if args.restart_delay is not None:
        cfg.restart_delay_s = args.restart_delay
    if args.log_file:
        cfg.log_file = Path(args.log_file)
    if args.no_file_helper:
        cfg.file_helper = False
    agent_env = args.agent_env or os.environ.get("CONDUCTOR_AGENT_ENV", "").strip()
    if agent_env:
        cfg.agent_env = agent_env
    if args.slowdown_us is not None:
        cfg.slowdown_us = args.slowdown_us
    cfg.__post_init__()
    return cfg


async def _main(cfg: ReferenceConfig, debug_leak_kb: int = 0) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with serve(cfg, debug_leak_kb=debug_leak_kb) as running:
        sys.stdout.write(running.url + "\n")
        sys.stdout.flush()
        running.server.log.event("INFO", "api", "api_listening", url=running.url, root=str(cfg.root),
                                 pid=os.getpid(), version=cfg.version, agent_env=cfg.agent_env)  # fmt: skip
        await stop.wait()
        running.server.log.event("INFO", "api", "shutdown_requested")
    return 0


def version_line() -> str:
    """What ``--version`` prints: conductor-loop's ``run-agent <version>`` form."""
    return f"run-agent {DEFAULT_VERSION} (conductor-perf reference conductor)"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:  # conductor-loop's subcommand; the reference serves either way
        argv = argv[1:]
    args = build_parser().parse_args(argv)
    if args.version:
        print(version_line(), flush=True)
        return 0
    # Threads beside the loop (audit writer, agent I/O) come back from the kernel needing the GIL;
    # with CPython's default 5 ms switch interval a returning thread can wait that long behind the
    # loop. Measured with a burst of 100 task submissions: with the file work on a thread, 3 of 10
    # bursts had p95 61-91 ms at 5 ms and none above 27 ms at 1 ms; with the file helper process,
    # 8 bursts each: p95 17.5-21.6 ms at 1 ms, 18.7-29.2 ms at 5 ms. A lone loop is unaffected.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    try:
        cfg = config_from_args(args)
    except ConfigError as exc:
        print(f"conductor reference: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_main(cfg, max(0, args.debug_leak_kb)))
    except OSError as exc:
        print(f"conductor reference: cannot listen on {cfg.host}:{cfg.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
