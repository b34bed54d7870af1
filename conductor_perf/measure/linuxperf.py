"""CPU hot spots of a native server (a Go conductor-loop build) with Linux ``perf``.

``perf`` samples a running process by pid, so unlike scalene (:mod:`conductor_perf.measure.profile`)
it profiles the SUT itself, with little overhead at a modest rate:

1. record: ``perf record -F <hz> -g -p <pid> -o <data> -- sleep <s>`` while a load runs
   (:func:`record_command`, :func:`record`);
2. report: ``perf report -i <data> --stdio -g none --sort dso,sym -n -t <TAB>``, once with
   ``--no-children`` (each function's *self* share: samples whose innermost frame is in it) and once
   with ``--children`` (its *total* share: samples with it anywhere on the call stack)
   (:func:`report_command`, :func:`parse_report`, :func:`merge_reports`);
3. where: a Go binary built with DWARF knows the file and line of each function's first
   instruction. ``perf``'s own ``srcline`` and binutils 2.40's ``addr2line`` answer ``go.go:0`` for
   the DWARF 5 line tables of a recent Go toolchain, but ``readelf --debug-dump=decodedline``
   reads them: :func:`resolve_locations` looks up each function's entry address (``nm``) there.
   Without ``nm``/``readelf`` (package ``binutils``) or DWARF, locations stay unknown (``?``).

Percentages are of all samples taken in the process (its threads, user and kernel), so the
kernel's share of a busy server (syscalls, scheduling) shows as ``[k]`` rows.

Whether ``perf`` can run here is a property of the machine (:func:`perf_unavailable_reason`): the
Debian package ``linux-perf`` (``make perf-tools``) and ``kernel.perf_event_paranoid``: root may
always sample; another user needs ``perf_event_paranoid`` <= 2 to sample its own processes
(user-space only at 2) and nothing works at 3 or above (Debian's extra "disallow all" level).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

PARANOID_PATH = Path("/proc/sys/kernel/perf_event_paranoid")
SEPARATOR = "\t"
#: what installs perf on this kind of machine (Debian 12), for messages
INSTALL_HINT = "install Debian's linux-perf (make perf-tools)"


class PerfError(RuntimeError):
    """perf failed; the message is one line naming the command and perf's last words."""


def perf_unavailable_reason(
    *, perf: str = "perf", paranoid_path: str | os.PathLike[str] = PARANOID_PATH, euid: int | None = None
) -> str | None:
    """``None`` when ``perf`` can sample another process here, else why not (a skip reason).

    Example::

        reason = perf_unavailable_reason()
        if reason:
            pytest.skip(reason)
    """
    if shutil.which(perf) is None:
        return f"Linux perf is not installed ({perf!r} not on PATH): {INSTALL_HINT}"
    try:
        level = int(Path(paranoid_path).read_text().strip())
    except (OSError, ValueError):
        return f"the kernel offers no perf events here ({paranoid_path} is not readable)"
    uid = os.geteuid() if euid is None else euid
    if uid != 0 and level > 2:
        return (f"kernel.perf_event_paranoid is {level}: only root may use perf on this machine "
                "(run as root or set it to 2 or lower with sysctl)")  # fmt: skip
    return None


def record_command(pid: int, out: str | os.PathLike[str], *, hz: int = 499, seconds: float = 5.0,
                   perf: str = "perf") -> list[str]:  # fmt: skip
    """``perf record`` of ``pid`` with call graphs for ``seconds`` at ``hz`` samples per second."""
    if hz <= 0 or seconds <= 0:
        raise ValueError(f"hz and seconds must be positive, got {hz} and {seconds}")
    return [perf, "record", "-F", str(hz), "-g", "-p", str(pid), "-o", os.fspath(out), "--", "sleep", f"{seconds:g}"]


def report_command(data: str | os.PathLike[str], *, children: bool, perf: str = "perf") -> list[str]:
    """``perf report`` of ``data`` as tab-separated rows per (object, symbol); see the module doc."""
    return [perf, "report", "-i", os.fspath(data), "--stdio", "--children" if children else "--no-children",
            "-g", "none", "--sort", "dso,sym", "-n", "-t", SEPARATOR, "--percent-limit", "0"]  # fmt: skip


def _last_words(text: str | bytes | None, limit: int = 200) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return (lines[-1] if lines else "no output")[:limit]


