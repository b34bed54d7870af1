"""CPU and memory hot spots: scalene for the embedded (Python) reference conductor; a note for Go.

Starting. scalene 2.4 cannot attach to a running pid: the server is started under it.
:func:`scalene_command` builds the command line; a module runs as ``-m pkg.mod`` (scalene 2.4
supports it: ``scalene run -o out.json -m pkg.mod --- args``). The command goes through the tiny
launcher :mod:`conductor_perf.measure._scalene_launch`, which sets the environment scalene wants
and ``exec``s ``python -m scalene run ...`` in the same process. Without it, scalene re-executes
itself as a child and the started pid is only a waiting parent.

Stopping (measured with scalene 2.4.0, Python 3.11, on a busy loop and on an aiohttp server):

* Started through :func:`scalene_command` (one process): **SIGINT** or **SIGTERM** to that pid
  both write the JSON before exit. SIGINT raises ``KeyboardInterrupt`` in the program, or runs its
  own SIGINT handler (aiohttp's ``run_app`` exits gracefully, exit code 0). SIGTERM runs the
  program's own handler when it installed one (aiohttp: graceful, exit 0). Otherwise scalene's
  handler writes the profile and exits at once with code 143, and the program's clean-up does not
  run. Use **SIGINT** (:data:`STOP_SIGNAL`): it stops a program that installed no handler cleanly
  too. The profile is written only on a normal end, ``SystemExit``/``KeyboardInterrupt`` or
  scalene's SIGTERM handler. ``os._exit`` or SIGKILL write nothing: wait for the exit (with a
  timeout) before reading. ``profile_interval`` makes scalene also rewrite the JSON every N
  seconds, as a safety net.
* Started as plain ``scalene run ...`` (two processes): a signal to the started pid alone does
  NOT stop the profiled program. SIGTERM kills the parent (-15), SIGINT makes it exit 0, and the
  profiled child keeps running and writes nothing. Start it with ``start_new_session=True`` and
  signal the process group (``os.killpg``). SIGINT to the group exits the parent with 0, possibly
  before the child has written the JSON, so poll for the file.
  :func:`stop_profiled` does both (group signal, then wait for a parseable JSON).

Reading. :func:`parse_scalene` reads ``files -> lines``. Percentages are of the profiled
**wall-clock** time. ``n_cpu_percent_python`` and ``n_cpu_percent_c`` (native) are time executing
Python and native code. ``n_sys_percent`` is the rest of the wall time attributed to that line:
kernel time AND time blocked. For a server, the line that enters the event loop (``web.run_app``)
shows the idle ``epoll`` wait as "system". Hot spots are therefore ranked by Python + native by
default. By default scalene profiles only files under the program's directory (for ``-m`` the
module's directory). :func:`scalene_command` widens that to the top-level package, and
``profile_all=True`` includes libraries (aiohttp, asyncio). Time spent in code that is not profiled
is charged to the nearest profiled caller line. On an aiohttp server that is the ``web.run_app``
line. With ``profile_all`` scalene 2.4 charged about 60 % to ``threading.py`` ``Thread.run``
(native), which is harder to read: keep the default.

Overhead, measured on a small aiohttp JSON endpoint under ``wrk -t1 -c10 -d5s`` on the 2-core test
machine: 21,800 req/s plain, 18,700 req/s under ``--cpu-only`` (-14 %), 9,600 req/s with memory
profiling (-56 %). Profile in a separate run from the figures that are compared to targets. In a tight loop scalene 2.4 reports the loop header
and body lines with the same share. Child processes started as ``python`` through ``PATH`` are
profiled too (scalene puts a ``python`` shim first in ``PATH``); ones started through an absolute
interpreter path are not.

Go SUT. conductor-loop 0.76 exposes no pprof endpoint (docs/conductor-loop.md, Introspection):
:func:`pprof_unavailable_reason`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

LAUNCHER = Path(__file__).with_name("_scalene_launch.py")

#: the signal that makes a program under scalene exit and write its profile (see module doc)
STOP_SIGNAL = signal.SIGINT


def scalene_unavailable_reason() -> str | None:
    """``None`` when scalene can be imported here, else why not (for a skip message)."""
    try:
        spec = importlib.util.find_spec("scalene")
    except (ImportError, ValueError) as exc:
        return f"scalene is not importable: {exc}"
    if spec is None:
        return f"scalene is not installed for {sys.executable}"
    return None


def pprof_unavailable_reason() -> str:
    """Why Go CPU/heap profiles cannot be taken from the real conductor-loop server."""
    return "conductor-loop 0.76 exposes no pprof endpoint (docs/conductor-loop.md, \"Introspection\")"


def _is_script(target: str) -> bool:
    return target.endswith(".py") or os.sep in target or Path(target).is_file()


def _package_dir(module: str) -> str | None:
    """Directory of the top-level package of a dotted module name (without importing it)."""
    top = module.split(".", 1)[0]
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return str(Path(next(iter(spec.submodule_search_locations))).resolve())
    return str(Path(spec.origin).resolve().parent) if spec.origin else None


def scalene_command(
    module_or_script: str,
    args: Sequence[str],
    out_json: str | os.PathLike[str],
    cpu_only: bool = False,
    *,
    python: str | None = None,
    program_path: str | os.PathLike[str] | None = None,
    profile_all: bool = False,
    profile_interval: float | None = None,
) -> list[str]:
    """Command line that runs a Python program under scalene, as the started process itself.

    Example::

        cmd = scalene_command("conductor_perf.reference", ["--root", root, "--port", "8080"],
                              "results/run1/scalene.json")
        proc = subprocess.Popen(cmd, start_new_session=True)
        ...  # load
        stop_profiled(proc, "results/run1/scalene.json")

    Args:
        module_or_script: a dotted module name (run as ``-m``) or a path to a ``.py`` file.
        args: the program's own arguments.
        out_json: where scalene writes the profile.
        cpu_only: profile CPU only (lower overhead; no memory columns).
        python: interpreter that has scalene (default: this one).
        program_path: profile files under this directory. Default: for a module, its top-level
            package directory; for a script, scalene's default (the script's directory).
        profile_all: also profile libraries and the standard library.
        profile_interval: also rewrite the JSON every this many seconds.
    """
    target = module_or_script.removeprefix("-m").strip()
    cmd = [python or sys.executable, str(LAUNCHER), "run", "-o", str(Path(out_json).resolve())]
    if cpu_only:
        cmd.append("--cpu-only")
    if profile_all:
        cmd.append("--profile-all")
    if profile_interval is not None:
        cmd += ["--profile-interval", f"{profile_interval:g}"]
    if _is_script(target):
        pp = program_path
        prog = [os.fspath(Path(target).resolve())]
    else:
        pp = program_path if program_path is not None else _package_dir(target)
        prog = ["-m", target]
    if pp is not None:
        cmd += ["--program-path", os.fspath(pp)]
    cmd += prog
    if args:
        cmd += ["---", *[str(a) for a in args]]
    return cmd


def start_profiled(
    module_or_script: str,
    args: Sequence[str],
    out_json: str | os.PathLike[str],
    cpu_only: bool = False,
    **popen_kwargs: Any,
) -> subprocess.Popen[bytes]:
    """Start a program under scalene in its own session (see :func:`scalene_command`).

    A stale ``out_json`` is removed first, so a profile found later is from this run.
    ``popen_kwargs`` go to :class:`subprocess.Popen` (``cwd``, ``env``, ``stdout``...).
    """
    Path(out_json).unlink(missing_ok=True)
    Path(out_json).parent.mkdir(parents=True, exist_ok=True)
    popen_kwargs.setdefault("start_new_session", True)
    return subprocess.Popen(scalene_command(module_or_script, args, out_json, cpu_only), **popen_kwargs)


def _load_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def stop_profiled(
    proc: subprocess.Popen[Any],
    out_json: str | os.PathLike[str],
    *,
    sig: int = STOP_SIGNAL,
    timeout: float = 30.0,
) -> bool:
    """Stop a program running under scalene and wait until its profile is readable.

    Sends ``sig`` to the process group when the process leads its own session (as
    :func:`start_profiled` makes it), otherwise to the pid. The group includes any children
    (agents) that stayed in it. Waits for the exit, then for a
    parseable ``out_json``, all within ``timeout`` seconds. On timeout the group is killed.

    Returns:
        True when ``out_json`` holds a complete profile.
    """
    deadline = time.monotonic() + timeout
    path = Path(out_json)
    own_group = False
    with contextlib.suppress(OSError):
        own_group = os.getpgid(proc.pid) == proc.pid
    with contextlib.suppress(ProcessLookupError):
        if own_group:
            os.killpg(proc.pid, sig)
        else:
            os.kill(proc.pid, sig)
    try:
        proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            if own_group:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        return _load_json(path) is not None
    while True:
        if _load_json(path) is not None:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


@dataclass(frozen=True)
class Hotspot:
    """One source line's share of the profiled time (percentages of wall-clock time).

    Attributes:
        file: source file as scalene reports it.
        line: line number.
        function: enclosing function (``"<module>"`` at top level; ``None`` when unknown).
        code: the source line, stripped.
        cpu_python: % executing Python code.
        cpu_native: % executing native code (C extensions, the interpreter's C functions).
        cpu_system: % in the kernel or blocked (see the module doc).
        cpu_percent: ``cpu_python + cpu_native``: the ranking figure.
        total_percent: ``cpu_percent + cpu_system``.
        peak_mb: peak memory attributed to the line, MB (0 without memory profiling).
        alloc_mb: memory allocated by the line over the run, MB.
    """

    file: str
    line: int
    function: str | None
    code: str
    cpu_python: float
    cpu_native: float
    cpu_system: float
    cpu_percent: float
    total_percent: float
    peak_mb: float
    alloc_mb: float

    @property
    def location(self) -> str:
        """``file:line``."""
        return f"{self.file}:{self.line}"

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return asdict(self)


SortKey = Literal["cpu", "total", "memory"]


def _unescape(code: str) -> str:
    # scalene escapes &, < and > in source lines as the text "\u0026" etc.
    return code.replace("\\u0026", "&").replace("\\u003c", "<").replace("\\u003e", ">").strip()


SCALENE_KEYS = ("files", "elapsed_time_sec", "program", "args", "samples", "memory", "max_footprint_mb")
"""Top-level keys of a scalene 2.x profile; a JSON object with none of them is something else."""


def _profile(json_path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON of a scalene profile; ``{}`` is scalene's profile without samples.

    Raises:
        ValueError: the file is not JSON or not a scalene profile.
    """
    try:
        data = json.loads(Path(json_path).read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ValueError(f"{json_path}: not a scalene profile (not JSON: {exc})") from None
    if not isinstance(data, dict) or (data and not any(k in data for k in SCALENE_KEYS)):
        raise ValueError(f"{json_path}: not a scalene profile (no 'files' mapping)")
    if not isinstance(data.get("files", {}), dict):
        raise ValueError(f"{json_path}: not a scalene profile ('files' is not a mapping)")
    return data


def scalene_has_samples(json_path: str | os.PathLike[str]) -> bool:
    """Whether a scalene profile holds samples. scalene writes ``{}`` when it has none to report: the
    program ran too briefly, or too little of its time was in the profiled files (a loaded machine)."""
    return bool(_profile(json_path).get("files"))


def parse_scalene(json_path: str | os.PathLike[str], *, sort_by: SortKey = "cpu") -> list[Hotspot]:
    """Hot spots from a scalene 2.x JSON profile: every line with CPU time or memory, sorted.

    A profile without samples (scalene's ``{}``) gives no hot spots; reports say "no samples".

    Args:
        json_path: the ``-o`` file of ``scalene run``.
        sort_by: ``"cpu"`` (Python + native, default), ``"total"`` (including system/blocked) or
            ``"memory"`` (peak MB).

    Raises:
        ValueError: the file is not a scalene profile.
    """
    data = _profile(json_path)
    spots: list[Hotspot] = []
    for fname, fdata in (data.get("files") or {}).items():
        funcs = {int(f.get("lineno", -1)): str(f.get("line", "")).strip() for f in fdata.get("functions", [])}
        for ln in fdata.get("lines", []):
            py = float(ln.get("n_cpu_percent_python", 0.0) or 0.0)
            nat = float(ln.get("n_cpu_percent_c", 0.0) or 0.0)
            sys_ = float(ln.get("n_sys_percent", 0.0) or 0.0)
            peak = float(ln.get("n_peak_mb", 0.0) or 0.0)
            alloc = float(ln.get("n_malloc_mb", 0.0) or 0.0)
            if py + nat + sys_ <= 0 and peak <= 0 and alloc <= 0:
                continue
            start = int(ln.get("start_function_line", 0) or 0)
            function = funcs.get(start) or ("<module>" if start == 0 else None)
            spots.append(
                Hotspot(
                    file=fname,
                    line=int(ln["lineno"]),
                    function=function,
                    code=_unescape(str(ln.get("line", ""))),
                    cpu_python=py,
                    cpu_native=nat,
                    cpu_system=sys_,
                    cpu_percent=py + nat,
                    total_percent=py + nat + sys_,
                    peak_mb=peak,
                    alloc_mb=alloc,
                )
            )
    keys = {
        "cpu": lambda h: (h.cpu_percent, h.total_percent, h.peak_mb),
        "total": lambda h: (h.total_percent, h.cpu_percent, h.peak_mb),
        "memory": lambda h: (h.peak_mb, h.alloc_mb, h.cpu_percent),
    }
    if sort_by not in keys:
        raise ValueError(f"sort_by must be one of {sorted(keys)}, got {sort_by!r}")
    spots.sort(key=keys[sort_by], reverse=True)
    return spots


def scalene_summary(json_path: str | os.PathLike[str]) -> dict[str, Any]:
    """Run-level figures of a scalene profile: program, args, elapsed s, memory mode, max footprint MB,
    whether it holds samples."""
    data = _profile(json_path)
    return {
        "samples": bool(data.get("files")),
        "program": data.get("program"),
        "args": data.get("args", []),
        "elapsed_s": float(data.get("elapsed_time_sec", 0.0) or 0.0),
        "memory_profiled": bool(data.get("memory", False)),
        "max_footprint_mb": float(data.get("max_footprint_mb", 0.0) or 0.0),
        "files": sorted(data.get("files", {})),
    }


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("`", "'")


def hotspots_markdown(
    hotspots: Sequence[Hotspot],
    top: int = 10,
    *,
    title: str = "CPU hot spots",
    summary: dict[str, Any] | None = None,
    root: str | os.PathLike[str] | None = None,
) -> str:
    """A Markdown table of the top hot spots (for ``results/<run>/hotspots.md``).

    Args:
        hotspots: as returned by :func:`parse_scalene` (already sorted).
        top: how many rows.
        title: heading.
        summary: :func:`scalene_summary` of the same profile, for a line of context.
        root: shorten file paths relative to this directory.
    """
    lines = [f"# {title}", ""]
    if summary and not summary.get("samples", True):
        lines += ["scalene took no samples: its profile is empty (the program ran too briefly, or too little of"
                  " its time was in the profiled files, e.g. on a loaded machine).", ""]  # fmt: skip
    elif summary:
        mem = (
            f"max footprint {summary['max_footprint_mb']:.1f} MB"
            if summary.get("memory_profiled")
            else "CPU only"
        )
        lines += [
            f"scalene profile of `{summary.get('program')}` over {summary.get('elapsed_s', 0.0):.1f} s"
            f" ({mem}).",
            "",
        ]
    lines += [
        "Percentages are of the profiled wall-clock time. CPU = Python + native; system = kernel"
        " or blocked (waiting), so an event loop's idle wait shows there.",
        "",
        "| # | location | function | CPU % | Python % | native % | system % | peak MB | code |",
        "|---:|---|---|---:|---:|---:|---:|---:|---|",
    ]
    base = Path(root).resolve() if root is not None else None
    for i, h in enumerate(hotspots[:top], start=1):
        file = h.file
        if base is not None:
            with contextlib.suppress(ValueError):
                file = str(Path(h.file).resolve().relative_to(base))
        lines.append(
            f"| {i} | `{_cell(file)}:{h.line}` | {_cell(h.function or '?')} | {h.cpu_percent:.1f} |"
            f" {h.cpu_python:.1f} | {h.cpu_native:.1f} | {h.cpu_system:.1f} | {h.peak_mb:.1f} |"
            f" `{_cell(h.code[:80])}` |"
        )
    if not hotspots:
        lines.append("| - | (no samples) | | | | | | | |")
    return "\n".join(lines) + "\n"
