"""The ``sse`` swarm: SSE subscribers in every worker, the stamped messages from the coordinator.

Each worker holds its share of the clients on one task bus's ``/api/v1/messages/stream`` (the
SSE clients and their checks of :mod:`conductor_perf.bench.sse_bench`, in one client process of
the worker pool); from the common start they subscribe, and the worker's heartbeat carries their
counts (connected, subscribed, refused, failed, done). The coordinator is the writer, as in the
in-process measurement: it posts *primer* messages until every client of every worker is
subscribed (or refused, or failed), then the measured messages at their pace, then the end marker
after which each client stops; every client's record comes back in its worker's report.

Latency is each client's receive time minus the send time embedded in the message, both this
machine's wall clock: across hosts it needs synchronised clocks (NTP), and the figure says so.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import Any

from ..bench import sse_bench
from ..measure.workers import MergedReports, WorkerPool, WorkerReport
from ..target import Target
from .protocol import Coordinator

COUNTERS = ("connected", "ready", "refused", "failed", "done")


def stream_path(spec: Mapping[str, Any]) -> str:
    """The message stream of the swarm's task bus."""
    return f"/api/v1/messages/stream?project_id={spec['project']}&task_id={spec['task']}"


def run_sse_share(target: Target, spec: Mapping[str, Any], index: int, gate: Callable[[], object],
                  box: Any) -> WorkerReport:  # fmt: skip
    """This worker's clients follow the stream from the common start until the end marker."""
    clients = int(spec["per_worker"][index])
    timeout_s = float(spec["timeout_s"])
    child = sse_bench._ChildSpec(url=target.endpoint(stream_path(spec)), headers=target.auth_headers(),
                                 clients=clients, token=str(spec["token"]),
                                 timeout_s=3 * timeout_s + int(spec["messages"]) * float(spec["interval_s"]))  # fmt: skip
    with WorkerPool(sse_bench._client_worker, [child], name="sse-clients", counters=COUNTERS, mode="threads",
                    gate_timeout=600.0) as pool:  # fmt: skip

        def progress() -> dict[str, int]:
            return {c: pool.total(c) for c in COUNTERS}

        box.values.update({c: 0 for c in COUNTERS})
        pool.start(gate=gate)
        t0 = time.monotonic()
        while time.monotonic() - t0 < child.timeout_s + 30:
            box.values.update(progress())
            if box.values["done"] + box.values["refused"] + box.values["failed"] >= clients:
                break
            pool.check()
            time.sleep(0.1)
        (report,) = pool.collect(timeout=30.0, stop=True)
    box.values.update(progress())
    report.records = [asdict(r) for r in report.records]
    report.counts.update({"clients": clients, **{f"sse/{c}": int(box.values[c]) for c in COUNTERS}})
    return report


def _settled(coordinator: Coordinator) -> tuple[int, dict[str, int]]:
    totals = {c: 0 for c in COUNTERS}
    for name in coordinator.names:
        beat = coordinator.swarm.beat_of(name) or {}
        for c in COUNTERS:
            totals[c] += int((beat.get("progress") or {}).get(c, 0) or 0)
    return totals["ready"] + totals["refused"] + totals["failed"], totals


def drive(target: Target, coordinator: Coordinator, spec: Mapping[str, Any], *,
          on_progress: Callable[[str], object] | None = None) -> dict[str, Any]:  # fmt: skip
    """The coordinator's writer: primers until every client is subscribed, the measured messages, the end.

    Returns ``{"sent": {seq: sent_ns}, "ready_s", "send_s", "errors", "subscribed": counts}``.
    """
    total = int(spec["clients"])
    timeout_s = float(spec["timeout_s"])
    source = sse_bench._PostSource(target, str(spec["project"]), str(spec["task"]), str(spec["token"]), timeout_s)
    say = on_progress or (lambda _text: None)

    async def main() -> dict[str, Any]:
        t0 = time.monotonic()
        deadline = t0 + timeout_s + max(0.0, coordinator.start_at - time.time())
        k = 0
        settled, totals = 0, {}
        last = 0.0
        try:
            while time.monotonic() < deadline:
                settled, totals = await asyncio.to_thread(_settled, coordinator)
                if settled >= total:
                    break
                k += 1
                await source.primer(k)
                await asyncio.sleep(sse_bench.PRIMER_INTERVAL_S)
                if time.monotonic() - last >= sse_bench.PROGRESS_EVERY_S:
                    last = time.monotonic()
                    say(f"    swarm: {totals.get('ready', 0)} of {total} SSE clients subscribed")
            t1 = time.monotonic()
            sent: dict[int, int] = {}
            if totals.get("ready"):
                sent = await sse_bench._paced(source, int(spec["messages"]), float(spec["interval_s"]), None)
            t2 = time.monotonic()
            await source.end(len(sent))
        finally:
            await source.close()
        return {"sent": sent, "ready_s": t1 - t0, "send_s": t2 - t1, "errors": list(source.errors[:3]),
                "subscribed": totals}  # fmt: skip

    return asyncio.run(main())


def result(target: Target, spec: Mapping[str, Any], merged: MergedReports, writer: Mapping[str, Any]
           ) -> sse_bench.SSEResult:  # fmt: skip
    """Every client's delivery checked against the bus file order, latency merged exactly."""
    for r in merged.reports:  # records arrived as JSON: rebuild the client records
        r.records = [sse_bench.ClientRecord(**d) if isinstance(d, dict) else d for d in r.records]
    in_bus = sse_bench._bus_events(target, str(spec["project"]), str(spec["task"]), str(spec["token"]))
    run = sse_bench._Run(dict(writer["sent"]), merged.reports, float(writer["ready_s"]), float(writer["send_s"]), 0.0)
    notes = [f"POST errors: {writer['errors']}"] if writer.get("errors") else []
    notes.append("latency: receive time in the worker minus send time in the coordinator (wall clocks; "
                 "across hosts they must be synchronised)")  # fmt: skip
    return sse_bench._result(run, context=f"{spec['clients']} clients in {merged.expected} workers", stream="messages",
                             path=stream_path(spec), mode=sse_bench._PostSource.mode, clients=int(spec["clients"]),
                             expected=in_bus, bus_lost=len(set(writer["sent"]) - set(in_bus)), notes=notes)  # fmt: skip
