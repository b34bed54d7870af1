"""Server-Sent Events: delivery latency of run-stream log lines and bus messages, many clients, order."""

from __future__ import annotations

from datetime import timedelta

from _perf_base import CHART_TAG, chart_percentiles, chart_series, figure, require_target, seconds
from robot.api import logger
from robot.api.deco import keyword, library

from conductor_perf.bench import sse_bench
from conductor_perf.wording import plural


def _console(text: str) -> None:
    logger.console(f"    {text}")


@library(scope="SUITE", auto_keywords=False)
class SSELibrary:
    """Measures how fast and how completely the SUT's SSE streams deliver events to their clients.

    = Stamped events =

    Every measured event carries its send time: a line ``sse-perf <token> event <seq> <unix ns>``
    appended (and fsynced) to a running stub run's ``agent-stdout.txt``, or the same text as the
    body of a message posted with ``POST /api/v1/messages``. Latency is each client's receive time
    minus that send time. Without the runs root, the stub agent prints ``line <i> <unix ns>`` lines
    itself instead (``STUB_STDOUT_LINES``), so the run-stream tests still run against an external
    server.

    = Every client subscribed first =

    The real server sends no backlog on run streams and holds its response head back until a
    stream's first event, so a client's HTTP answer does not prove it is subscribed. Primer events
    are sent until every client received one or was refused (HTTP 429 above the real server's
    ``max_clients_per_run``, 10 by default) -- only then are the measured events sent. Refused
    clients are reported by `Get Refused SSE Clients`, never hidden.

    = Clients =

    The clients are asyncio SSE clients in ``processes`` forked processes (one by default); the
    writer runs in the Robot process. Each client process checks itself (event-loop lag, CPU while
    events arrive): when the clients were the bottleneck, a missed latency target is reported as an
    invalid measurement, not as a miss of the SUT. Latency histograms of the processes are merged
    exactly.

    Example:
    | `Measure Log Delivery Latency`    lines=50    clients=100
    | `Get Refused SSE Clients`    ==    0
    | `Every SSE Client Should Have Received Every Event Once In Order`
    | `Get SSE Delivery Latency`    p95    <    200
    """

    def __init__(self) -> None:
        self._result: sse_bench.SSEResult | None = None
        self._charted = False
        self._bus: tuple[str, str] | None = None
        self._history = 0

    def _set(self, result: sse_bench.SSEResult) -> float:
        self._result = result
        self._charted = False
        logger.info(result.describe())
        for sample in result.refusal_samples():
            logger.info(f"refused or failed client: {sample}")
        p95 = result.summary()["p95"]
        return float(p95) if p95 is not None else float("nan")

    @keyword
    def measure_log_delivery_latency(self, lines: int = 50, *, clients: int = 1,
                                     interval: timedelta = timedelta(milliseconds=20),
                                     timeout: timedelta = timedelta(seconds=60), processes: int = 1) -> float:  # fmt: skip
        """Append ``lines`` stamped lines to a running stub run while ``clients`` follow its stream.

        Starts a long-lived stub run (``POST /api/v1/tasks``), waits until ``GET /api/v1/runs/{id}``
        answers 200, subscribes the clients to ``/api/v1/runs/{id}/stream``, appends one line every
        ``interval`` and stops the task at the end. Returns the p95 delivery latency in ms.

        Example:
        | ${p95} =    `Measure Log Delivery Latency`    lines=50    clients=1    interval=20 ms    timeout=60 s
        """
        target = require_target()
        logger.console(
            f"\n    SSE run stream: {plural(lines, 'line')}, {plural(clients, 'client')}, one every {seconds(interval) * 1000:g} ms"
        )
        return self._set(sse_bench.measure_log_delivery(target, lines=lines, clients=clients,
                                                        interval_s=seconds(interval), timeout_s=seconds(timeout),
                                                        processes=processes, on_progress=_console))  # fmt: skip

    @keyword
    def create_message_bus_history(self, messages: int = 1000, *, writers: int = 8,
                                   timeout: timedelta = timedelta(seconds=60)) -> int:  # fmt: skip
        """Post ``messages`` plain messages to a fresh task bus that later message-stream tests use.

        Returns the number of messages in the history.

        Example:
        | `Create Message Bus History`    messages=1000
        """
        target = require_target()
        self._bus = sse_bench.new_bus_task()
        project, task = self._bus
        logger.console(f"\n    bus history: posting {plural(messages, 'message')} to {project}/{task}")
        self._history = sse_bench.seed_bus_history(target, project, task, messages, writers=writers,
                                                   timeout_s=seconds(timeout))  # fmt: skip
        figure(
            "sse message bus history", self._history, "messages", details={"project": project, "task": task}
        )
        return self._history

    @keyword
    def measure_message_delivery_latency(self, messages: int = 50, *, clients: int = 100,
                                         interval: timedelta = timedelta(milliseconds=20),
                                         timeout: timedelta = timedelta(seconds=60), processes: int = 1) -> float:  # fmt: skip
        """Post ``messages`` stamped messages one every ``interval`` while ``clients`` follow the bus stream.

        Uses the bus of `Create Message Bus History` (a fresh empty bus without it). Returns the p95
        delivery latency in ms over every message of every client.

        Example:
        | `Create Message Bus History`    messages=1000
        | ${p95} =    `Measure Message Delivery Latency`    messages=50    clients=100
        """
        target = require_target()
        project, task = self._bus or sse_bench.new_bus_task()
        lead = "" if self._history else "\n"  # after the history keyword the console line is already new
        logger.console(f"{lead}    SSE message stream: {plural(messages, 'message')}, {plural(clients, 'client')}, "
                       f"bus history {self._history}")  # fmt: skip
        return self._set(sse_bench.measure_message_delivery(target, project, task, messages=messages, clients=clients,
                                                            interval_s=seconds(interval), history=self._history,
                                                            timeout_s=seconds(timeout), processes=processes,
                                                            on_progress=_console))  # fmt: skip

    @keyword
    def measure_messages_in_flight(self, messages: int = 1000, *, clients: int = 10, writers: int = 10,
                                   timeout: timedelta = timedelta(seconds=60), processes: int = 1) -> float:  # fmt: skip
        """``writers`` connections post ``messages`` messages as fast as they can while ``clients`` listen.

        Uses a fresh task bus; the expected order is the bus file order read back with
        ``GET /api/v1/messages``. Returns the seconds from the first post until every client had
        every message (or gave up).

        Example:
        | `Measure Messages In Flight`    messages=1000    clients=10    writers=10
        """
        target = require_target()
        project, task = sse_bench.new_bus_task("flight")
        logger.console(
            f"\n    SSE messages in flight: {plural(messages, 'message')} by {plural(writers, 'writer')}, {plural(clients, 'client')}"
        )
        r = sse_bench.measure_messages_in_flight(target, project, task, messages=messages, clients=clients,
                                                 writers=writers, timeout_s=seconds(timeout), processes=processes,
                                                 on_progress=_console)  # fmt: skip
        self._set(r)
        return r.send_s + r.drain_s

    def _require(self) -> sse_bench.SSEResult:
        if self._result is None:
            raise AssertionError("no SSE measurement yet: call a 'Measure ...' keyword of SSELibrary first")
        return self._result

    def _invalid(self) -> str:
        reason = self._require().saturation_reason
        return f"SSE clients saturated ({reason})" if reason else ""

    @keyword(tags=[CHART_TAG])
    def get_sse_delivery_latency(self, percentile: str = "p95", op: str | None = None,
                                 expected: float | None = None) -> float:  # fmt: skip
        """A delivery-latency figure in ms (``p50``, ``p90``, ``p95``, ``p99``, ``max``) of the last measurement.

        Logs the per-event latency over time and the percentile curve with the first call.

        Example:
        | `Get SSE Delivery Latency`    p95    <    200
        """
        r = self._require()
        summary = r.summary()
        if percentile not in summary or percentile in ("count", "mean"):
            raise AssertionError(f"unknown percentile {percentile!r}: use p50, p90, p95, p99, p99.9 or max")
        value = summary[percentile]
        if value is None:
            raise AssertionError(f"{r.label}: no event was delivered to any client, so there is no latency")
        series = r.latency_series()
        if not self._charted:
            self._charted = True
            chart_series(f"{r.label}: per-event latency", series, "time since the first event (s)",
                         "delivery latency (ms)", target=expected,
                         target_label=None if expected is None else f"target {expected:g} ms")  # fmt: skip
            chart_percentiles(f"{r.label}: latency percentiles", summary, expected)
        return figure(r.metric(f"delivery latency {percentile}"), float(value), "ms", op, expected, details=r.details(),
                      histogram=r.histogram.encode(), series=series, invalid_reason=self._invalid())  # fmt: skip

    @keyword
    def get_refused_sse_clients(self, op: str | None = None, expected: int | None = None) -> int:
        """Clients of the last measurement the SUT refused with HTTP 429.

        The real server allows ``api.sse.max_clients_per_run`` (10 by default) subscribers per run
        stream and answers 429 to the others; the message stream has no such limit. Clients that
        failed otherwise (no answer, another status) count as missing every event instead.

        Example:
        | `Get Refused SSE Clients`    ==    0
        """
        r = self._require()
        value = r.refused
        if r.refused:
            logger.warn(f"{r.label}: {r.refused} of {plural(r.clients, 'client')} were refused with HTTP 429 "
                        f"({'; '.join(r.refusal_samples(1))}); the real server limits each run stream to "
                        f"api.sse.max_clients_per_run subscribers (10 by default)")  # fmt: skip
        figure(r.metric("clients refused (HTTP 429)"), value, "clients", op, expected,
               details={"clients": r.clients, "accepted": r.accepted, "refused_429": r.refused, "failed": r.failed,
                        "samples": r.refusal_samples()})  # fmt: skip
        return value

    @keyword
    def every_sse_client_should_have_received_every_event_once_in_order(self) -> None:
        """Fail unless every client that was not refused got every event exactly once, in the expected order.

        The expected order is the write order of the log lines, or the bus file order of the
        messages (``GET /api/v1/messages``). Missing, duplicated and out-of-order events are each a
        figure that must be 0.

        Example:
        | `Every SSE Client Should Have Received Every Event Once In Order`
        """
        r = self._require()
        if not r.expected:
            raise AssertionError(f"{r.label}: no event was sent (no client subscribed within the time-out)")
        if not r.deliveries:
            raise AssertionError(f"{r.label}: every client was refused, so none can have received the events")
        logger.info(f"{r.label}: {r.complete_clients} of {plural(len(r.deliveries), 'client')} received all {len(r.expected)} "
                    f"events once in order")  # fmt: skip
        details = r.details()
        checks = [(r.metric(f"events {name}"), value, "events") for name, value in
                  (("missing", r.missing), ("duplicated", r.duplicated), ("out of order", r.out_of_order),
                   ("unexpected", r.unexpected))]  # fmt: skip
        if r.bus_lost:
            checks.append((r.metric("acknowledged messages missing from the bus"), r.bus_lost, "messages"))
        failures = []
        for name, value, unit in checks:  # record every figure, then fail with all misses
            try:
                figure(name, value, unit, "==", 0, details=details)
            except AssertionError as exc:
                failures.append(str(exc))
        if failures:
            raise AssertionError("; ".join(failures))
