"""Swarms: N pabot processes, each one worker's share of a load, and the coordinator's one exact figure."""

from __future__ import annotations

import html
import os
import socket
from datetime import timedelta
from typing import Any

from _perf_base import (
    CHART_TAG,
    chart_percentiles,
    chart_series,
    figure,
    require_root,
    robot_var,
    seconds,
    skip,
)
from robot.api import logger
from robot.api.deco import keyword, library
from robot.libraries.BuiltIn import BuiltIn

from conductor_perf import target as sut
from conductor_perf.measure.workers import MergedReports
from conductor_perf.swarm import scenarios, sse_share
from conductor_perf.swarm.board import BoardError, PabotLibBoard
from conductor_perf.swarm.protocol import (
    BARRIER_TIMEOUT_S,
    Coordinator,
    Swarm,
    SwarmError,
    SwarmMember,
    SwarmOutcome,
)

NO_SWARM = ("this suite is one swarm: its workers are pabot processes that meet on a PabotLib server, "
            "started by its runner: make swarm SCENARIO=<scenario> WORKERS=<n> (python -m conductor_perf.swarm); "
            "see the README section 'Swarms'")  # fmt: skip
UNITS = {"bus": "msg/s", "bus-http": "msg/s", "api": "req/s"}
PROGRESS = {"bus": ("messages", "messages"), "bus-http": ("requests", "requests"), "api": ("requests", "requests"),
            "tasks": ("submitted", "tasks submitted"), "sse": ("done", "SSE clients done")}  # fmt: skip
LATENCY = {"bus": ("append", "bus append"), "bus-http": ("latency", "POST /api/v1/messages"),
           "api": ("latency", "request"), "tasks": ("submission", "POST /api/v1/tasks"),
           "sse": ("latency", "SSE message delivery")}  # fmt: skip


def _board_and_run() -> tuple[Any, str]:
    uri = str(robot_var("${PABOTLIBURI}", "") or "")
    run = str(robot_var("${SWARM_RUN}", "") or "")
    if not uri or not run:
        raise AssertionError(NO_SWARM)
    caller = str(robot_var("${CALLER_ID}", "") or "") or f"swarm-{os.getpid()}"
    return PabotLibBoard.from_uri(uri, caller=caller), run


