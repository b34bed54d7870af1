"""Run history: one line per run in ``results/history.jsonl``, and the choice of a baseline run.

``history.jsonl`` holds each run's ``metrics.json`` without the bulky per-record data (HDR
histograms, chart series) plus its verdict counts and ``passed``; the repeated samples stay, so a
run can serve as a regression baseline after its directory is deleted.

Baselines per SUT identity and profile
======================================
A run is only compared with a run of the same kind: ``latest``, ``latest-measured`` and
``latest-passing`` pick the newest run whose profile AND SUT identity (:class:`conductor_perf.environment.SutIdentity`: kind,
version and, when known, the binary's sha256) equal the current run's. An embedded run never
baselines a run against a real server, a quick run never baselines a default run, and two builds
of conductor-loop with the same version but different binaries are not mixed up. The identity is
read from each line's ``sut`` block, which every history line carries; a line whose ``sut`` has no
kind (written by hand, or by ``report_cli merge`` of parts without a SUT record) counts as the
embedded conductor of unknown version, so it can never baseline a real-server run. A baseline
named explicitly (a run id, directory or file) is used as given: that is how two different builds
are compared on purpose; the comparison then warns that the SUTs differ.

Which earlier run: ``latest-measured``
======================================
The regression suite and ``report_cli compare`` use ``latest-measured``: the newest run of the same
profile and SUT identity that measured at least one of the figures being compared (a value, not a
skip), **whether or not it passed its targets**. A regression is a change between two runs, not a
target miss: a conductor-loop build that misses some targets in every run (0.76 misses 17 of 91 in
the quick profile) would never find a ``latest-passing`` baseline, and its second run would not be
compared with its first. The note names the run and says whether it passed or how many targets it
missed (:func:`baseline_note`). ``latest-passing`` (newest run without a failed or invalid record)
and ``latest`` (newest run, even one that measured none of the figures) remain available.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from conductor_perf.environment import SutIdentity
from conductor_perf.records import METRICS_FILE, ResultsError, RunResults

__all__ = [
    "DEFAULT_BASELINE",
    "HISTORY_FILE",
    "LATEST",
    "append_history",
    "baseline_note",
    "history_entry",
    "measured_figures",
    "read_history",
    "resolve_baseline",
    "resolve_run",
]

HISTORY_FILE = "history.jsonl"
LATEST = ("latest", "latest-measured", "latest-passing")  # baseline specs chosen from the history
DEFAULT_BASELINE = "latest-measured"
"""What the regression suite and ``report_cli compare`` compare with (see the module documentation)."""


def history_entry(run: RunResults) -> dict[str, Any]:
    """One history line: the run without bulky per-record data (HDR, series), plus verdict counts."""
    d = run.to_dict()
    for m in d["metrics"]:
        m.pop("hdr", None)
        m.pop("series", None)
    d["counts"] = run.counts()
    d["passed"] = run.passed
    return d


def append_history(history_path: str | os.PathLike[str], run: RunResults) -> Path:
    """Append one JSON line for ``run`` to ``history.jsonl`` (locked, single write; safe across processes).

    A torn last line left by a crashed writer is terminated first, so it cannot swallow this entry.
    """
    p = Path(history_path)
    p.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(history_entry(run), ensure_ascii=False, separators=(",", ":"), allow_nan=False) + "\n"
    data = line.encode("utf-8")
    with open(p, "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            end = f.seek(0, os.SEEK_END)
            if end > 0:
                f.seek(end - 1)
                if f.read(1) != b"\n":  # a torn line from a crashed writer: do not glue onto it
                    data = b"\n" + data
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    return p


def read_history(history_path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """History entries oldest first; a run appended twice keeps its last entry (at its last position).

    Malformed lines (a torn write) are skipped. A missing file raises :class:`ResultsError`.
    """
    p = Path(history_path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ResultsError(f"{p}: no such file") from None
    except OSError as e:
        raise ResultsError(f"{p}: cannot read ({e.strerror or e})") from None
    by_id: dict[str, dict[str, Any]] = {}
    for line in lines:
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict) and "run_id" in entry:
            by_id.pop(str(entry["run_id"]), None)
            by_id[str(entry["run_id"])] = entry
    return list(by_id.values())


def resolve_run(
    spec: str | os.PathLike[str], *, results_dir: str | os.PathLike[str] = "results"
) -> RunResults:
    """Load a run given a metrics file, a run directory, a run id under ``results_dir`` or ``latest``."""
    p = Path(spec)
    if p.exists():
        return RunResults.load(p)
    candidate = Path(results_dir) / str(spec)
    if candidate.exists():
        return RunResults.load(candidate)
    raise ResultsError(f"{spec}: no such run (not a file, a directory, or a run id under {results_dir})")


def _identity(sut: Mapping[str, Any] | SutIdentity | None) -> SutIdentity | None:
    if sut is None or isinstance(sut, SutIdentity):
        return sut
    return SutIdentity.of(sut)


def _what(spec: str, profile: str | None, identity: SutIdentity | None, figures: int | None = None) -> str:
    """``passing default run of embedded conductor 0.76.0-reference`` (the parts that are known)."""
    words = ["passing"] if spec == "latest-passing" else []
    if profile:
        words.append(profile)
    words.append("run")
    if identity is not None:
        words.append(f"of {identity}")
    if spec == "latest-measured":
        words.append(f"that measured any of the {figures} figures of this run" if figures is not None
                     else "that measured a figure")  # fmt: skip
    return " ".join(words)


def measured_figures(run: RunResults | Mapping[str, Any]) -> set[tuple[str, str, str]]:
    """``(suite, test, metric)`` of the figures a run (or a history entry) measured: a value, not a skip."""
    if isinstance(run, RunResults):
        return {r.key for r in run.metrics if r.value is not None and r.verdict != "skipped"}
    out = set()
    for m in run.get("metrics") or []:
        if isinstance(m, Mapping) and m.get("value") is not None and m.get("verdict") != "skipped":
            out.add((str(m.get("suite", "")), str(m.get("test", "")), str(m.get("metric", ""))))
    return out


def _entry_profile(entry: Mapping[str, Any]) -> str:
    return str(entry.get("profile") or "default")


def resolve_baseline(
    spec: str,
    *,
    results_dir: str | os.PathLike[str] = "results",
    history_path: str | os.PathLike[str] | None = None,
    exclude_run_id: str | None = None,
    profile: str | None = None,
    sut: Mapping[str, Any] | SutIdentity | None = None,
    figures: Iterable[tuple[str, str, str]] | None = None,
) -> RunResults:
    """Find the baseline run.

    ``spec`` is a metrics file or run directory; ``latest`` (newest run in the history),
    ``latest-measured`` (newest run that measured any of ``figures``, the ``(suite, test, metric)``
    keys being compared, passing or not; any measured figure when ``figures`` is None) or
    ``latest-passing`` (newest run without failed or invalid records); or a run id, looked up
    under ``results_dir`` and then in the history (whose lines carry the samples, so a baseline
    survives the deletion of its directory). ``exclude_run_id`` (the current run) is never chosen.
    With ``profile`` and ``sut`` (the current run's ``sut`` block or :class:`SutIdentity`),
    ``latest``/``latest-passing`` only consider runs of that profile and SUT identity (see the
    module docstring). :class:`ResultsError` says what was looked for when nothing fits, e.g.
    ``no earlier passing default run of external conductor 0.76.0 in results/history.jsonl``.
    """
    hist = Path(history_path) if history_path is not None else Path(results_dir) / HISTORY_FILE
    identity = _identity(sut)
    wanted = None if figures is None else set(figures)
    if spec in LATEST:
        what = _what(spec, profile, identity, None if wanted is None else len(wanted))
        if not hist.exists():
            raise ResultsError(f"no earlier {what}: {hist} does not exist yet")
        entries = [e for e in read_history(hist) if str(e.get("run_id")) != exclude_run_id]
        fitting = [e for e in entries
                   if (not profile or _entry_profile(e) == profile)
                   and (identity is None or SutIdentity.of(e.get("sut")) == identity)]  # fmt: skip
        if spec == "latest-passing":
            fitting = [e for e in fitting if e.get("passed")]
        elif spec == "latest-measured":
            fitting = [e for e in fitting if (measured_figures(e) & wanted if wanted is not None else measured_figures(e))]
        if not fitting:
            others = [e for e in entries if e.get("passed") or spec != "latest-passing"]
            hint = ""
            if others:
                o = others[-1]
                hint = (f" ({len(others)} other {'passing ' if spec == 'latest-passing' else ''}run(s) in the "
                        f"history; the newest, {o.get('run_id')}, is a {_entry_profile(o)} run of "
                        f"{SutIdentity.of(o.get('sut'))})")  # fmt: skip
            raise ResultsError(f"no earlier {what} in {hist}{hint}")
        entry = fitting[-1]
        run_dir = Path(results_dir) / str(entry["run_id"])
        if (run_dir / METRICS_FILE).exists():
            return RunResults.load(run_dir)
        return RunResults.from_dict(entry, source=f"{hist} ({entry['run_id']})")
    p = Path(spec)
    if p.exists():
        return RunResults.load(p)
    run_dir = Path(results_dir) / spec
    if run_dir.exists():
        return RunResults.load(run_dir)
    if hist.exists():
        for entry in reversed(read_history(hist)):
            if str(entry.get("run_id")) == spec:
                return RunResults.from_dict(entry, source=f"{hist} ({spec})")
    raise ResultsError(f"baseline {spec!r} not found (no file, no run under {results_dir}, not in {hist})")


def baseline_note(baseline: RunResults, spec: str) -> str:
    """Which baseline was used and why, for logs and the command line, e.g. ``the newest passing
    default run of embedded conductor 0.76.0-reference, commit 0123456789ab`` (``spec`` is what
    was asked for: ``latest``, ``latest-measured``, ``latest-passing`` or an explicit run). For
    ``latest-measured`` it says whether that run passed or how many targets it missed."""
    sha = (baseline.commit.get("sha") or "")[:12] or "no git"
    run = f"{baseline.profile or 'default'} run of {baseline.identity}, commit {sha}"
    if spec == "latest-measured":
        c = baseline.counts()
        missed = c.get("fail", 0) + c.get("invalid", 0)
        outcome = ("it passed" if not missed else
                   f"it missed {missed} target(s): {c.get('fail', 0)} failed, {c.get('invalid', 0)} invalid")  # fmt: skip
        return (f"the newest {baseline.profile or 'default'} run of {baseline.identity} that measured these "
                f"figures, commit {sha} ({outcome})")  # fmt: skip
    if spec in LATEST:
        return f"the newest {'passing ' if spec == 'latest-passing' else ''}{run}"
    return f"a {run} (given as {spec})"