def start_record(pid: int, out: str | os.PathLike[str], *, hz: int = 499, seconds: float = 5.0,
                 perf: str = "perf", stderr_path: str | os.PathLike[str] | None = None) -> subprocess.Popen[bytes]:  # fmt: skip
    """Start ``perf record`` on ``pid`` in the background; finish it with :func:`wait_record`."""
    Path(out).unlink(missing_ok=True)
    err = open(stderr_path, "wb") if stderr_path else subprocess.DEVNULL  # noqa: SIM115 - closed below
    try:
        return subprocess.Popen(record_command(pid, out, hz=hz, seconds=seconds, perf=perf), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)  # fmt: skip
    finally:
        if stderr_path:
            err.close()  # type: ignore[union-attr]


def wait_record(proc: subprocess.Popen[bytes], out: str | os.PathLike[str], *, timeout: float,
                stderr_path: str | os.PathLike[str] | None = None) -> Path:  # fmt: skip
    """Wait for a :func:`start_record` to end; returns the data file or raises :class:`PerfError`.

    On timeout ``perf`` gets SIGINT (it then writes what it has), then SIGKILL.
    """
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(2)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        raise PerfError(f"perf record did not end within {timeout:g} s") from None
    said = ""
    if stderr_path:
        with contextlib.suppress(OSError):
            said = Path(stderr_path).read_text(encoding="utf-8", errors="replace")
    path = Path(out)
    if proc.returncode != 0 or not path.is_file() or path.stat().st_size == 0:
        raise PerfError(f"perf record exited with status {proc.returncode}: {_last_words(said)}")
    return path


def run_report(data: str | os.PathLike[str], *, children: bool, perf: str = "perf", timeout: float = 120.0) -> str:
    """The text of :func:`report_command` (raises :class:`PerfError` when perf fails)."""
    cmd = report_command(data, children=children, perf=perf)
    try:
        done = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise PerfError(f"perf report did not end within {timeout:g} s") from None
    if done.returncode != 0:
        raise PerfError(f"perf report exited with status {done.returncode}: {_last_words(done.stderr)}")
    return done.stdout.decode("utf-8", "replace")


# -- parsing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportRow:
    """One row of a ``perf report`` (one function in one object)."""

    dso: str
    symbol: str
    kernel: bool
    self_percent: float
    total_percent: float | None
    samples: int | None


@dataclass(frozen=True)
class ReportHeader:
    """The figures of a report's header comment."""

    event: str = ""
    samples: str = ""
    lost_samples: int = 0


_SAMPLES = re.compile(r"^#\s*Samples:\s*(\S+)\s+of event '([^']*)'")
_LOST = re.compile(r"^#\s*Total Lost Samples:\s*(\d+)")


def _percent(cell: str) -> float:
    cell = cell.strip()
    if not cell.endswith("%"):
        raise ValueError(f"not a percentage: {cell!r}")
    return float(cell[:-1])


