"""FACT lines at the end of a run (seed "Output"), appended in conductor-loop's bus format.

The seed asks for these messages in MESSAGE-BUS.md::

    FACT: Performance benchmarks complete
    FACT: Message bus throughput: XX msg/sec
    FACT: SSE latency: XX ms
    FACT: 50 concurrent agents completed in XX minutes

plus, here, one FACT per test (each test is one target) with its checked figures and verdict.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .formats import bus
from .verdict import fmt

FACT_PROJECT = "conductor-perf"
FACT_TASK = "task-perf-facts"


def _latest(records: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The last record of each metric that has a verdict (or the last of any kind)."""
    by_metric: dict[str, dict[str, Any]] = {}
    for rec in records:
        name = rec.get("metric")
        if not name:
            continue
        prev = by_metric.get(name)
        if (
            prev is None
            or rec.get("verdict") in ("pass", "fail")
            or prev.get("verdict") not in ("pass", "fail")
        ):
            by_metric[name] = rec
    return by_metric


def fact_bodies(records: list[dict[str, Any]], *, sut: str = "") -> list[str]:
    """The FACT message bodies for a list of metric records: the seed's facts, then one per test."""
    latest = _latest(records)
    tests: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for rec in records:
        if rec.get("verdict") in ("pass", "fail", "invalid", "skipped") and rec.get("test"):
            tests.setdefault((rec.get("suite", ""), rec["test"]), []).append(rec)
    verdict_of = {
        key: next(v for v in ("fail", "invalid", "skipped", "pass") if v in {r["verdict"] for r in recs})
        for key, recs in tests.items()
    }
    counts = {
        v: sum(1 for x in verdict_of.values() if x == v) for v in ("pass", "fail", "invalid", "skipped")
    }
    where = f" against {sut}" if sut else ""
    bodies = [
        f"Performance benchmarks complete{where}: {counts['pass']} targets met, {counts['fail']} missed, "
        f"{counts['invalid']} invalid measurements, {counts['skipped']} skipped"
    ]

    def seed(metric: str, text: str, scale: float = 1.0, unit: str = "") -> None:
        rec = latest.get(metric)
        if rec is not None:
            verdict = rec.get("verdict", "info").upper()
            bodies.append(f"{text}: {fmt(float(rec['value']) * scale)}{unit} ({verdict})")

    seed("bus write throughput", "Message bus throughput", unit=" msg/sec")
    seed("sse log delivery latency p95", "SSE latency", unit=" ms")
    agents = latest.get("agents wall time")
    if agents is not None:
        n = (agents.get("extra") or {}).get("agents", 50)
        bodies.append(
            f"{n} concurrent agents completed in {fmt(float(agents['value']) / 60)} minutes "
            f"({agents.get('verdict', 'info').upper()})"
        )
    # then one FACT per test (one test = one target), naming each of its checked figures
    for key, recs in tests.items():
        figures = "; ".join(
            r.get("message", "") if r["verdict"] == "skipped" else
            f"{r['metric']} {fmt(float(r['value']))} {r.get('unit', '')}".rstrip() + (f" (target {r['target']})" if r.get("target") else "")
            for r in recs
        )  # fmt: skip
        title = next((str(r["title"]) for r in recs if r.get("title")), key[1])  # the name as run
        bodies.append(f"{title}: {figures}: {verdict_of[key].upper()}")
    return bodies


def write_facts(
    bus_path: str | os.PathLike[str],
    records: list[dict[str, Any]],
    *,
    sut: str = "",
    project_id: str = FACT_PROJECT,
    task_id: str = FACT_TASK,
    run_id: str = "",
) -> list[str]:
    """Append one FACT message per body to ``bus_path``; returns the new message ids."""
    Path(bus_path).parent.mkdir(parents=True, exist_ok=True)
    ids = []
    for body in fact_bodies(records, sut=sut):
        msg = bus.Message(type="FACT", project_id=project_id, task_id=task_id, run_id=run_id, body=body)
        ids.append(bus.append(bus_path, msg))
    return ids
