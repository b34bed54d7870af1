"""The run report: metrics.json, summary.md/html, the history line and FACT lines at the end of a run.

Two halves:

- :func:`finalize` ends a run: it merges the per-process metric files of ``<results>/metrics.d/``
  into ``metrics.json``, writes the one-page summaries, appends the run to ``history.jsonl`` and
  writes the FACT lines to ``MESSAGE-BUS.md``.
- :func:`summary_markdown`, :func:`summary_html` and :func:`record_charts` render a run (and its
  comparison with a baseline) for people: every target with figure, verdict and change.

Imports run one way: report -> history / regression -> records -> verdict.
"""

from __future__ import annotations

import html
import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import charts, facts
from .history import append_history
from .records import MetricRecord, RunResults, load_records, parse_time, write_text_atomic
from .regression import comparability_warnings, compare_runs, format_p
from .verdict import format_number
from .wording import plural

RECORD_FIELDS = {"suite", "test", "metric", "unit", "value", "target", "verdict", "message", "histogram", "hdr",
                 "samples", "series", "extra", "higher_is_better"}  # fmt: skip


def to_record(raw: dict[str, Any]) -> MetricRecord:
    """A session JSON-lines record as a :class:`MetricRecord` (unknown keys go to ``extra``)."""
    known = {k: v for k, v in raw.items() if k in RECORD_FIELDS}
    extra = dict(known.pop("extra", None) or {})
    extra.update({k: v for k, v in raw.items() if k not in RECORD_FIELDS and k not in ("time", "profile")})
    return MetricRecord(**known, extra=extra)


