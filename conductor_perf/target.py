"""The system under test: the embedded reference conductor or an external conductor-loop server.

Suites never know which one they talk to. A :class:`Target` carries the base URL, the runs root
(needed by file-level tests; ``None`` when an external server's root was not given), the API key
and, for the embedded conductor, the process handle so it can be stopped with its whole tree.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

EMBEDDED, EXTERNAL = "embedded", "external"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


class TargetError(Exception):
    """The SUT cannot be started, reached or used; the message is one line for the console."""


@dataclass
class Target:
    """A handle on the SUT."""

    kind: str
    url: str
    root: Path | None = None
    api_key: str = ""
    version: str = "unknown"
    pid: int | None = None
    log_path: Path | None = None
    process: subprocess.Popen | None = field(default=None, repr=False)
    owns_root: bool = False

    @property
    def host(self) -> str:
        """Host part of the URL."""
        return httpx.URL(self.url).host

    @property
    def port(self) -> int:
        """Port of the URL."""
        url = httpx.URL(self.url)
        return url.port or (443 if url.scheme == "https" else 80)

    def endpoint(self, path: str) -> str:
        """Absolute URL of an API path."""
        return self.url.rstrip("/") + "/" + path.lstrip("/")

    def auth_headers(self) -> dict[str, str]:
        """Headers that authenticate against the SUT (empty when no key is set)."""
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def require_root(self) -> Path:
        """The runs root, or :class:`TargetError` with a reason a test can be skipped for."""
        if self.root is None:
            raise TargetError("file-level test needs the SUT's runs root: set CONDUCTOR_ROOT")
        return self.root

    def describe(self) -> dict[str, object]:
        """Metadata for logs and results."""
        return {"kind": self.kind, "url": self.url, "root": str(self.root) if self.root else None,
                "version": self.version, "pid": self.pid}  # fmt: skip

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the embedded conductor and every process below it (external targets are left alone)."""
        if self.process is None:
            return
        proc, self.process = self.process, None
        stop_process_tree(proc.pid, timeout=timeout)
        try:
            proc.wait(timeout=1)
        except subprocess.TimeoutExpired:  # pragma: no cover - killed above
            pass


