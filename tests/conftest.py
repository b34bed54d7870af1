"""Shared pytest fixtures: a real conductor-loop server, started in the test when a build is at hand.

The build is ``CONDUCTOR_BINARY`` or ``../shared/bin/run-agent`` beside the repository (a local
aid that a user's clone does not have). Without one, the tests that need it are skipped with
that reason. The server is started the way the README describes (stub agent first on its PATH,
a config defining the ``codex`` agent, a fresh runs root, HOME in a scratch folder), on a free
loopback port, its stderr in ``server.log``; the fixture stops its whole process tree.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conductor_perf.target import EXTERNAL, Target, TargetError, stop_process_tree, wait_healthy

REPO = Path(__file__).resolve().parents[1]
STUB_DIR = REPO / "conductor_perf" / "reference" / "stub"
CONFIG = """agents:
  codex:
    type: codex
defaults:
  timeout: 300
api:
  sse:
    heartbeat_interval_s: 1
    max_clients_per_run: 200
"""


def real_binary() -> Path | None:
    """The conductor-loop build to test against, or ``None``."""
    given = os.environ.get("CONDUCTOR_BINARY", "").strip()
    path = Path(given) if given else REPO.parent / "shared" / "bin" / "run-agent"
    return path if path.is_file() and os.access(path, os.X_OK) else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


StartServer = Callable[..., Target]


@pytest.fixture
def start_real_server(tmp_path: Path) -> Iterator[StartServer]:
    """``start(*extra_args, root=None) -> Target``: a real server per call, stopped after the test."""
    binary = real_binary()
    if binary is None:
        pytest.skip("no conductor-loop build: set CONDUCTOR_BINARY or put one at ../shared/bin/run-agent")
    procs: list[subprocess.Popen[bytes]] = []

    def start(*extra_args: str, root: Path | None = None) -> Target:
        n = len(procs)
        base = tmp_path / f"server-{n}"
        home = base / "home"
        home.mkdir(parents=True)
        root = root or base / "root"
        root.mkdir(parents=True, exist_ok=True)
        (base / "conductor.yaml").write_text(CONFIG, encoding="utf-8")
        port = _free_port()
        env = {**os.environ, "HOME": str(home), "PATH": f"{STUB_DIR}{os.pathsep}{os.environ.get('PATH', '')}"}
        env.pop("CONDUCTOR_API_KEY", None)
        log = base / "server.log"
        with open(log, "wb") as err:
            proc = subprocess.Popen([str(binary), "serve", "--config", str(base / "conductor.yaml"), "--root", str(root),
                                     "--host", "127.0.0.1", "--port", str(port), *extra_args],
                                    stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=env,
                                    start_new_session=True)  # fmt: skip
        procs.append(proc)
        target = Target(kind=EXTERNAL, url=f"http://127.0.0.1:{port}/", root=root.resolve(), pid=proc.pid,
                        log_path=log, process=proc)  # fmt: skip
        try:
            wait_healthy(target, 20)
        except TargetError as exc:
            pytest.fail(f"{binary} did not start: {exc}; log: {log.read_text(errors='replace')[-500:]}")
        return target

    yield start
    for proc in procs:
        stop_process_tree(proc.pid, timeout=5)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - killed above
            pass