def sut_of(raw: list[dict[str, Any]], sut: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The run's ``sut`` block: the ``metric="sut"`` records' ``extra`` (``Target.describe()``),
    overridden by ``sut`` where given."""
    sut_info = dict(sut or {})
    for rec in raw:
        if rec.get("metric") == "sut" and isinstance(rec.get("extra"), dict):
            sut_info = {**rec["extra"], **sut_info}
    return sut_info


def current_run(results_dir: str | os.PathLike[str], *, profile: str = "default") -> RunResults:
    """The figures a running suite has recorded so far (every attempt, no skips), with its SUT: what
    the regression suite compares with a baseline before the run has ended."""
    raw = load_records(results_dir)
    run = RunResults.new(Path(results_dir).name, profile=profile, sut=sut_of(raw))
    for rec in raw:
        if rec.get("metric") not in ("sut", "skipped"):
            run.add(to_record(rec))
    return run


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
    sut_info = sut_of(raw, sut)
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
    return (f"metrics: {out / 'metrics.json'} ({plural(len(run.metrics), 'figure')}: "
            + ", ".join(f"{n} {v}" for v, n in counts.items() if n)
            + f"); facts: {bus_path}")  # fmt: skip


def test_messages(output_xml: str | os.PathLike[str]) -> dict[tuple[str, str], str]:
    """``(suite full name, test name) -> message`` of every test in a Robot ``output.xml``."""
    out: dict[tuple[str, str], str] = {}

    def walk(suite: ET.Element, parent: str) -> None:
        name = suite.attrib.get("name", "")
        full = f"{parent}.{name}" if parent else name
        for child in suite:
            if child.tag == "suite":
                walk(child, full)
            elif child.tag == "test":
                status = child.find("status")
                out[(full, child.attrib.get("name", ""))] = (status.text or "") if status is not None else ""

    root = ET.parse(output_xml).getroot()
    for suite in root.findall("suite"):
        walk(suite, "")
    return out


def add_messages_to_xunit(run_dir: str | os.PathLike[str]) -> int:
    """Give every passing test of ``xunit.xml`` its message (its figures and targets) as ``<system-out>``.

    Robot writes a test's message to xunit only for failures and skips; CI tools show a testcase's
    ``system-out``, so a passing measured test shows its figures there too. Returns how many
    testcases got one; a missing or unreadable file changes nothing.
    """
    out = Path(run_dir)
    try:
        messages = test_messages(out / "output.xml")
        tree = ET.parse(out / "xunit.xml")
    except (OSError, ET.ParseError):
        return 0
    added = 0
    for case in tree.getroot().iter("testcase"):
        if case.find("failure") is not None or case.find("skipped") is not None or case.find("system-out") is not None:
            continue
        message = messages.get((case.attrib.get("classname", ""), case.attrib.get("name", "")), "")
        if message:
            ET.SubElement(case, "system-out").text = message
            added += 1
    if added:
        tmp = out / "xunit.xml.tmp"
        tree.write(tmp, encoding="UTF-8", xml_declaration=True)
        os.replace(tmp, out / "xunit.xml")
    return added


# --------------------------------------------------------------------------------------------------
# summaries


def _comparison_map(run: RunResults, baseline: RunResults | None, comparisons: Any) -> dict[tuple, Any]:
    if comparisons is None and baseline is not None:
        comparisons = compare_runs(baseline, run)
    out: dict[tuple, Any] = {}
    for c in comparisons or []:
        key = getattr(c, "key", None)
        if key is not None:
            out[tuple(key)] = c
    return out


def _md_cell(s: object) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def _duration(run: RunResults) -> str:
    a, b = parse_time(run.started), parse_time(run.finished)
    if not a or not b:
        return ""
    secs = int((b - a).total_seconds())
    return f" ({secs // 60} min {secs % 60} s)" if secs >= 60 else f" ({secs} s)"


def _header_facts(
    run: RunResults, baseline: RunResults | None, comps: Mapping[tuple, Any]
) -> list[tuple[str, str]]:
    c = run.counts()
    verdict = "PASS" if run.passed else "FAIL"
    m = run.machine
    mem = m.get("memory_bytes")
    mem_s = f"{mem / 2**30:.1f} GiB" if isinstance(mem, (int, float)) else "?"
    sha = run.commit.get("sha")
    commit = "unknown (no git)" if not sha else f"{sha[:12]}{' (dirty)' if run.commit.get('dirty') else ''}"
    sut = run.sut
    facts = [
        (
            "Verdict",
            f"{verdict}: {c['pass']} pass, {c['fail']} fail, {c['skipped']} skipped, {c['invalid']} invalid",
        ),
        ("Run", f"{run.run_id}, {run.started or '?'} → {run.finished or 'unfinished'}{_duration(run)}"),
        ("Profile", str(run.profile or "—")),
        (
            "SUT",
            f"{sut.get('kind') or '?'} {sut.get('url') or ''} version {sut.get('version') or '?'}"
            f"{(' root ' + str(sut.get('root'))) if sut.get('root') else ''}",
        ),
        *(
            [("SUT binary", f"{sut['binary']} ({sut.get('binary_version') or '?'}), sha256 {sut.get('binary_sha256') or '?'}")]
            if sut.get("binary")
            else []
        ),
        ("Commit", commit),
        (
            "Machine",
            f"{m.get('cpu_model', '?')}, {m.get('logical_cores', '?')} logical cores "
            f"({m.get('usable_cores', '?')} usable), {mem_s}, {m.get('os', '?')}, Python {m.get('python', '?')}, "
            f"host {m.get('hostname', '?')}",
        ),
        ("Tools", ", ".join(f"{k} {v}" for k, v in run.tools.items() if v) or "—"),
    ]
    la = run.extra.get("load_avg_start")
    if la:
        facts.append(("Load average at start", " ".join(str(x) for x in la)))
    if baseline is not None:
        verdicts = [getattr(x, "verdict", "") for x in comps.values()]
        bsha = (baseline.commit.get("sha") or "")[:12] or "no git"
        facts.append(
            (
                "Baseline",
                f"{baseline.run_id} (commit {bsha}): {verdicts.count('regression')} regression(s), "
                f"{verdicts.count('improvement')} improvement(s), {verdicts.count('same')} same",
            )
        )
        for w in comparability_warnings(baseline, run):
            facts.append(("Warning", w))
    return facts


def _row(r: MetricRecord, baseline: RunResults | None, comps: Mapping[tuple, Any]) -> dict[str, str]:
    b = baseline.find(*r.key) if baseline is not None else None
    comp = comps.get(r.key)
    change = "—"
    gate = "—"
    if comp is not None:
        d = getattr(comp, "delta_pct", None)
        change = f"{d:+.1f}%" if isinstance(d, (int, float)) and math.isfinite(d) else "—"
        p = getattr(comp, "p", None)
        gate = str(getattr(comp, "verdict", ""))
        reason = getattr(comp, "reason", "")
        if reason and reason != "ok":
            gate += f" ({reason})"
        elif isinstance(p, (int, float)):
            gate += f" (p{format_p(p)})"
    elif b is not None and b.value and r.value is not None:
        change = f"{(r.value - b.value) / abs(b.value) * 100:+.1f}%"
    figure = format_number(r.value, r.unit)
    if r.samples and len(r.samples) > 1:
        figure += f" (n={len(r.samples)})"
    return {
        "suite": r.suite,
        "test": str(r.extra.get("title") or r.test),  # the name as run (an override of a target shows)
        "metric": r.metric,
        "figure": figure,
        "target": r.target or "—",
        "verdict": r.verdict,
        "baseline": format_number(b.value, b.unit) if b is not None else "—",
        "change": change,
        "gate": gate,
        "message": r.message,
    }


_COLUMNS = [
    ("suite", "Suite"),
    ("test", "Test"),
    ("metric", "Metric"),
    ("figure", "Figure"),
    ("target", "Target"),
    ("verdict", "Verdict"),
    ("baseline", "Baseline"),
    ("change", "Change"),
    ("gate", "Regression gate"),
]


def summary_markdown(run: RunResults, baseline: RunResults | None = None, comparisons: Any = None) -> str:
    """One-page Markdown summary: run facts, then every target with figure, verdict and change vs baseline.

    ``comparisons`` is the output of :func:`conductor_perf.regression.compare_runs`; when omitted and a
    baseline is given it is computed with the default gate.
    """
    comps = _comparison_map(run, baseline, comparisons)
    lines = [f"# Performance run {run.run_id}", ""]
    lines += [f"- **{k}:** {_md_cell(v)}" for k, v in _header_facts(run, baseline, comps)]
    lines += ["", "## Targets", ""]
    cols = _COLUMNS if baseline is not None or comps else _COLUMNS[:6]
    lines.append("| " + " | ".join(h for _, h in cols) + " |")
    lines.append("|" + "|".join("---" for _ in cols) + "|")
    for r in run.metrics:
        row = _row(r, baseline, comps)
        row["verdict"] = row["verdict"].upper() if row["verdict"] in ("fail", "invalid") else row["verdict"]
        lines.append("| " + " | ".join(_md_cell(row[k]) for k, _ in cols) + " |")
    if not run.metrics:
        lines.append("| " + " | ".join("—" for _ in cols) + " |")
    notes = [r for r in run.metrics if r.verdict not in ("pass", "info") and r.message]
    if notes:
        lines += ["", "## Not passing", ""]
        lines += [f"- **{r.verdict}** {_md_cell(r.label)}: {_md_cell(r.message)}" for r in notes]
    if baseline is not None or comps:
        lines += [
            "",
            "Regression gate: Mann-Whitney U rank test on the repeated samples plus a minimum effect size; "
            "a change is a regression only when it is both significant and larger than the noise.",
        ]
    return "\n".join(lines) + "\n"


def record_charts(record: MetricRecord) -> list[str]:
    """SVG charts suitable for one record: its series over time, its latency percentile curve,
    and its timeline spans (``extra["spans"]``). Empty list when it carries no chart data."""
    out: list[str] = []
    t = record.parsed_target
    threshold = t.threshold_in(record.unit) if t is not None else None
    name = f"{record.test}: {record.metric}"
    if record.series:
        out.append(
            charts.line_chart(
                record.series,
                f"{name} over time",
                str(record.extra.get("x_label", "time (s)")),
                str(
                    record.extra.get(
                        "y_label", f"{record.metric} ({record.unit})" if record.unit else record.metric
                    )
                ),
                target=threshold,
                target_label=f"target {record.target}" if threshold is not None else None,
            )
        )
    if record.histogram and charts.percentile_points(record.histogram):
        hunit = str(record.histogram.get("unit", "ms"))
        ht = t.threshold_in(hunit) if t is not None else None
        out.append(
            charts.percentile_curve(
                record.histogram,
                f"{name} by percentile",
                target_ms=ht,
                target_label=f"target {record.target}" if ht is not None else None,
                y_label=f"latency ({hunit})",
            )
        )
    spans = record.extra.get("spans")
    if isinstance(spans, list) and spans:
        tt = t.threshold_in("s") if t is not None else None
        out.append(
            charts.timeline(
                spans,
                f"{name}: timeline",
                "time (s)",
                target=tt,
                target_label=f"target {record.target}" if tt is not None else None,
            )
        )
    return out


def _headroom_chart(run: RunResults) -> str | None:
    bars: list[tuple[str, float]] = []
    statuses: dict[str, str] = {}
    for r in run.metrics:
        h = r.headroom()
        if h is not None and h > 0:
            label = f"{r.test}: {r.metric}"
            bars.append((label, h))
            statuses[label] = r.verdict
    if not bars:
        return None
    vals = [v for _, v in bars]
    log = max(vals) / min(vals) > 20
    return charts.bar_chart(
        bars,
        "Headroom per target (figure relative to target; > 1 passes)",
        "× target",
        target=1.0,
        target_label="target",
        statuses=statuses,
        log=log,
    )


_CSS = """
body{font-family:DejaVu Sans,Arial,Helvetica,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 14px;font-size:13px}
dt{font-weight:bold}dd{margin:0}
table{border-collapse:collapse;font-size:13px;width:100%}
th,td{border:1px solid #ddd;padding:4px 6px;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.num{text-align:right;white-space:nowrap}
.v{font-weight:bold;padding:1px 6px;border-radius:3px;color:#fff}
.v-pass{background:#2e7d32}.v-fail{background:#c62828}.v-skipped{background:#757575}.v-invalid{background:#8e24aa}
.g-regression{color:#c62828;font-weight:bold}.g-improvement{color:#2e7d32;font-weight:bold}
.charts{display:flex;flex-wrap:wrap;gap:16px}.chart svg{max-width:100%;height:auto}
.msg{color:#555;font-size:12px}
"""


def summary_html(
    run: RunResults,
    baseline: RunResults | None = None,
    comparisons: Any = None,
    *,
    charts_per_record: bool = True,
) -> str:
    """One self-contained HTML page: the facts and table of :func:`summary_markdown`, a headroom
    chart of every target, and each record's charts (inline SVG, no external resources)."""
    comps = _comparison_map(run, baseline, comparisons)
    e = html.escape
    facts = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in _header_facts(run, baseline, comps))
    cols = _COLUMNS if baseline is not None or comps else _COLUMNS[:6]
    head = "".join(f"<th>{e(h)}</th>" for _, h in cols)
    body = []
    for r in run.metrics:
        row = _row(r, baseline, comps)
        cells = []
        for k, _ in cols:
            v = row[k]
            if k == "verdict":
                cells.append(f'<td><span class="v v-{e(v)}">{e(v)}</span></td>')
            elif k == "gate":
                word = v.split(" ")[0]
                cells.append(f'<td class="g-{e(word)}">{e(v)}</td>')
            elif k in ("figure", "baseline", "change"):
                cells.append(f'<td class="num">{e(v)}</td>')
            elif k == "test" and r.message:
                cells.append(f'<td>{e(v)}<div class="msg">{e(r.message)}</div></td>')
            else:
                cells.append(f"<td>{e(v)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    svgs: list[tuple[str, str]] = []
    hr = _headroom_chart(run)
    if hr:
        svgs.append(("Headroom", hr))
    if charts_per_record:
        for r in run.metrics:
            svgs.extend((r.label, s) for s in record_charts(r))
    chart_html = "".join(charts.svg_img_html(s, inline=True, max_width="660px") for _, s in svgs)
    verdict = "PASS" if run.passed else "FAIL"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(verdict)} · performance run {e(run.run_id)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Performance run {e(run.run_id)}: {e(verdict)}</h1>",
        f"<dl>{facts}</dl>",
        "<h2>Targets</h2>",
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>",
    ]
    if baseline is not None or comps:
        parts.append(
            '<p class="msg">Regression gate: Mann-Whitney U rank test on repeated samples plus a minimum '
            "effect size; a change is a regression only when significant and larger than the noise.</p>"
        )
    if chart_html:
        parts += ["<h2>Charts</h2>", f'<div class="charts">{chart_html}</div>']
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
