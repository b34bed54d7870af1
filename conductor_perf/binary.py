"""A conductor-loop executable as the SUT: the suite starts it, owns it, kills and restarts it.

:func:`start_binary` runs ::

    <binary> serve --config <dir>/conductor.yaml --root <dir>/root --host 127.0.0.1 --port <free>
                   [--api-key K] [extra arguments]

with the stub agent's folder (``conductor_perf/reference/stub``) first on its ``PATH``, ``HOME`` in
``<dir>/home`` (conductor-loop writes a config template there), in its own process group, with
stdout and stderr appended to ``<dir>/conductor.log``; then it waits until ``GET /api/v1/health``
answers 200. A Go build also gets ``GODEBUG=schedtrace=1000,scheddetail=1`` (added to any
``GODEBUG`` of ours): its runtime prints the scheduler's state into the log once a second, which
is how the leak test counts goroutines and busy OS threads without stopping it
(:func:`conductor_perf.measure.goroutines.next_sched_snapshot`). The generated config is the one the suites need (:data:`DEFAULT_CONFIG`: the stub
``codex`` agent, a task timeout, a 1 s SSE heartbeat, 200 SSE clients per run), with
``key.path=value`` overrides on top. ``<binary> --version`` (first line) and the file's sha256 are
the binary's identity; the returned :class:`~conductor_perf.target.Target` carries them and a
:class:`BinaryLaunch` that starts the same binary again (a restart on the same runs root, or a
second instance with ``--api-key``).

Anything that goes wrong is one :class:`~conductor_perf.target.TargetError` line naming the
binary, its exit status and the last lines of its log, raised within the start timeout, and no
process of it is left running.

Example::

    target = start_binary("/path/to/run-agent", sut_dir=Path("results/adhoc/sut-1"),
                          config={"api": {"sse": {"max_clients_per_run": 500}}})
    try:
        ...
    finally:
        target.stop()
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .measure.goroutines import SCHEDTRACE
from .reference.config import STUB_DIR
from .target import (
    BINARY,
    GO,
    NATIVE,
    SCRIPT,
    Target,
    TargetError,
    free_port,
    http_json,
    read_version,
)

DEFAULT_CONFIG: dict[str, Any] = {
    "agents": {"codex": {"type": "codex"}},
    "defaults": {"timeout": 300},
    "api": {"cors_origins": ["http://localhost:3000"],
            "sse": {"heartbeat_interval_s": 1, "max_clients_per_run": 200}},
}  # fmt: skip
"""The config the suites need: the stub ``codex`` agent, a task timeout (conductor-loop refuses to
launch without one), the CORS origin the acceptance suites send, SSE heartbeats every second and
room for the 100-client SSE tests. ``resources/conductor.yaml`` holds the same settings for a
server started by hand (a test keeps the two equal)."""

SERVER_ENVIRONMENT = ("CONDUCTOR_CONFIG", "CONDUCTOR_ROOT", "CONDUCTOR_HOST", "CONDUCTOR_PORT",
                      "CONDUCTOR_API_KEY", "CONDUCTOR_DISABLE_TASK_START")  # fmt: skip
"""Environment variables conductor-loop's ``serve`` reads; removed from the binary's environment so
the command line alone decides (``CONDUCTOR_API_KEY`` would turn auth on)."""

START_TIMEOUT_S = 30.0
"""How long a started binary has to answer ``GET /api/v1/health``."""
VERSION_TIMEOUT_S = 10.0
"""How long ``<binary> --version`` may take."""
LOG_TAIL_LINES = 3
"""Log lines quoted in a start-up error."""
LOG_NAME, CONFIG_NAME = "conductor.log", "conductor.yaml"
GO_BUILDINFO_MAGIC = b"\xff Go buildinf:"
"""Start of the ``.go.buildinfo`` section every Go executable carries."""
_KEY = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
_REJECTED_FLAG = (
    re.compile(r"unknown flag: (-\S+)"),  # cobra (conductor-loop)
    re.compile(r"unknown shorthand flag: '.' in (-\S+)"),  # cobra
    re.compile(r"unrecognized arguments: (\S+)"),  # argparse (the reference)
    re.compile(r"flag provided but not defined: (-\S+)"),  # Go's flag package
)


# ------------------------------------------------------------------------------------- inputs


def resolve_binary(path: str | os.PathLike[str]) -> Path:
    """The absolute path of an executable file; a bare name is looked up on ``PATH``.

    Raises :class:`TargetError` (one line) when it does not exist or is not executable.
    """
    text = str(path).strip()
    if not text:
        raise TargetError("no conductor binary given: set CONDUCTOR_BINARY to a conductor-loop executable")
    if os.sep not in text and not Path(text).exists():
        found = shutil.which(text)
        if found is None:
            raise TargetError(f"conductor binary {text!r} is not a file and not found on PATH")
        text = found
    candidate = Path(os.path.normpath(Path(text).expanduser().absolute()))
    if not candidate.exists():
        raise TargetError(f"conductor binary {candidate} does not exist")
    if not candidate.is_file() or not os.access(candidate, os.X_OK):
        raise TargetError(f"conductor binary {candidate} is not an executable file")
    return candidate


def binary_identity(path: Path) -> tuple[str, str]:
    """``(sha256 hex, format)`` of an executable; the format is :data:`GO`, :data:`NATIVE` or :data:`SCRIPT`."""
    digest = hashlib.sha256()
    head = b""
    go = False
    tail = b""
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            if not head:
                head = chunk[:4]
            digest.update(chunk)
            go = go or GO_BUILDINFO_MAGIC in tail + chunk
            tail = chunk[-len(GO_BUILDINFO_MAGIC) :]
    if head != b"\x7fELF":
        return digest.hexdigest(), SCRIPT
    return digest.hexdigest(), GO if go else NATIVE


def parse_config_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["api.sse.max_clients_per_run=500", ...]`` -> a nested mapping (values parsed as YAML scalars).

    Raises :class:`TargetError` naming the first item that is not ``key.path=value``.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = str(item).partition("=")
        key = key.strip()
        if not sep or not _KEY.match(key):
            raise TargetError(f"config override {item!r} must look like api.sse.max_clients_per_run=200")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[leaf] = value
    return out


def merged_config(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """:data:`DEFAULT_CONFIG` with ``overrides`` merged in (nested mappings merge, other values replace)."""

    def merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
        for key, value in extra.items():
            if isinstance(value, Mapping) and isinstance(base.get(key), dict):
                merge(base[key], value)
            else:
                base[key] = copy.deepcopy(value)
        return base

    return merge(copy.deepcopy(DEFAULT_CONFIG), overrides or {})


def server_environment(home: Path, base: Mapping[str, str] | None = None, *, go: bool = False) -> dict[str, str]:
    """The binary's environment: ours without conductor-loop's own variables, stub first on PATH, HOME
    scratch; with ``go``, the scheduler trace (:data:`~conductor_perf.measure.goroutines.SCHEDTRACE`) in ``GODEBUG``."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if k not in SERVER_ENVIRONMENT
           and not (k.startswith("CONDUCTOR_AGENT_") and k.endswith("_TOKEN"))}  # fmt: skip
    env["PATH"] = os.pathsep.join([str(STUB_DIR), env.get("PATH", os.defpath)])
    env["HOME"] = str(home)
    if go:
        env["GODEBUG"] = ",".join(x for x in (env.get("GODEBUG", ""), SCHEDTRACE) if x)
    return env


