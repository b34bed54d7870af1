"""The system under test behind one handle: the embedded reference conductor, a managed binary, or a URL.

Suites never know which one they talk to. A :class:`Target` carries the base URL, the runs root
(needed by file-level tests; ``None`` when an external server's root was not given), the API key
and, for a SUT the suite started (the embedded conductor or a conductor-loop executable, see
``conductor_perf.binary``), the process handle and how to start it again.

= Kinds =

* ``embedded``: ``python -m conductor_perf.reference``, started and owned by the suite;
* ``binary``: a conductor-loop executable (``run-agent serve ...``), started and owned by the suite;
* ``external``: a server someone else runs, attached by URL; the suite owns nothing.

= Capabilities =

Tests ask what a SUT can do, never which kind it is (:data:`CAPABILITIES`; a missing one is
explained by :meth:`Target.capability_gap`, the text a skip gives):

* ``can_restart``: the suite owns the process, so it can kill it and start a fresh one;
* ``pid``: the server's process is visible here (resource sampling);
* ``auth``: the suite can start a second instance of it with ``--api-key``;
* ``profiler``: ``scalene`` (the Python reference, started under it), ``perf`` (a native
  executable, sampled by pid) or ``None``;
* ``goroutines``: ``sigquit`` (an owned Go executable prints every goroutine on SIGQUIT),
  ``pprof`` (an exposed endpoint; none is known for conductor-loop 0.76), ``tasks`` (the
  embedded reference counts its asyncio tasks) or ``None``.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx
import psutil

EMBEDDED, EXTERNAL, BINARY = "embedded", "external", "binary"
OWNED_KINDS = (EMBEDDED, BINARY)
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
CAPABILITIES = ("can_restart", "pid", "auth", "profiler", "goroutines")
"""What a test may ask of a SUT (see the module documentation)."""
GO, NATIVE, SCRIPT = "go", "native", "script"
"""Formats of a managed executable: a Go program, another native (ELF) program, anything else."""


class TargetError(Exception):
    """The SUT cannot be started, reached or used; the message is one line for the console."""


class Launch(Protocol):
    """How the suite started an owned SUT, so it can start it again or start a keyed second one."""

    def start(self, *, root: Path, log_dir: Path, api_key: str = "", port: int = 0,
              extra_args: Sequence[str] = ()) -> Target:  # fmt: skip
        """Start one more instance on ``root`` (log and scratch files in ``log_dir``); ``port`` 0 = free.

        ``extra_args`` are added to the arguments it was first started with (e.g. ``--disable-task-start``).
        """
        ...


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
    launch: Launch | None = field(default=None, repr=False)
    binary: Path | None = None
    binary_sha256: str = ""
    binary_version: str = ""
    binary_format: str = ""
    own_group: bool = False

    @property
    def host(self) -> str:
        """Host part of the URL."""
        return httpx.URL(self.url).host

    @property
    def port(self) -> int:
        """Port of the URL."""
        url = httpx.URL(self.url)
        return url.port or (443 if url.scheme == "https" else 80)

    @property
    def name(self) -> str:
        """How messages name this SUT: ``embedded conductor``, ``conductor binary /path``, ``conductor at URL``."""
        if self.kind == EMBEDDED:
            return "embedded conductor"
        if self.kind == BINARY:
            return f"conductor binary {self.binary}"
        return f"conductor at {self.url}"

    @property
    def owned(self) -> bool:
        """Whether the suite started this SUT's process (and must stop it)."""
        return self.kind in OWNED_KINDS

    # -- capabilities --------------------------------------------------------------------

    @property
    def can_restart(self) -> bool:
        """The suite owns the process and knows how to start it again on the same runs root."""
        return self.owned and self.launch is not None and self.root is not None

    @property
    def auth(self) -> bool:
        """The suite can start a second instance of this SUT with ``--api-key``."""
        return self.owned and self.launch is not None

    @property
    def profiler(self) -> str | None:
        """The CPU profiler that fits this SUT: ``scalene``, ``perf`` or ``None``."""
        if self.kind == EMBEDDED:
            return "scalene"
        if self.kind == BINARY and self.binary_format in (GO, NATIVE):
            return "perf"
        return None

    @property
    def goroutines(self) -> str | None:
        """Where a goroutine (or task) count comes from: ``sigquit``, ``pprof``, ``tasks`` or ``None``."""
        if self.kind == EMBEDDED:
            return "tasks"
        if self.kind == BINARY and self.binary_format == GO:
            return "sigquit"
        return None

    def capabilities(self) -> dict[str, object]:
        """Every capability and its value (``pid``: whether the server's process is visible here)."""
        return {"can_restart": self.can_restart, "pid": self.pid is not None, "auth": self.auth,
                "profiler": self.profiler, "goroutines": self.goroutines}  # fmt: skip

    def capability_gap(self, capability: str) -> str | None:
        """``None`` when this SUT has ``capability``, else one line naming it and why it is missing."""
        if capability not in CAPABILITIES:
            raise ValueError(f"unknown capability {capability!r}: use one of {', '.join(CAPABILITIES)}")
        if self.capabilities()[capability]:
            return None
        missing = f"the SUT lacks the capability '{capability}'"
        attached = "it is attached by URL, not started by the suite (CONDUCTOR_BINARY lets the suite own it)"
        if capability == "pid":
            return f"{missing}: its server process is not visible on this machine ({self.url})"
        if capability == "profiler":
            if self.kind == BINARY:
                return f"{missing}: {self.binary} is not a native executable, so Linux perf cannot name its code"
            return f"{missing}: no profiler can attach to a conductor that {attached.removeprefix('it ')}"
        if capability == "goroutines":
            if self.kind == BINARY:
                return f"{missing}: {self.binary} is not a Go executable (no goroutine stack dump on SIGQUIT)"
            return (f"{missing}: it exposes no goroutine count (no pprof endpoint or metric) and {attached}, "
                    "so no stack dump can be taken")  # fmt: skip
        if self.owned:  # can_restart / auth of an owned SUT started without a launch (e.g. a profiled copy)
            return f"{missing}: the suite does not know how to start this {self.name} again"
        return f"{missing}: {attached}"

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
        """Metadata for logs and results (the ``sut`` record): kind, URL, version, binary identity, capabilities."""
        out: dict[str, object] = {"kind": self.kind, "url": self.url, "root": str(self.root) if self.root else None,
                                  "version": self.version, "pid": self.pid}  # fmt: skip
        if self.kind == BINARY:
            out.update(binary=str(self.binary), binary_sha256=self.binary_sha256,
                       binary_version=self.binary_version, binary_format=self.binary_format)  # fmt: skip
        out["capabilities"] = self.capabilities()
        return out

    def start_another(self, *, root: Path, log_dir: Path, api_key: str = "", port: int = 0,
                      extra_args: Sequence[str] = ()) -> Target:  # fmt: skip
        """Start one more instance of this owned SUT (the same program, arguments and config) on ``root``.

        E.g. with an API key, or with ``extra_args=["--disable-task-start"]`` (both the reference and
        conductor-loop take it). The caller stops it. TargetError names what is missing.
        """
        if self.launch is None:
            raise TargetError(self.capability_gap("auth") or f"cannot start another {self.name}")
        return self.launch.start(root=root, log_dir=log_dir, api_key=api_key, port=port, extra_args=extra_args)

    def exit_status(self) -> int | None:
        """The owned process's exit status, or ``None`` while it runs (or when the suite does not own it)."""
        return None if self.process is None else self.process.poll()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop an owned SUT and every process below it (external targets are left alone)."""
        if self.process is None:
            return
        proc, self.process = self.process, None
        stop_process_tree(proc.pid, timeout=timeout, group=self.own_group)
        try:
            proc.wait(timeout=1)
        except subprocess.TimeoutExpired:  # pragma: no cover - killed above
            pass


@dataclass
class EmbeddedLaunch:
    """Starts the embedded reference conductor again with the same extra arguments."""

    extra_args: list[str] = field(default_factory=list)
    start_timeout: float = 20.0

    def start(self, *, root: Path, log_dir: Path, api_key: str = "", port: int = 0,
              extra_args: Sequence[str] = ()) -> Target:  # fmt: skip
        """A fresh embedded conductor on ``root`` (``port`` 0: a free one); ``extra_args`` for this one only."""
        target = start_embedded(root=root, log_dir=log_dir, api_key=api_key, start_timeout=self.start_timeout,
                                extra_args=[*self.extra_args, *extra_args, *(["--port", str(port)] if port else [])])  # fmt: skip
        target.launch = self  # a restart of it starts it the way the first one was, not with this one's extras
        return target


def stop_process_tree(pid: int, *, timeout: float = 10.0, group: bool = False) -> None:
    """SIGTERM a process (it stops its agents itself), then SIGKILL whatever of its tree remains.

    With ``group`` the process leads its own process group: the signals go to the whole group.
    """
    try:
        parent = psutil.Process(pid)
        tree = [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        if group:  # the leader is gone; what it left in its group is not
            _signal(pid, signal.SIGKILL, group)
        return
    _signal(pid, signal.SIGTERM, group)
    _, alive = psutil.wait_procs([parent], timeout=timeout)
    if group:
        _signal(pid, signal.SIGKILL, group)
    # agents run in their own sessions: collect them again after the server is gone
    kill_processes([p for p in tree if p.is_running()] + alive)


def _signal(pid: int, sig: signal.Signals, group: bool) -> None:
    try:
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


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
                f"{target.name} exited with code {target.process.returncode} during start-up"
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
                    pid=proc.pid, log_path=log_path, process=proc, owns_root=owns_root,
                    launch=EmbeddedLaunch(_without_port(extra_args or []), start_timeout))  # fmt: skip
    try:
        wait_healthy(target, start_timeout)
    except TargetError:
        target.stop()
        raise
    target.version = read_version(target)
    return target


def _without_port(args: list[str]) -> list[str]:
    """Start-up arguments without ``--port N`` (a restart chooses the port itself)."""
    out, skip_next = [], False
    for arg in args:
        if skip_next:
            skip_next = False
        elif arg == "--port":
            skip_next = True
        elif not arg.startswith("--port="):
            out.append(arg)
    return out


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now (a server started soon after can bind it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


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
