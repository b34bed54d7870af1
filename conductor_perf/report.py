"""End of a run: per-process metric files -> metrics.json, history line, summary and FACT lines."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import facts
from .context import load_records
from .results import (
    MetricRecord,
    RunResults,
    append_history,
    summary_html,
    summary_markdown,
    write_text_atomic,
)

RECORD_FIELDS = {"suite", "test", "metric", "unit", "value", "target", "verdict", "message", "histogram", "hdr",
                 "samples", "series", "extra", "higher_is_better"}  # fmt: skip


def to_record(raw: dict[str, Any]) -> MetricRecord:
    """A session JSON-lines record as a :class:`MetricRecord` (unknown keys go to ``extra``)."""
    known = {k: v for k, v in raw.items() if k in RECORD_FIELDS}
    extra = dict(known.pop("extra", None) or {})
    extra.update({k: v for k, v in raw.items() if k not in RECORD_FIELDS and k not in ("time", "profile")})
    return MetricRecord(**known, extra=extra)


def latest_attempts(records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split records into those of each test's last attempt and the superseded earlier ones."""
    last: dict[tuple[str, str], int] = {}
    for r in records:
        key = (r.get("suite", ""), r.get("test", ""))
        last[key] = max(last.get(key, 1), int(r.get("attempt", 1) or 1))
    kept = [
        r for r in records if int(r.get("attempt", 1) or 1) == last[(r.get("suite", ""), r.get("test", ""))]
    ]
    return kept, [r for r in records if r not in kept]


def finalize(
    results_dir: str | os.PathLike[str],
    *,
    profile: str = "default",
    message_bus: str | os.PathLike[str] | None = None,
    history: str | os.PathLike[str] | None = None,
    sut: dict[str, Any] | None = None,
) -> str:
    """Merge the run's metrics, write metrics.json, summary.md, FACT lines; returns a short summary."""
    out = Path(results_dir)
    raw = load_records(out)
    sut_info = dict(sut or {})
    for rec in raw:
        if rec.get("metric") == "sut" and isinstance(rec.get("extra"), dict):
            sut_info = {**rec["extra"], **sut_info}
    measured, superseded = latest_attempts([r for r in raw if r.get("metric") != "sut"])
    run = RunResults.new(out.name, profile=profile, sut=sut_info)
    if raw:  # the run started with its first record, not when the report is written
        run.started = datetime.fromtimestamp(min(r.get("time", 0) for r in raw), UTC).isoformat()
    for rec in measured:
        run.add(to_record(rec))
    if superseded:
        run.extra["superseded_attempts"] = [
            {
                k: r.get(k)
                for k in ("suite", "test", "metric", "value", "unit", "target", "verdict", "message")
            }
            for r in superseded
        ]
    run.finish()
    run.write(out / "metrics.json")
    write_text_atomic(out / "summary.md", summary_markdown(run))
    write_text_atomic(out / "summary.html", summary_html(run))
    if history:
        append_history(history, run)
    bus_path = Path(message_bus) if message_bus else out / "MESSAGE-BUS.md"
    facts.write_facts(
        bus_path, measured, sut=f"{sut_info.get('kind', '?')} conductor {sut_info.get('version', '')}".strip()
    )
    counts = run.counts()
    return (f"metrics: {out / 'metrics.json'} ({len(run.metrics)} figures: "
            + ", ".join(f"{n} {v}" for v, n in counts.items() if n)
            + f"); facts: {bus_path}")  # fmt: skip