def stop_process_tree(pid: int, *, timeout: float = 10.0) -> None:
    """SIGTERM a process (it stops its agents itself), then SIGKILL whatever of its tree remains."""
    try:
        parent = psutil.Process(pid)
        tree = [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    try:
        parent.send_signal(signal.SIGTERM)
    except psutil.NoSuchProcess:
        pass
    _, alive = psutil.wait_procs([parent], timeout=timeout)
    # agents run in their own sessions: collect them again after the server is gone
    kill_processes([p for p in tree if p.is_running()] + alive)


def kill_processes(procs: list[psutil.Process], *, timeout: float = 5.0) -> int:
    """SIGKILL every process still running and reap them; returns how many were killed."""
    leftovers = [p for p in procs if p.is_running()]
    for p in leftovers:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(leftovers, timeout=timeout)
    return len(leftovers)


def http_json(url: str, *, timeout: float = 5.0, headers: dict[str, str] | None = None) -> tuple[int, object]:
    """GET a JSON document; returns (status, parsed body or text). Raises TargetError when unreachable.

    httpx is the project's one control client; proxies from the environment are ignored (the SUT
    is on loopback).
    """
    try:
        resp = httpx.get(url, headers=headers or {}, timeout=timeout, trust_env=False)
    except (httpx.HTTPError, httpx.InvalidURL, OSError) as exc:
        raise TargetError(f"conductor at {url} is not reachable: {exc or type(exc).__name__}") from None
    try:
        return resp.status_code, json.loads(resp.content)
    except ValueError:
        return resp.status_code, resp.content.decode("utf-8", "replace")


def check_url(url: str) -> str:
    """Validate a SUT URL (http, a host and a port); returns it normalised with a trailing slash."""
    bad = TargetError(f"CONDUCTOR_URL must look like http://127.0.0.1:14355/, got {url!r}")
    try:
        parts = httpx.URL(url.strip())
    except httpx.InvalidURL:
        raise bad from None
    if parts.scheme not in ("http", "https") or not parts.host or not 0 < (parts.port or 80) < 65536:
        raise bad
    return f"{parts.scheme}://{parts.netloc.decode('ascii')}/"


def wait_healthy(target: Target, timeout: float = 15.0) -> None:
    """Poll ``/api/v1/health`` until 200 or raise TargetError naming the figure."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if target.process is not None and target.process.poll() is not None:
            raise TargetError(
                f"embedded conductor exited with code {target.process.returncode} during start-up"
                + (f"; see {target.log_path}" if target.log_path else "")
            )
        try:
            status, body = http_json(target.endpoint("/api/v1/health"), timeout=2)
            if status == 200:
                return
            last = f"HTTP {status}: {str(body)[:120]}"
        except TargetError as exc:
            last = str(exc)
        time.sleep(0.05)
    raise TargetError(f"conductor at {target.url} not healthy within {timeout:g} s ({last})")


def read_version(target: Target) -> str:
    """The SUT's ``/api/v1/version`` (``unknown`` when it does not answer)."""
    try:
        status, body = http_json(target.endpoint("/api/v1/version"), timeout=3, headers=target.auth_headers())
    except TargetError:
        return "unknown"
    if status == 200 and isinstance(body, dict):
        return str(body.get("version", "unknown"))
    return "unknown"


def start_embedded(
    *,
    root: str | os.PathLike[str] | None = None,
    log_dir: str | os.PathLike[str] | None = None,
    api_key: str = "",
    extra_args: list[str] | None = None,
    start_timeout: float = 20.0,
    python: str | None = None,
) -> Target:
    """Start ``python -m conductor_perf.reference`` on a free 127.0.0.1 port and wait until healthy."""
    owns_root = root is None
    root_path = Path(tempfile.mkdtemp(prefix="conductor-root-")) if root is None else Path(root)
    root_path.mkdir(parents=True, exist_ok=True)
    log_path = Path(log_dir or root_path) / "conductor.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [python or sys.executable, "-m", "conductor_perf.reference", "--root", str(root_path),
           "--host", "127.0.0.1", "--port", "0", "--log-file", str(log_path)]  # fmt: skip
    if api_key:
        cmd += ["--api-key", api_key]
    cmd += extra_args or []
    env = dict(os.environ)
    env.setdefault("HOME", str(root_path))
    with open(log_path.with_suffix(".stderr"), "ab") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, env=env)
    url = read_first_line(proc, start_timeout)
    target = Target(kind=EMBEDDED, url=check_url(url), root=root_path.resolve(), api_key=api_key,
                    pid=proc.pid, log_path=log_path, process=proc, owns_root=owns_root)  # fmt: skip
    try:
        wait_healthy(target, start_timeout)
    except TargetError:
        target.stop()
        raise
    target.version = read_version(target)
    return target


def read_first_line(proc: subprocess.Popen, timeout: float, *, name: str = "embedded conductor") -> str:
    """The first stdout line of a started server (its URL), within ``timeout`` seconds.

    On a timeout the process tree is stopped; either failure is a one-line :class:`TargetError`.
    """
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    buf = b""
    try:
        while b"\n" not in buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not sel.select(remaining):
                stop_process_tree(proc.pid)
                raise TargetError(f"{name} printed no URL within {timeout:g} s")
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                proc.wait(timeout=5)
                raise TargetError(f"{name} exited with code {proc.returncode} before printing its URL")
            buf += chunk
    finally:
        sel.close()
    return buf.split(b"\n", 1)[0].decode().strip()


def attach(
    url: str, *, root: str | os.PathLike[str] | None = None, api_key: str = "", timeout: float = 10.0
) -> Target:
    """Attach to a running server (checks its health; the root must exist when given)."""
    target = Target(kind=EXTERNAL, url=check_url(url), api_key=api_key)
    if root:
        root_path = Path(root).expanduser()
        if not root_path.is_dir():
            raise TargetError(f"CONDUCTOR_ROOT {str(root)!r} is not a directory")
        target.root = root_path.resolve()
    wait_healthy(target, timeout)
    target.version = read_version(target)
    target.pid = _listening_pid(target)
    return target


def _listening_pid(target: Target) -> int | None:
    if target.host not in LOOPBACK_HOSTS:
        return None
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == target.port:
                return conn.pid
    except (psutil.AccessDenied, OSError):
        return None
    return None


def is_loopback(url: str) -> bool:
    """Whether the URL's host is a loopback address (load tests refuse anything else)."""
    try:
        host = httpx.URL(url).host
    except httpx.InvalidURL:
        return False
    return host in LOOPBACK_HOSTS or host.startswith("127.")
