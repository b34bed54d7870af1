"""CPU hot spots of a native SUT (a conductor-loop build) under load, sampled with Linux ``perf``.

The counterpart of :func:`conductor_perf.bench.hotspots.profile_reference` for a server that is
not Python: ``perf`` attaches to the running SUT by pid (low overhead at a few hundred samples per
second), so the SUT itself is profiled, under the same representative load the scalene profile
gets (:func:`conductor_perf.bench.hotspots.run_representative_load`: API reads and message posts,
stub agents, one SSE client). :func:`profile_native` writes into the run's results folder:

* ``hotspots.md``: the top functions by self share, with total share and source file:line
  (:func:`conductor_perf.measure.linuxperf.native_hotspots_markdown`);
* ``hotspots.perf.data``: perf's recording (``perf report -i hotspots.perf.data``);
* ``hotspots.perf-self.txt`` and ``hotspots.perf-total.txt``: the two reports it was built from.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..measure import linuxperf
from ..measure.linuxperf import NativeHotspot, ReportHeader
from ..target import Target
from . import hotspots

MARKDOWN_NAME = hotspots.MARKDOWN_NAME
DATA_NAME = "hotspots.perf.data"
SELF_NAME = "hotspots.perf-self.txt"
TOTAL_NAME = "hotspots.perf-total.txt"
LOG_NAME = "hotspots.perf.log"
#: functions whose source location is looked up (the table shows ``top`` of them)
RESOLVE = 60


@dataclass
class NativeHotspotReport:
    """The outcome of a perf profile of a native SUT.

    Attributes:
        markdown_path: the Markdown table.
        data_path: perf's recording.
        hotspots: every function with samples, by self share, locations filled in where known.
        own_hotspots: those of the server's own Go module (``module``) with self samples.
        module: the binary's main Go module (``None`` when it has no Go build info).
        binary: the profiled executable.
        header: samples and event of the recording.
        load: what the load did (requests, ok, agents completed, SSE events, seconds).
        elapsed_s: from the start of recording to the table written.
        errors: what went wrong in the load (the profile is still written).
    """

    markdown_path: Path
    data_path: Path
    hotspots: list[NativeHotspot]
    own_hotspots: list[NativeHotspot]
    module: str | None
    binary: str
    header: ReportHeader
    load: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0
    errors: list[str] = field(default_factory=list)

    def to_dict(self, top: int = 10) -> dict[str, Any]:
        """Plain dict for JSON with the ``top`` hot spots."""
        return {"markdown_path": str(self.markdown_path), "data_path": str(self.data_path),
                "top": [h.to_dict() for h in self.hotspots[:top]], "own_count": len(self.own_hotspots),
                "module": self.module, "binary": self.binary, "samples": self.header.samples,
                "event": self.header.event, "lost_samples": self.header.lost_samples, "load": self.load,
                "elapsed_s": self.elapsed_s, "errors": self.errors}  # fmt: skip


def write_native_hotspots(
    self_report: str,
    total_report: str,
    markdown_path: str | os.PathLike[str],
    *,
    binary: str | os.PathLike[str] | None = None,
    top: int = 10,
    title: str = "CPU hot spots",
    context: str = "",
    notes: tuple[str, ...] = (),
) -> tuple[list[NativeHotspot], ReportHeader, str]:
    """The file step alone: two ``perf report`` texts in, ``hotspots.md`` out.

    Example::

        spots, header, text = write_native_hotspots(self_txt, total_txt, "results/r1/hotspots.md",
                                                    binary="/usr/local/bin/run-agent")

    Args:
        self_report: output of ``perf report --no-children`` (:func:`~conductor_perf.measure.linuxperf.report_command`).
        total_report: output of the same with ``--children``.
        markdown_path: where the Markdown goes (its folder is created).
        binary: the profiled executable, to look up file:line of its functions (optional).
        top: rows in the table.
        title, context, notes: heading, a line under it, lines after the table.

    Returns:
        (every function ranked by self share, the recording's header, the Markdown written).

    Raises:
        ValueError: a text is not such a report.
    """
    self_rows, header = linuxperf.parse_report(self_report)
    total_rows, _ = linuxperf.parse_report(total_report)
    counted = sum(r.samples or 0 for r in self_rows)
    if counted and all(r.samples is not None for r in self_rows):  # exact, where the header rounds ("1K")
        header = ReportHeader(event=header.event, samples=str(counted), lost_samples=header.lost_samples)
    spots = linuxperf.merge_reports(self_rows, total_rows)
    module = linuxperf.go_main_module(binary) if binary is not None else None
    if binary is not None:
        by_total = sorted(spots, key=lambda h: h.total_percent, reverse=True)
        wanted = [h.function for h in spots[:RESOLVE] if not h.kernel]
        wanted += [h.function for h in by_total if linuxperf.in_module(h, module)][:RESOLVE]
        spots = linuxperf.with_locations(spots, linuxperf.resolve_locations(binary, sorted(set(wanted))))
    own = [h for h in spots if linuxperf.in_module(h, module)]
    text = hotspots.write_markdown(markdown_path, linuxperf.native_hotspots_markdown(
        spots, top, title=title, context=context, header=header, own=own), notes)  # fmt: skip
    return spots, header, text


def profile_native(
    target: Target,
    out_dir: str | os.PathLike[str],
    *,
    duration_s: float = 10.0,
    hz: int = 499,
    workers: int = 4,
    agents: int = 3,
    top: int = 10,
    binary: str | os.PathLike[str] | None = None,
    perf: str = "perf",
) -> NativeHotspotReport:
    """Sample the SUT's process with ``perf`` for ``duration_s`` while the representative load runs.

    Example::

        report = profile_native(target, results_dir, duration_s=10)
        report.own_hotspots[0].function   # e.g. "github.com/jonnyzzz/conductor-loop/internal/api.listTaskRuns"

    Args:
        target: the SUT; its ``pid`` must be a process on this machine.
        out_dir: folder for the Markdown, perf's data and reports.
        duration_s: how long perf records and the load runs.
        hz: samples per second.
        workers, agents: connections of the API closed loop and stub agents of the load.
        top: rows of the Markdown table.
        binary: the SUT's executable (default: ``/proc/<pid>/exe``), for source locations.
        perf: the perf command.

    Raises:
        PerfError: perf is not usable here (the reason of
            :func:`~conductor_perf.measure.linuxperf.perf_unavailable_reason`) or failed.
        ValueError: the target has no pid.
    """
    reason = linuxperf.perf_unavailable_reason(perf=perf)
    if reason:
        raise linuxperf.PerfError(reason)
    if target.pid is None:
        raise ValueError(f"the SUT at {target.url} has no process on this machine to profile")
    t0 = time.monotonic()
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    data, log = out / DATA_NAME, out / LOG_NAME
    exe = str(binary) if binary is not None else os.path.realpath(f"/proc/{target.pid}/exe")
    rec = linuxperf.start_record(target.pid, data, hz=hz, seconds=duration_s, perf=perf, stderr_path=log)
    load: dict[str, Any] = {}
    errors: list[str] = []
    failure: list[BaseException] = []

    def drive() -> None:
        try:
            load.update(hotspots.run_representative_load(target, duration_s=duration_s, workers=workers,
                                                         agents=agents))  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - reported with the profile
            failure.append(exc)

    loader = threading.Thread(target=drive, name="perf-load", daemon=True)
    loader.start()
    try:
        linuxperf.wait_record(rec, data, timeout=duration_s + 30, stderr_path=log)
    finally:
        loader.join(timeout=duration_s + 60)
    if failure:
        errors.append(f"load failed: {failure[0]}")
    if load:
        errors += hotspots.load_problems(load, agents)
    self_txt = linuxperf.run_report(data, children=False, perf=perf)
    total_txt = linuxperf.run_report(data, children=True, perf=perf)
    (out / SELF_NAME).write_text(self_txt, encoding="utf-8")
    (out / TOTAL_NAME).write_text(total_txt, encoding="utf-8")
    module = linuxperf.go_main_module(exe)
    context = (f"`perf record -F {hz} -g -p {target.pid}` of `{exe}` ({target.kind} SUT {target.version}) for "
               f"{duration_s:g} s.")  # fmt: skip
    notes = (hotspots.load_note(load, duration_s, workers, agents, "while sampled"),
             "", "Locations are the functions' first lines (from the binary's DWARF line table; `?` when unknown).",
             f"Full data: `{DATA_NAME}` (`perf report -i {DATA_NAME}`); the reports: `{SELF_NAME}`, `{TOTAL_NAME}`.")  # fmt: skip
    spots, header, _ = write_native_hotspots(self_txt, total_txt, out / MARKDOWN_NAME, binary=exe, top=top,
                                             title=f"CPU hot spots of {Path(exe).name}", context=context,
                                             notes=notes)  # fmt: skip
    return NativeHotspotReport(markdown_path=out / MARKDOWN_NAME, data_path=data, hotspots=spots,
                               own_hotspots=[h for h in spots if linuxperf.is_own(h, module)], module=module,
                               binary=exe, header=header, load=load, elapsed_s=round(time.monotonic() - t0, 3),
                               errors=errors)  # fmt: skip