@library(scope="GLOBAL", auto_keywords=False)
class SwarmLibrary:
    """One load spread over N pabot processes (workers), merged exactly by one coordinator.

    = The swarm =

    A swarm suite (``swarm/*.robot``) holds two kinds of test: the *worker test* (tag
    ``swarm-worker``), one worker's share of the load, which pabot runs N times at once, and the
    *coordinator test* (tag ``swarm-coordinator``), which publishes the spec, gives the common
    start once every worker joined, collects every worker's report and checks the target on
    the exact merge. They meet on a PabotLib server (``${PABOTLIBURI}``), so workers may run on
    other machines. ``make swarm`` (``python -m conductor_perf.swarm``) starts the SUT, the
    PabotLib server, the coordinator and the workers; see ``docs/swarms.md``.

    = Failures =

    A worker that cannot reach the SUT or the board, fails, dies or hangs is named by the
    coordinator with its reason (`Collect The Swarm Reports` fails); a figure is never computed
    from fewer workers than the swarm has.

    Example (a worker test, then the coordinator test):
    | `Receive The Swarm Spec As A Worker`
    | `Append Messages To The Task Bus From The Common Start`
    | `Hand In The Worker Report`
    | [Teardown]    `Leave The Swarm`
    |
    | `Open The Swarm`    bus    duration=10 s
    | `Start The Swarm When Every Worker Has Joined`
    | `Collect The Swarm Reports`
    | `Get Swarm Rate`    >    1000
    """

    def __init__(self) -> None:
        self._member: SwarmMember | None = None
        self._target: sut.Target | None = None
        self._spec: dict[str, Any] = {}
        self._report = None
        self._handed_in = False
        self._coordinator: Coordinator | None = None
        self._cspec: dict[str, Any] = {}
        self._outcome: SwarmOutcome | None = None
        self._merged: MergedReports | None = None
        self._load = None
        self._sse = None

    # ------------------------------------------------------------------------------------------
    # the worker
    # ------------------------------------------------------------------------------------------
    @keyword
    def receive_the_swarm_spec_as_a_worker(self, *, timeout: timedelta = timedelta(seconds=BARRIER_TIMEOUT_S)) -> str:
        """Find this worker's swarm run on the board, attach to the SUT and read the coordinator's spec.

        The worker is ``${SWARM_WORKER}`` of ``${SWARM_RUN}`` on the PabotLib server ``${PABOTLIBURI}``
        (the runner's argument files set them); the SUT is ``CONDUCTOR_URL`` (and ``CONDUCTOR_ROOT``
        for file-level scenarios). A SUT that does not answer is reported to the coordinator as
        this worker's failure. Returns the scenario.

        Example:
        | `Receive The Swarm Spec As A Worker`
        """
        board, run = _board_and_run()
        name = str(robot_var("${SWARM_WORKER}", "") or "")
        if not name:
            raise AssertionError(f"no worker name: ${{SWARM_WORKER}} is not set ({NO_SWARM})")
        host = str(robot_var("${SWARM_HOST}", "") or "") or socket.gethostname().split(".")[0]
        try:
            self._member = member = SwarmMember(Swarm(board, run), name, host=host)
            roster = member.check_roster()
        except (BoardError, SwarmError) as exc:
            raise AssertionError(f"worker {name}: {exc}") from None
        url = str(robot_var("${CONDUCTOR_URL}", "") or "") or roster.url
        root = str(robot_var("${CONDUCTOR_ROOT}", "") or "") or roster.root
        api_key = str(robot_var("${CONDUCTOR_API_KEY}", "") or "")
        try:
            self._target = sut.attach(url, root=root or None, api_key=api_key)
        except sut.TargetError as exc:
            self._fail(f"cannot reach the SUT: {exc}")
        try:
            self._spec = member.wait_for_spec(seconds(timeout))
        except (BoardError, SwarmError) as exc:
            self._fail(str(exc))
        logger.info(f"worker {name} on {host} in swarm run {run} ({board.describe()}): {self._spec}")
        return str(self._spec.get("scenario", ""))

    def _fail(self, reason: str) -> None:
        if self._member is not None and not self._handed_in:
            self._member.fail(reason)
            self._handed_in = True
        raise AssertionError(f"worker {self._member.name if self._member else '?'}: {reason}")

    def _run_share(self, scenario: str) -> None:
        member = self._member
        if member is None or self._target is None:
            raise AssertionError("call 'Receive The Swarm Spec As A Worker' first")
        if self._spec.get("scenario") != scenario:
            self._fail(f"this worker test runs the {scenario} scenario, but the coordinator's spec is "
                       f"{self._spec.get('scenario')!r}")  # fmt: skip
        box = scenarios.ProgressBox()
        member.set_progress(box)

        def gate() -> float:
            member.join()
            return member.wait_for_start()

        index = list(self._spec["names"]).index(member.name)
        try:
            self._report = scenarios.run_share(self._target, self._spec, index, gate=gate, progress=box)
        except Exception as exc:  # noqa: BLE001 - every failure goes to the coordinator with its reason
            self._fail(f"{type(exc).__name__}: {exc}")
        logger.info(f"worker {member.name}: {self._report.counts} (started {member.late_s * 1000:.1f} ms after "
                    "the common start)")  # fmt: skip

    @keyword
    def append_messages_to_the_task_bus_from_the_common_start(self) -> None:
        """``bus``: append FACT messages to the swarm's task bus (file level: ``O_APPEND`` + ``flock``) for the window.

        The bus file is under the SUT's runs root. The worker joins the barrier when ready and
        appends from the common start until the window ends, recording every append.

        Example:
        | `Append Messages To The Task Bus From The Common Start`
        """
        self._run_share("bus")

    @keyword
    def post_messages_to_the_task_bus_from_the_common_start(self) -> None:
        """``bus-http``: ``POST /api/v1/messages`` to the swarm's task bus, one after another, for the window.

        Example:
        | `Post Messages To The Task Bus From The Common Start`
        """
        self._run_share("bus-http")

    @keyword
    def load_the_endpoint_from_the_common_start(self) -> None:
        """``api``: a closed loop on the spec's endpoint (its connections opened first) for the window.

        Example:
        | `Load The Endpoint From The Common Start`
        """
        self._run_share("api")

    @keyword
    def submit_tasks_at_the_common_start(self) -> None:
        """``tasks``: this worker's share of the task submissions, sent at once at the common start.

        Example:
        | `Submit Tasks At The Common Start`
        """
        self._run_share("tasks")

    @keyword
    def follow_the_message_stream_until_the_end_marker(self) -> None:
        """``sse``: this worker's share of the SSE clients follow the task bus's message stream until the end marker.

        The coordinator posts the stamped messages once every client of every worker is subscribed.

        Example:
        | `Follow The Message Stream Until The End Marker`
        """
        self._run_share("sse")

    @keyword
    def hand_in_the_worker_report(self) -> None:
        """Post this worker's report (counts, HDR histograms in compressed encoding) for the coordinator.

        Example:
        | `Hand In The Worker Report`
        """
        if self._member is None or self._report is None:
            raise AssertionError("no worker report: the worker's share has not run")
        try:
            self._member.hand_in(self._report)
        except (BoardError, SwarmError) as exc:
            raise AssertionError(f"worker {self._member.name} could not hand in its report: {exc}") from None
        self._handed_in = True
        BuiltIn().set_test_message(f"worker {self._member.name}: " + ", ".join(
            f"{k} {v}" for k, v in self._report.counts.items() if "/" not in k))  # fmt: skip

    @keyword
    def leave_the_swarm(self) -> None:
        """Teardown of a worker test: a worker that failed before handing in tells the coordinator why.

        Example:
        | [Teardown]    `Leave The Swarm`
        """
        member = self._member
        if member is not None and not self._handed_in:
            message = str(robot_var("${TEST MESSAGE}", "") or "") or "the worker test failed"
            member.fail(message)
            self._handed_in = True
        if member is not None:
            member.close()

    # ------------------------------------------------------------------------------------------
    # the coordinator
    # ------------------------------------------------------------------------------------------
    @keyword
    def open_the_swarm(self, scenario: str, *, duration: timedelta = timedelta(seconds=10), path: str = "/api/v1/health",
                       connections: int = 1, tasks: int = 100, work_ms: int = 10,
                       timeout: timedelta = timedelta(minutes=2), clients: int = 100, messages: int = 50,
                       interval: timedelta = timedelta(milliseconds=20)) -> int:  # fmt: skip
        """Publish the spec of this swarm run for its workers; returns how many workers the swarm has.

        The swarm run is ``${SWARM_RUN}`` on ``${PABOTLIBURI}`` (set by the runner). Arguments are
        those of the scenario (see ``conductor_perf.swarm.scenarios.make_spec``).

        Example:
        | `Open The Swarm`    bus    duration=10 s
        | `Open The Swarm`    api    duration=10 s    path=/api/v1/tasks    connections=2
        """
        board, run = _board_and_run()
        try:
            swarm = Swarm(board, run)
            self._coordinator = coordinator = Coordinator(swarm)
            roster = coordinator.roster
            if roster.scenario != scenario:
                raise AssertionError(f"swarm run {run} is a {roster.scenario} swarm, this test opens {scenario}")
            self._cspec = scenarios.make_spec(scenario, workers=roster.workers, duration_s=seconds(duration),
                                              path=path, connections=connections, tasks=tasks, work_ms=work_ms,
                                              timeout_s=seconds(timeout), clients=clients, messages=messages,
                                              interval_s=seconds(interval))  # fmt: skip
            coordinator.open(self._cspec)
        except (BoardError, SwarmError, ValueError) as exc:
            raise AssertionError(f"swarm run {run}: {exc}") from None
        self._outcome = self._merged = self._load = None
        logger.info(f"swarm run {run} on {board.describe()}: {roster.workers} workers {', '.join(roster.names)}; "
                    f"spec {self._cspec}")  # fmt: skip
        return roster.workers

    def _require_coordinator(self) -> Coordinator:
        if self._coordinator is None:
            raise AssertionError("call 'Open The Swarm' first")
        return self._coordinator

    @keyword
    def start_the_swarm_when_every_worker_has_joined(self, *, timeout: timedelta = timedelta(seconds=BARRIER_TIMEOUT_S)
                                                     ) -> None:  # fmt: skip
        """Wait until every worker joined the start barrier, then give the common start.

        Fails (and calls the run off, so every waiting worker stops) when a worker reports a
        failure first, or when the barrier is not full within ``timeout``: the message names every
        missing worker and whether a host claimed it.

        Example:
        | `Start The Swarm When Every Worker Has Joined`    timeout=60 s
        """
        coordinator = self._require_coordinator()
        seen = [-1]

        def tick(joined: int, expected: int) -> None:
            if joined != seen[0]:
                seen[0] = joined
                logger.console(f"    swarm: {joined} of {expected} workers at the start barrier")

        try:
            coordinator.wait_for_workers(seconds(timeout), on_tick=tick)
        except (BoardError, SwarmError) as exc:
            failures = getattr(exc, "failures", {})
            try:
                figure("swarm workers at the start barrier", len(coordinator.names) - len(failures), "workers", "==",
                       len(coordinator.names), details={"failures": failures, "scenario": self._cspec.get("scenario")})  # fmt: skip
            except AssertionError:
                pass  # the figure is recorded as failed; the message below names every worker
            raise AssertionError(str(exc)) from None
        coordinator.start()
        logger.info(f"every worker joined ({', '.join(f'{n} on {h}' for n, h in coordinator.hosts.items())}); "
                    "common start given")  # fmt: skip

    @keyword(tags=[CHART_TAG])
    def collect_the_swarm_reports(self, *, grace: timedelta = timedelta(seconds=30)) -> int:
        """Wait for every worker's report (the window plus ``grace``), merge them exactly; returns the count.

        Fails, naming each worker and its reason, when any worker failed, fell silent (no heartbeat:
        died or hung) or handed in nothing: the merge of the others is logged marked INCOMPLETE
        and no figure of the swarm is recorded from it.

        Example:
        | `Collect The Swarm Reports`
        """
        coordinator = self._require_coordinator()
        spec = self._cspec
        key, unit = PROGRESS[spec["scenario"]]

        def tick(beats: dict[str, dict[str, Any]]) -> None:
            loading = [b for b in beats.values() if b.get("phase") == "loading"]
            done = sum(int((b.get("progress") or {}).get(key, 0) or 0) for b in beats.values())
            logger.console(f"    swarm: {len(loading)} of {len(coordinator.names)} workers loading, {done} {unit} so far")

        window = float(spec.get("duration_s", 0.0)) if spec["scenario"] not in ("tasks", "sse") else 0.0
        self._sse = None
        writer: dict[str, Any] = {}
        try:
            if spec["scenario"] == "sse":  # the coordinator is the writer: primers, messages, end marker
                writer = sse_share.drive(require_target_of(), coordinator, spec, on_progress=logger.console)
                logger.info(f"posted {len(writer['sent'])} stamped messages after {writer['ready_s']:.1f} s of "
                            f"subscribing ({writer['subscribed']})")  # fmt: skip
            outcome = coordinator.collect(window, grace_s=seconds(grace), on_tick=tick)
        except (BoardError, SwarmError) as exc:
            raise AssertionError(str(exc)) from None
        self._outcome = outcome
        merged = outcome.merged()
        self._log_workers(outcome, merged)
        try:
            figure("swarm workers reported", merged.workers, "workers", "==", merged.expected,
                   details={"hosts": outcome.hosts, "failures": outcome.failures, "scenario": spec["scenario"]})  # fmt: skip
        except AssertionError:
            raise AssertionError(f"swarm incomplete, no figure of it is reported: {outcome.describe()}") from None
        self._merged = merged
        if spec["scenario"] in ("bus-http", "api"):
            self._load = scenarios.load_result(spec, require_target_of().url, merged)
            logger.info(self._load.describe())
        if spec["scenario"] == "sse":
            self._sse = sse_share.result(require_target_of(), spec, merged, writer)
            logger.info(self._sse.describe())
        return merged.workers

    def _log_workers(self, outcome: SwarmOutcome, merged: MergedReports) -> None:
        spec = self._cspec
        window = float(spec.get("duration_s", 0.0)) or 1.0
        main = {"bus": "messages", "bus-http": "ok", "api": "requests", "tasks": "submitted", "sse": "clients"}[
            spec["scenario"]]
        hist_name = LATENCY.get(spec["scenario"], ("latency", ""))[0]
        rows = []
        for name in outcome.names:
            r = outcome.reports.get(name)
            host = outcome.hosts.get(name, "")
            if r is None:
                rows.append(f"<tr><td>{name}</td><td>{html.escape(host)}</td><td colspan=5>"
                            f"{html.escape(outcome.failures.get(name, 'no report'))}</td></tr>")  # fmt: skip
                continue
            n = r.counts.get(main, 0)
            p95 = r.histogram(hist_name).percentile_ms(95) if hist_name in r.histograms else float("nan")
            rows.append(f"<tr><td>{name}</td><td>{html.escape(host)}</td><td>{n}</td><td>{n / window:.0f}</td>"
                        f"<td>{p95:.2f}</td><td>{r.cpu_percent:.0f}</td>"
                        f"<td>{r.maxima.get('start_late_ms', 0):.1f}</td></tr>")  # fmt: skip
        head = ("<tr><th>worker</th><th>host</th><th>" + main + "</th><th>per s</th><th>p95 ms</th>"
                "<th>CPU %</th><th>started late ms</th></tr>")  # fmt: skip
        title = "swarm workers" + ("" if outcome.complete else f" (INCOMPLETE: {outcome.describe()})")
        logger.info(f"<b>{html.escape(title)}</b><table border=1>{head}{''.join(rows)}</table>", html=True)
        total = merged.count(main)
        parts = " + ".join(f"{r.worker} {r.counts.get(main, 0)}" for r in merged.reports)
        logger.info(f"merged {merged.workers} of {merged.expected} reports{'' if merged.complete else ' (INCOMPLETE)'}: "
                    f"{total} {main} = {parts}")  # fmt: skip
        series = scenarios.worker_rates(merged.reports)
        if series:
            chart_series(f"each worker's rate ({spec['scenario']}, {merged.expected} workers)", series, "time (s)",
                         f"{main} per second")  # fmt: skip

    def _require_merged(self) -> MergedReports:
        if self._merged is None:
            raise AssertionError("no swarm reports collected: call 'Collect The Swarm Reports' first")
        return self._merged

    def _details(self) -> dict[str, Any]:
        merged = self._require_merged()
        assert self._outcome is not None
        return {"scenario": self._cspec["scenario"], "workers": merged.expected, "hosts": self._outcome.hosts,
                "per_worker": {r.worker: {k: v for k, v in r.counts.items() if "/" not in k} for r in merged.reports},
                "start_late_ms_max": merged.maxima.get("start_late_ms"), "spec": self._cspec}  # fmt: skip

    def _invalid(self) -> str:
        if self._load is not None and self._load.saturated:
            return f"load generator saturated ({self._load.saturation_reason})"
        return ""

    @keyword(tags=[CHART_TAG])
    def get_swarm_rate(self, op: str | None = None, expected: float | None = None) -> float:
        """The swarm's rate over every worker (msg/s or req/s); asserts it when given an operator and target.

        ``bus``: messages appended by all writers / the window; ``bus-http``, ``api``: requests
        finished by all workers / the window (the exact merge of their histograms and counts).

        Example:
        | `Get Swarm Rate`    >    1000
        """
        merged = self._require_merged()
        scenario = self._cspec["scenario"]
        if scenario not in UNITS:
            raise AssertionError(f"the {scenario} scenario has no rate")
        unit = UNITS[scenario]
        if self._load is not None:
            value, hist = self._load.rate, self._load.histogram.encode()
        else:
            value, hist = merged.count("messages") / float(self._cspec["duration_s"]), merged.histogram("append").encode()
        series = {"all workers": [[float(k), float(v)] for k, v in sorted(
            (int(s), n) for s, n in merged.counts_under("timeline").items())]}  # fmt: skip
        chart_series(f"swarm of {merged.expected}: {unit} of all workers", series, "time (s)", unit,
                     target=expected, target_label="target")  # fmt: skip
        name = {"bus": "swarm bus write throughput", "bus-http": "swarm message posting rate",
                "api": f"swarm {self._cspec.get('method', 'GET')} {self._cspec.get('path', '')} rate"}[scenario]  # fmt: skip
        return figure(name, value, unit, op, expected, details=self._details(), histogram=hist,
                      samples=[p[1] for p in series["all workers"]][1:-1], invalid_reason=self._invalid())  # fmt: skip

    @keyword(tags=[CHART_TAG])
    def get_swarm_latency(self, percentile: str = "p95", op: str | None = None, expected: float | None = None) -> float:
        """A latency percentile (ms) over every request (or append, or submission) of every worker.

        Example:
        | `Get Swarm Latency`    p95    <    50
        """
        merged = self._require_merged()
        scenario = self._cspec["scenario"]
        if scenario not in LATENCY:
            raise AssertionError(f"the {scenario} scenario has no latency (see the SSE delivery keywords)")
        hist_name, what = LATENCY[scenario]
        if self._load is not None:
            hist = self._load.histogram
        elif self._sse is not None:
            hist = self._sse.histogram
        else:
            hist = merged.histogram(hist_name)
        summary = hist.summary()
        if percentile not in summary:
            raise AssertionError(f"unknown percentile {percentile!r}: use one of {', '.join(summary)}")
        chart_percentiles(f"swarm of {merged.expected}: {what} latency by percentile", summary, expected)
        return figure(f"swarm {what} latency {percentile}", summary[percentile], "ms", op, expected,
                      details={**self._details(), "latency_ms": summary}, histogram=hist.encode(),
                      invalid_reason=self._invalid())  # fmt: skip

    @keyword
    def get_swarm_error_percentage(self, op: str | None = None, expected: float | None = None) -> float:
        """Failed requests (non-2xx or no answer) of every worker, as a percentage.

        Example:
        | `Get Swarm Error Percentage`    <    1
        """
        merged = self._require_merged()
        if self._load is not None:
            value, requests, errors = self._load.error_percent, self._load.requests, self._load.errors
        else:
            requests = merged.count("submitted")
            errors = requests - merged.count("status/201")
            value = 100.0 * errors / requests if requests else 0.0
        for sample in merged.samples:
            logger.info(f"error sample: {sample}")
        return figure("swarm errors", value, "%", op, expected,
                      details={"requests": requests, "errors": errors, "workers": merged.expected})  # fmt: skip

    @keyword
    def swarm_bus_should_have_every_message_exactly_once(self) -> None:
        """Every message the workers appended (or got 201 for) is in the task bus exactly once, none torn.

        Needs the runs root (skipped without it). Example:
        | `Swarm Bus Should Have Every Message Exactly Once`
        """
        merged = self._require_merged()
        require_root()
        target = require_target_of()
        if self._cspec["scenario"] == "bus":
            integrity = scenarios.bus_integrity(target, self._cspec, merged)
        elif self._cspec["scenario"] == "bus-http":
            integrity = scenarios.http_bus_integrity(target, self._cspec, merged)
        else:
            raise AssertionError(f"the {self._cspec['scenario']} scenario writes no bus")
        logger.info(integrity.message)
        for name, value in (("swarm bus messages lost", integrity.lost),
                            ("swarm bus messages duplicated", integrity.duplicated),
                            ("swarm bus messages torn", integrity.torn)):  # fmt: skip
            figure(name, value, "messages", "==", 0,
                   details={"expected": integrity.expected, "found": integrity.found, "workers": merged.expected})  # fmt: skip

    @keyword
    def every_swarm_task_run_should_complete(self, *, timeout: timedelta = timedelta(minutes=2)) -> float:
        """Every run the swarm's submissions started finishes as ``completed`` within ``timeout``; returns the wall time in s.

        Example:
        | `Every Swarm Task Run Should Complete`    timeout=2 min
        """
        merged = self._require_merged()
        target = require_target_of()
        accepted = merged.count("status/201")
        done, pending, wall = scenarios.task_runs(target, merged, timeout_s=seconds(timeout))
        completed = sum(1 for d in done if d.status == "completed")
        logger.info(f"{accepted} runs accepted; {completed} completed, {len(done) - completed} failed, "
                    f"{len(pending)} unfinished after {wall:.1f} s")  # fmt: skip
        figure("swarm task runs completed", completed, "runs", "==", merged.count("submitted"),
               details={"accepted": accepted, "finished": len(done), "unfinished": len(pending),
                        "wall_s": round(wall, 3), "workers": merged.expected})  # fmt: skip
        return wall

    def _require_sse(self):
        self._require_merged()
        if self._sse is None:
            raise AssertionError(f"the {self._cspec['scenario']} scenario has no SSE clients")
        return self._sse

    @keyword
    def get_swarm_refused_sse_clients(self, op: str | None = None, expected: int | None = None) -> int:
        """SSE clients of every worker that the SUT refused with HTTP 429.

        Example:
        | `Get Swarm Refused SSE Clients`    ==    0
        """
        r = self._require_sse()
        figure("swarm SSE clients refused (HTTP 429)", r.refused, "clients", op, expected,
               details={"clients": r.clients, "accepted": r.accepted, "refused_429": r.refused, "failed": r.failed,
                        "samples": r.refusal_samples(), "workers": self._require_merged().expected})  # fmt: skip
        return r.refused

    @keyword
    def every_swarm_sse_client_should_have_received_every_message_once_in_order(self) -> None:
        """Every client of every worker that was not refused got every message once, in the bus file's order.

        Example:
        | `Every Swarm SSE Client Should Have Received Every Message Once In Order`
        """
        r = self._require_sse()
        if not r.expected:
            raise AssertionError("swarm SSE: no message was sent (no client subscribed within the time-out)")
        if not r.deliveries:
            raise AssertionError("swarm SSE: every client was refused, so none can have received the messages")
        logger.info(f"{r.complete_clients} of {len(r.deliveries)} clients received all {len(r.expected)} messages "
                    "once in order")  # fmt: skip
        checks = [(f"swarm SSE messages {name}", value) for name, value in
                  (("missing", r.missing), ("duplicated", r.duplicated), ("out of order", r.out_of_order),
                   ("unexpected", r.unexpected), ("acknowledged but not in the bus", r.bus_lost))]  # fmt: skip
        failures = []
        for name, value in checks:  # every figure is recorded, then all misses fail together
            try:
                figure(name, value, "messages", "==", 0, details=r.details())
            except AssertionError as exc:
                failures.append(str(exc))
        if failures:
            raise AssertionError("; ".join(failures))

    @keyword
    def attach_to_the_swarm_conductor(self, *, results_dir: str = "", profile: str = "") -> str:
        """The coordinator's SUT: the one the runner started (``CONDUCTOR_URL``), attached for figures and checks.

        Without a swarm run (plain robot) this fails with how to start one.

        Example:
        | [Setup]    `Attach To The Swarm Conductor`
        """
        _board_and_run()
        if not robot_var("${CONDUCTOR_URL}", ""):
            skip("no CONDUCTOR_URL: the swarm runner names the SUT it started")
        return str(BuiltIn().run_keyword("Start Or Attach Conductor", *(
            [f"results_dir={results_dir}"] if results_dir else []), *([f"profile={profile}"] if profile else [])))  # fmt: skip


def require_target_of() -> sut.Target:
    """The coordinator's SUT (from the run context)."""
    from _perf_base import require_target

    return require_target()