def demangle(symbol: str) -> str:
    """A Go symbol as written in source: the linker escapes dots in import paths (``yaml%2ev3``)."""
    return re.sub(r"%([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), symbol)


def parse_report(text: str) -> tuple[list[ReportRow], ReportHeader]:
    """Rows of a :func:`report_command` output (either children mode), in the report's order.

    Raises:
        ValueError: the text has no column header of a ``--sort dso,sym`` report.
    """
    header = ReportHeader()
    columns: list[str] | None = None
    rows: list[ReportRow] = []
    for line in text.splitlines():
        if line.startswith("#"):
            if m := _SAMPLES.match(line):
                header = ReportHeader(event=m.group(2), samples=m.group(1), lost_samples=header.lost_samples)
            elif m := _LOST.match(line):
                header = ReportHeader(event=header.event, samples=header.samples, lost_samples=int(m.group(1)))
            elif SEPARATOR in line and "Symbol" in line:
                columns = [c.strip().lower() for c in line.lstrip("#").split(SEPARATOR)]
            continue
        if not line.strip():
            continue
        if columns is None:
            raise ValueError("not a tab-separated 'perf report --sort dso,sym' output: no column header")
        cells = line.split(SEPARATOR)
        if len(cells) != len(columns):
            continue  # a wrapped or foreign line
        cell = dict(zip(columns, cells, strict=True))
        sym = cell.get("symbol", "").strip()
        kernel = sym.startswith("[k]")
        sym = re.sub(r"^\[[^\]]*\]\s*", "", sym)
        if "children" in cell:
            self_pct, total = _percent(cell["self"]), _percent(cell["children"])
        else:
            self_pct, total = _percent(cell["overhead"]), None
        n = cell.get("samples", "").strip()
        rows.append(ReportRow(dso=cell.get("shared object", "").strip(), symbol=demangle(sym), kernel=kernel,
                              self_percent=self_pct, total_percent=total,
                              samples=int(n) if n.isdigit() else None))  # fmt: skip
    if columns is None:
        raise ValueError("not a tab-separated 'perf report --sort dso,sym' output: no column header")
    return rows, header


@dataclass(frozen=True)
class NativeHotspot:
    """One function's share of the sampled CPU time.

    Attributes:
        function: the symbol (Go: ``package.(*Type).Method``).
        dso: the object it is in (the binary, ``[kernel.kallsyms]``, a shared library).
        kernel: a kernel function (``[k]``).
        self_percent: % of samples taken in the function itself.
        total_percent: % of samples with the function anywhere on the stack.
        samples: samples taken in the function itself.
        file: source file of the function (``None`` when unknown).
        line: line of its first instruction (0 when unknown).
    """

    function: str
    dso: str
    kernel: bool
    self_percent: float
    total_percent: float
    samples: int | None = None
    file: str | None = None
    line: int = 0

    @property
    def location(self) -> str:
        """``file:line``, or ``?`` when unknown."""
        return f"{self.file}:{self.line}" if self.file else "?"

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return asdict(self)


def merge_reports(self_rows: Iterable[ReportRow], children_rows: Iterable[ReportRow]) -> list[NativeHotspot]:
    """Join a ``--no-children`` and a ``--children`` report: self and total share per function.

    Sorted by self share, then total share. A function seen only on stacks (self 0) is kept.
    """
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for r in self_rows:
        out[(r.dso, r.symbol)] = {"self": r.self_percent, "total": r.self_percent, "samples": r.samples,
                                  "kernel": r.kernel}  # fmt: skip
    for r in children_rows:
        entry = out.setdefault((r.dso, r.symbol), {"self": r.self_percent, "samples": 0, "kernel": r.kernel})
        entry["total"] = r.total_percent if r.total_percent is not None else r.self_percent
    spots = [NativeHotspot(function=sym, dso=dso, kernel=e["kernel"], self_percent=e["self"],
                           total_percent=max(e["total"], e["self"]), samples=e["samples"])
             for (dso, sym), e in out.items()]  # fmt: skip
    spots.sort(key=lambda h: (h.self_percent, h.total_percent), reverse=True)
    return spots


# -- source locations -------------------------------------------------------------------------


def parse_nm(text: str, names: Iterable[str]) -> dict[str, int]:
    """Entry addresses of ``names`` in ``nm`` output (``<hex> <type> <name>``; escaped Go names match too)."""
    wanted = set(names)
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split(" ", 2)
        if len(parts) != 3 or parts[1] not in ("T", "t"):
            continue
        name = demangle(parts[2].strip())
        if name in wanted and name not in out:
            with contextlib.suppress(ValueError):
                out[name] = int(parts[0], 16)
    return out


def parse_decodedline(text: str, addresses: Iterable[int]) -> dict[int, tuple[str, int]]:
    """``(file, line)`` of each address that starts a row of ``readelf --debug-dump=decodedline``.

    The output lists, per source file, a header line ``/full/path/file.go:`` (or ``CU: ...:``) and
    rows ``file.go  <line>  0x<address> ...``.
    """
    wanted = set(addresses)
    out: dict[int, tuple[str, int]] = {}
    current = ""
    for line in text.splitlines():
        if not line or line.startswith(("Contents of", "File name")):
            continue
        if line.endswith(":") and not line[0].isspace():
            current = line[:-1].removeprefix("CU: ")
            continue
        cells = line.split()
        if len(cells) < 3 or not cells[2].startswith("0x") or not cells[1].isdigit():
            continue
        try:
            addr = int(cells[2], 16)
        except ValueError:
            continue
        if addr in wanted and addr not in out:
            path = current if current.endswith("/" + cells[0]) or current == cells[0] else cells[0]
            out[addr] = (path, int(cells[1]))
    return out


def short_path(path: str) -> str:
    """A build path shortened to what identifies it: from the Go module or ``src`` tree on."""
    for marker in ("/pkg/mod/", "/src/"):
        if marker in path:
            return path.rsplit(marker, 1)[1]
    return path


def resolve_locations(binary: str | os.PathLike[str], functions: Sequence[str], *,
                      timeout: float = 60.0) -> dict[str, tuple[str, int]]:  # fmt: skip
    """``{function: (file, line)}`` of each function's entry in ``binary`` (see the module doc).

    Best effort: an empty mapping when ``nm``/``readelf`` are missing, the binary is stripped or
    has no DWARF line table.
    """
    if not functions or shutil.which("nm") is None or shutil.which("readelf") is None:
        return {}
    try:
        nm = subprocess.run(["nm", "--defined-only", os.fspath(binary)], capture_output=True, timeout=timeout,
                            check=False, stdin=subprocess.DEVNULL)  # fmt: skip
        addrs = parse_nm(nm.stdout.decode("utf-8", "replace"), functions)
        if not addrs:
            return {}
        dl = subprocess.run(["readelf", "--wide", "--debug-dump=decodedline", os.fspath(binary)], capture_output=True,
                            timeout=timeout, check=False, stdin=subprocess.DEVNULL)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return {}
    lines = parse_decodedline(dl.stdout.decode("utf-8", "replace"), addrs.values())
    return {name: (short_path(lines[a][0]), lines[a][1]) for name, a in addrs.items() if a in lines}


def with_locations(spots: Sequence[NativeHotspot], locations: dict[str, tuple[str, int]]) -> list[NativeHotspot]:
    """The hot spots with ``file``/``line`` filled in where ``locations`` knows the function."""
    out = []
    for h in spots:
        loc = locations.get(h.function)
        out.append(NativeHotspot(**{**h.to_dict(), "file": loc[0], "line": loc[1]}) if loc else h)
    return out


# -- rendering --------------------------------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("`", "'")


def _rows(spots: Sequence[NativeHotspot]) -> list[str]:
    out = []
    for i, h in enumerate(spots, start=1):
        fn = ("[k] " if h.kernel else "") + h.function
        out.append(f"| {i} | `{_cell(h.location)}` | {_cell(fn)} | {h.self_percent:.1f} | {h.total_percent:.1f} |"
                   f" {'' if h.samples is None else h.samples} |")  # fmt: skip
    return out


def native_hotspots_markdown(
    spots: Sequence[NativeHotspot],
    top: int = 10,
    *,
    title: str = "CPU hot spots",
    context: str = "",
    header: ReportHeader | None = None,
    own: Sequence[NativeHotspot] = (),
    own_title: str = "The server's own functions by total share",
) -> str:
    """A Markdown table of the ``top`` functions by self share (for ``hotspots.md``).

    Columns as in the scalene table where they mean the same (rank, location, function), then the
    shares: self (in the function) and total (on the stack), and the samples. With ``own`` (the
    server's own functions, any order) a second table ranks the ``top`` of them by total share:
    where the server's code spends the time, callees included.
    """
    lines = [f"# {title}", ""]
    if context:
        lines += [context, ""]
    if header is not None and header.samples:
        lost = f", {header.lost_samples} lost" if header.lost_samples else ""
        lines += [f"{header.samples} samples of `{header.event}`{lost}.", ""]
    lines += [
        "Percentages are of all samples of the process (every thread, user and kernel). Self = samples"
        " in the function itself; total = samples with it anywhere on the call stack. `[k]` = kernel.",
        "",
        "| # | location | function | self % | total % | samples |",
        "|---:|---|---|---:|---:|---:|",
    ]
    lines += _rows(spots[:top])
    if not spots:
        lines.append("| - | (no samples) | | | | |")
    if own:
        lines += ["", f"## {own_title}", "", "| # | location | function | self % | total % | samples |",
                  "|---:|---|---|---:|---:|---:|"]  # fmt: skip
        ranked = sorted(own, key=lambda h: (h.total_percent, h.self_percent), reverse=True)
        lines += _rows(ranked[:top])
    return "\n".join(lines) + "\n"


def go_main_module(binary: str | os.PathLike[str]) -> str | None:
    """The main module path a Go binary was built from (its build info: ``mod\\t<path>``), or ``None``."""
    try:
        data = Path(binary).read_bytes()
    except OSError:
        return None
    at = data.find(b"\nmod\t", max(0, data.find(b"path\t")))
    if at < 0:
        return None
    end = data.find(b"\t", at + 5)
    path = data[at + 5 : end].decode("utf-8", "replace") if end > 0 else ""
    return path or None


def in_module(h: NativeHotspot, module: str | None) -> bool:
    """Whether a hot spot is a function of the server's own Go module (or of package ``main``)."""
    if h.kernel:
        return False
    return h.function.startswith("main.") or bool(module and h.function.startswith(module + "/"))


def is_own(h: NativeHotspot, module: str | None) -> bool:
    """Whether a hot spot is a function of the server's own Go module (:func:`in_module`) with self samples."""
    return h.self_percent > 0 and in_module(h, module)