def server_command(binary: Path, *, config: Path, root: Path, port: int, api_key: str = "",
                   extra_args: Sequence[str] = ()) -> list[str]:  # fmt: skip
    """``<binary> serve --config C --root R --host 127.0.0.1 --port P [--api-key K] [extra]``."""
    cmd = [str(binary), "serve", "--config", str(config), "--root", str(root), "--host", "127.0.0.1",
           "--port", str(port)]  # fmt: skip
    if api_key:
        cmd += ["--api-key", api_key]
    return cmd + list(extra_args)


# ------------------------------------------------------------------------------------- errors


def log_tail(path: Path, *, offset: int = 0, lines: int = LOG_TAIL_LINES) -> str:
    """The last non-empty lines of a log after ``offset``, joined with `` | `` (``(empty log)`` if none)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            text = fh.read()[-65536:].decode("utf-8", "replace")
    except OSError:
        return "(no log)"
    kept = [line.strip()[:200] for line in text.splitlines() if line.strip()][-lines:]
    return " | ".join(kept) if kept else "(empty log)"


def rejected_flag(text: str) -> str | None:
    """The flag a command line parser complained about in ``text`` (cobra, argparse, Go's flag), if any."""
    for pattern in _REJECTED_FLAG:
        match = pattern.search(text)
        if match:
            return match.group(1)
    return None


def _ended(code: int | None) -> str:
    """``exited with status 3`` / ``was killed by SIGTERM`` / ``did not end``."""
    if code is None:
        return "did not end"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


# ------------------------------------------------------------------------------------- start


def read_version_line(binary: Path, env: Mapping[str, str], *, cwd: Path,
                      timeout: float = VERSION_TIMEOUT_S) -> str:  # fmt: skip
    """The first line ``<binary> --version`` prints; TargetError when it fails or hangs."""
    try:
        proc = subprocess.run([str(binary), "--version"], capture_output=True, stdin=subprocess.DEVNULL,
                              env=dict(env), cwd=cwd, timeout=timeout, start_new_session=True)  # fmt: skip
    except subprocess.TimeoutExpired:
        raise TargetError(f"conductor binary {binary} did not answer --version within {timeout:g} s") from None
    except OSError as exc:
        raise TargetError(f"conductor binary {binary} cannot be executed: {exc.strerror or exc}") from None
    out = (proc.stdout + b"\n" + proc.stderr).decode("utf-8", "replace")
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    if proc.returncode != 0:
        flag = rejected_flag(out)
        raise TargetError(f"conductor binary {binary} failed on --version: it {_ended(proc.returncode)}"
                          + (f" (it rejected the flag {flag})" if flag else "")
                          + f"; last output: {' | '.join(lines[-LOG_TAIL_LINES:]) or '(none)'}")  # fmt: skip
    return lines[0] if lines else ""


@dataclass
class BinaryLaunch:
    """Starts the same conductor-loop executable again (restart, or a second instance with a key)."""

    binary: Path
    extra_args: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    start_timeout: float = START_TIMEOUT_S
    sha256: str = ""
    version_line: str = ""
    format: str = ""

    def start(self, *, root: Path, log_dir: Path, api_key: str = "", port: int = 0,
              extra_args: Sequence[str] = ()) -> Target:  # fmt: skip
        """Start the binary on ``root``; its config, HOME and log go to ``log_dir``; ``port`` 0 = a free one.

        ``extra_args`` are added for this instance only.
        """
        return start_binary(self.binary, sut_dir=log_dir, root=root, api_key=api_key, extra_args=extra_args,
                            config=self.config, port=port, start_timeout=self.start_timeout, launch=self)  # fmt: skip


def start_binary(
    binary: str | os.PathLike[str],
    *,
    sut_dir: str | os.PathLike[str],
    root: str | os.PathLike[str] | None = None,
    api_key: str = "",
    extra_args: Sequence[str] = (),
    config: Mapping[str, Any] | None = None,
    port: int = 0,
    start_timeout: float = START_TIMEOUT_S,
    launch: BinaryLaunch | None = None,
) -> Target:
    """Start ``<binary> serve`` as the SUT (see the module documentation) and wait until it is healthy.

    ``root`` defaults to ``<sut_dir>/root``; ``port`` 0 picks a free one (and another one if that
    was taken in the meantime). ``launch`` reuses an identity already read (restarts, second
    instances): its arguments come first, then ``extra_args``.
    """
    path = launch.binary if launch is not None else resolve_binary(binary)
    base = Path(sut_dir).absolute()
    home = base / "home"
    root_path = Path(root).absolute() if root is not None else base / "root"
    for folder in (base, home, root_path):
        folder.mkdir(parents=True, exist_ok=True)
    config_path = base / CONFIG_NAME
    config_path.write_text(yaml.safe_dump(merged_config(config), sort_keys=False), encoding="utf-8")
    env = server_environment(home)
    launch_given = launch is not None
    if launch is None:
        version_line = read_version_line(path, env, cwd=base)
        sha256, fmt = binary_identity(path)
        launch = BinaryLaunch(path, list(extra_args), dict(config or {}), start_timeout, sha256, version_line, fmt)
    args = [*launch.extra_args, *extra_args] if launch_given else launch.extra_args
    if launch.format == GO:
        env = server_environment(home, go=True)
    log_path = base / LOG_NAME
    attempts = 1 if port else 3  # a free port can be taken between our probe and the server's bind
    for attempt in range(attempts):
        chosen = port or free_port()
        try:
            return _start_once(launch, path, env, base, root_path, log_path, config_path, chosen, api_key, args,
                               start_timeout)  # fmt: skip
        except _PortTaken as exc:
            if attempt == attempts - 1:
                raise TargetError(str(exc)) from None
    raise AssertionError("unreachable")  # pragma: no cover


class _PortTaken(TargetError):
    """The binary could not bind the port it was given."""


def _start_once(launch: BinaryLaunch, path: Path, env: dict[str, str], base: Path, root: Path, log_path: Path,
                config_path: Path, port: int, api_key: str, args: Sequence[str], timeout: float) -> Target:  # fmt: skip
    cmd = server_command(path, config=config_path, root=root, port=port, api_key=api_key, extra_args=args)
    with open(log_path, "ab") as log:
        log.write(f"--- conductor-perf {time.strftime('%Y-%m-%dT%H:%M:%S')}: {' '.join(cmd)}\n".encode())
        log.flush()
        offset = log.tell()
        try:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                    cwd=base, start_new_session=True)  # fmt: skip
        except OSError as exc:
            raise TargetError(f"conductor binary {path} cannot be executed: {exc.strerror or exc}") from None
    target = Target(kind=BINARY, url=f"http://127.0.0.1:{port}/", root=root.resolve(), api_key=api_key,
                    pid=proc.pid, log_path=log_path, process=proc, owns_root=True, launch=launch, binary=path,
                    binary_sha256=launch.sha256, binary_version=launch.version_line, binary_format=launch.format,
                    own_group=True)  # fmt: skip
    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        code = proc.poll()
        if code is not None:
            target.stop(timeout=2)  # whatever it started (its process group, agents) goes too
            tail = log_tail(log_path, offset=offset)
            flag = rejected_flag(tail)
            text = (f"conductor binary {path} {_ended(code)} during start-up"
                    + (f" (it rejected the flag {flag})" if flag else "")
                    + f"; last log lines: {tail} (log {log_path})")  # fmt: skip
            if "address already in use" in tail.lower():
                raise _PortTaken(text)
            raise TargetError(text)
        if time.monotonic() >= deadline:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)  # reaped here, so its exit status is known
            except subprocess.TimeoutExpired:
                pass
            target.stop(timeout=2)  # SIGKILL whatever of its group is left
            raise TargetError(f"conductor binary {path} did not answer GET /api/v1/health within {timeout:g} s "
                              f"({last}); the suite stopped it (it {_ended(proc.returncode)}); last log lines: "
                              f"{log_tail(log_path, offset=offset)} (log {log_path})")  # fmt: skip
        try:
            status, body = http_json(target.endpoint("/api/v1/health"), timeout=1.0)
            if status == 200:
                break
            last = f"HTTP {status}: {str(body)[:80]}"
        except TargetError as exc:
            last = str(exc).split(": ", 1)[-1]
        time.sleep(0.05)
    target.version = read_version(target)
    return target
