"""What a run was measured on: machine, commit, tool versions, load average, and the SUT's identity.

Everything here is captured once per run and stored in ``metrics.json`` so runs can be compared;
nothing raises when a piece is unavailable (no git, no psutil, no ``/proc``): the field is None.

SUT identity
============
The system under test is recorded as a ``metric="sut"`` record whose ``extra`` is
:meth:`conductor_perf.target.Target.describe` (``kind``, ``url``, ``root``, ``version``, ``pid``
and, for a binary the suite starts itself, ``binary_sha256``); the report copies it into the
run's ``sut`` block. :class:`SutIdentity` is the part of it that says *which* conductor was
measured: kind, version and binary hash. Baselines are only taken from runs of the same identity
(see :mod:`conductor_perf.history`). A ``sut`` block without a kind (results written before the
SUT was recorded, or by hand) reads as the embedded conductor of unknown version.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import socket
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "TOOL_DISTRIBUTIONS",
    "UNKNOWN_VERSION",
    "SutIdentity",
    "load_avg",
    "machine_info",
    "repo_commit",
    "tool_versions",
]

#: distributions reported in ``tools``: key -> distribution name.
TOOL_DISTRIBUTIONS = {
    "robotframework": "robotframework",
    "pabot": "robotframework-pabot",
    "httpx": "httpx",
    "aiohttp": "aiohttp",
    "psutil": "psutil",
    "hdrhistogram": "hdrhistogram",
    "pyyaml": "PyYAML",
    "conductor-perf": "conductor-perf",
}

UNKNOWN_VERSION = "unknown"  # what conductor_perf.target records when /api/v1/version does not answer


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def _memory_bytes() -> int | None:
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except Exception:  # noqa: BLE001 - psutil missing or unsupported platform
        pass
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return None


def machine_info() -> dict[str, Any]:
    """CPU model, core counts, memory, OS, Python and hostname of this machine."""
    physical = None
    with contextlib.suppress(Exception):
        import psutil

        physical = psutil.cpu_count(logical=False)
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 1
    return {
        "cpu_model": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "physical_cores": physical,
        "usable_cores": usable,
        "memory_bytes": _memory_bytes(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "hostname": socket.gethostname(),
    }


def _repo_dir() -> Path:
    return Path(__file__).resolve().parent.parent


def repo_commit(path: str | os.PathLike[str] | None = None, *, timeout: float = 5.0) -> dict[str, Any]:
    """``{"sha": ..., "dirty": ...}`` of the git work tree at ``path`` (default: this repository).

    Both are None when git or the repository is unavailable; never raises.
    """
    cwd = str(path) if path is not None else str(_repo_dir())
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {"sha": None, "dirty": None}
    return {"sha": sha or None, "dirty": bool(status.strip())}


def tool_versions(distributions: Mapping[str, str] | None = None) -> dict[str, str | None]:
    """Installed versions of the tools that shape the figures; None for a missing one."""
    out: dict[str, str | None] = {}
    for key, dist in (distributions or TOOL_DISTRIBUTIONS).items():
        try:
            out[key] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[key] = None
    return out


def load_avg() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (a hint of how shared the machine was); None if unknown."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


@dataclass(frozen=True)
class SutIdentity:
    """Which conductor a run measured: ``kind`` (embedded, external, binary), ``version`` and, when
    the suite knows the executable, ``binary_sha256``. Two runs are comparable baselines of each
    other only when their identities are equal.

    Example::

        >>> str(SutIdentity.of({"kind": "external", "version": "0.76.0", "url": "http://127.0.0.1:1/"}))
        'external conductor 0.76.0'
    """

    kind: str
    version: str
    binary_sha256: str | None = None

    @classmethod
    def of(cls, sut: Mapping[str, Any] | None) -> SutIdentity:
        """The identity in a run's ``sut`` block (or a ``Target.describe()`` dict).

        A block without a kind reads as the embedded conductor, a missing version as ``unknown``.
        """
        sut = sut or {}
        sha = sut.get("binary_sha256")
        return cls(kind=str(sut.get("kind") or "embedded"), version=str(sut.get("version") or UNKNOWN_VERSION),
                   binary_sha256=str(sha).lower() if sha else None)  # fmt: skip

    def __str__(self) -> str:
        version = f"version {self.version}" if self.version == UNKNOWN_VERSION else self.version
        sha = f" (sha256 {self.binary_sha256[:12]})" if self.binary_sha256 else ""
        return f"{self.kind} conductor {version}{sha}"

    def to_dict(self) -> dict[str, str | None]:
        """``{"kind": ..., "version": ..., "binary_sha256": ...}``."""
        return {"kind": self.kind, "version": self.version, "binary_sha256": self.binary_sha256}
