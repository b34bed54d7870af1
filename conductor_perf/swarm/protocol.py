"""The swarm protocol: roster, claims, spec, start barrier, heartbeats and reports on a shared board.

A *swarm* is one measurement whose load comes from N worker processes (pabot processes here or on
other machines) that talk only through a :mod:`board <conductor_perf.swarm.board>`:

1. the runner publishes the **roster** (run id, scenario, the N worker names ``w01..wNN``, the
   SUT's URL and runs root) and each pabot invocation **claims** the names it will run;
2. the coordinator publishes the **spec** (what one worker's share is: the window, the bus task,
   the endpoint, ...);
3. each worker reads the spec, prepares (connections open), **joins** and waits at the **start
   barrier**; when every name has joined, the coordinator gives the **go** with a common start
   time a moment ahead, and every worker loads from that time for the same window. A barrier that
   does not fill within its timeout is **aborted** with the names that are missing, and every
   waiting worker fails with that reason;
4. while it works a worker posts a **heartbeat** every second; at the end it **hands in** its
   :class:`~conductor_perf.measure.workers.WorkerReport` (counts, HDR histograms in their
   compressed encoding) or the reason it **failed**;
5. the coordinator collects every report (:meth:`Coordinator.collect`), bounded by the window
   plus a grace, naming each worker that failed, fell silent or never reported, and merges them
   exactly (:func:`~conductor_perf.measure.workers.merge_reports`); a merge with fewer than N
   reports is marked incomplete.

Keys (all under ``swarm:<run>:``): ``roster``, ``claims``, ``spec``, ``status`` (name -> state),
``go``, ``beat:<name>``, ``report:<name>``; ``swarm:current`` names the newest run.

Example::

    swarm = Swarm.create(board, "bus", workers=2, url=target.url)
    names = swarm.claim(2, host="ci-1")                      # the runner, for its pabot
    coordinator = Coordinator(swarm)
    coordinator.open({"duration_s": 10})
    coordinator.wait_for_workers(timeout=30)                  # workers: member.join(); member.wait_for_start()
    coordinator.start()
    outcome = coordinator.collect(window_s=10)
    merged = outcome.merged()                                 # merged.complete is False if any is missing
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from ..measure.workers import MergedReports, WorkerReport, merge_reports
from .board import Board, BoardError

__all__ = [
    "BARRIER_TIMEOUT_S",
    "Coordinator",
    "HEARTBEAT_S",
    "Roster",
    "STALE_S",
    "Swarm",
    "SwarmError",
    "SwarmMember",
    "SwarmOutcome",
    "worker_names",
]

BARRIER_TIMEOUT_S = 60.0
"""How long the start barrier waits for every worker to join (Robot processes start slowly on a busy machine)."""
START_LEAD_S = 1.0
"""The go names a start this far ahead, so every worker sees it before the window opens."""
HEARTBEAT_S = 1.0
"""A worker posts its heartbeat this often."""
STALE_S = 10.0
"""A worker whose heartbeat has not changed for this long has died or hung."""
REPORT_GRACE_S = 30.0
"""After the window, how long the coordinator waits for the last reports."""
POLL_S = 0.1
"""How often the coordinator and waiting workers read the board."""
MAX_WORKERS = 256

JOINED, REPORTED, FAILED = "joined", "reported", "failed"


class SwarmError(RuntimeError):
    """The swarm cannot go on; ``str()`` is one line naming each worker concerned and why."""

    def __init__(self, message: str, failures: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.failures = dict(failures or {})


def worker_names(count: int) -> list[str]:
    """``w01 .. wNN`` (zero-padded to the width of ``count``, at least two digits)."""
    if not 1 <= count <= MAX_WORKERS:
        raise ValueError(f"a swarm has 1..{MAX_WORKERS} workers, got {count}")
    width = max(2, len(str(count)))
    return [f"w{i:0{width}d}" for i in range(1, count + 1)]


def _loads(text: str) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True)


@dataclass
class Roster:
    """Who is in a swarm run: its id, scenario, worker names and the SUT every worker loads."""

    run: str
    scenario: str
    names: list[str]
    url: str = ""
    root: str = ""
    created: float = field(default_factory=time.time)

    @property
    def workers(self) -> int:
        """How many workers the swarm expects."""
        return len(self.names)


class Swarm:
    """One swarm run on a board: the keys, and the reads and writes every role needs."""

    def __init__(self, board: Board, run: str) -> None:
        if not run or ":" in run:
            raise ValueError(f"a swarm run id is a non-empty word without ':', got {run!r}")
        self.board = board
        self.run = run

    def key(self, *parts: str) -> str:
        """``swarm:<run>:<part>:...``."""
        return ":".join(("swarm", self.run, *parts))

    # -- the runner --------------------------------------------------------------------------
    @classmethod
    def create(cls, board: Board, scenario: str, workers: int, *, url: str = "", root: str = "",
               run: str = "", current: bool = True) -> Swarm:  # fmt: skip
        """Publish a new run's roster (``workers`` names) and make it the board's current run.

        With ``current=False`` other hosts do not see it yet (claim this host's names first,
        then :meth:`make_current`), so the names a host asks for never depend on who was faster.
        """
        run = run or f"{int(time.time())}-{socket.gethostname().split('.')[0]}"
        swarm = cls(board, run)
        roster = Roster(run=run, scenario=scenario, names=worker_names(workers), url=url, root=root)
        board.set(swarm.key("roster"), _dumps(asdict(roster)))
        if current:
            swarm.make_current()
        return swarm

    def make_current(self) -> None:
        """Make this run the board's current one (the run ``join`` finds)."""
        self.board.set("swarm:current", self.run)

    @classmethod
    def current(cls, board: Board) -> Swarm:
        """The board's current run (:class:`SwarmError` when none was published)."""
        run = board.get("swarm:current")
        if not run:
            raise SwarmError(f"no swarm run on {board.describe()}: start the coordinator first (make swarm)")
        return cls(board, run)

    def roster(self) -> Roster:
        """The run's roster (:class:`SwarmError` when it was never published)."""
        data = _loads(self.board.get(self.key("roster")))
        if not isinstance(data, dict):
            raise SwarmError(f"swarm run {self.run} has no roster on {self.board.describe()}")
        return Roster(**{k: data[k] for k in ("run", "scenario", "names", "url", "root", "created") if k in data})

    def claims(self) -> dict[str, str]:
        """``{worker name: host}`` of the names claimed so far."""
        data = _loads(self.board.get(self.key("claims")))
        return dict(data) if isinstance(data, dict) else {}

    def claim(self, count: int, host: str) -> list[str]:
        """Claim the next ``count`` unclaimed worker names for ``host`` (one pabot invocation)."""
        if count < 1:
            raise ValueError(f"claim at least one worker, got {count}")
        names = self.roster().names
        with self.board.lock(self.key("lock")):
            claims = self.claims()
            free = [n for n in names if n not in claims]
            if len(free) < count:
                raise SwarmError(f"swarm run {self.run}: {count} workers asked for by {host}, but only "
                                 f"{len(free)} of {len(names)} are unclaimed")  # fmt: skip
            mine = free[:count]
            claims.update({n: host for n in mine})
            self.board.set(self.key("claims"), _dumps(claims))
        return mine

    # -- the coordinator ---------------------------------------------------------------------
    def publish_spec(self, spec: Mapping[str, Any]) -> None:
        """Publish what one worker's share is (JSON-friendly)."""
        self.board.set(self.key("spec"), _dumps(dict(spec)))

    def spec(self) -> dict[str, Any] | None:
        """The published spec, or ``None`` before the coordinator published it."""
        data = _loads(self.board.get(self.key("spec")))
        return data if isinstance(data, dict) else None

    def status(self) -> dict[str, dict[str, Any]]:
        """``{name: {"state": joined|reported|failed, "host", "reason", "at"}}``."""
        data = _loads(self.board.get(self.key("status")))
        return dict(data) if isinstance(data, dict) else {}

    def give_go(self, lead_s: float = START_LEAD_S) -> float:
        """Release the barrier: the common start is ``lead_s`` from now (wall clock); returns it."""
        start_at = time.time() + lead_s
        self.board.set(self.key("go"), _dumps({"start_at": start_at}))
        return start_at

    def abort(self, reason: str) -> None:
        """Call the run off: waiting workers fail with ``reason``."""
        self.board.set(self.key("go"), _dumps({"abort": reason}))

    def go(self) -> dict[str, Any] | None:
        """``{"start_at": t}`` once released, ``{"abort": reason}`` when called off, else ``None``."""
        data = _loads(self.board.get(self.key("go")))
        return data if isinstance(data, dict) else None

    def beat_of(self, name: str) -> dict[str, Any] | None:
        """A worker's last heartbeat."""
        data = _loads(self.board.get(self.key("beat", name)))
        return data if isinstance(data, dict) else None

    def report_of(self, name: str) -> WorkerReport | None:
        """A worker's handed-in report (``None`` before; :class:`SwarmError` for one that is not a report)."""
        text = self.board.get(self.key("report", name))
        if not text:
            return None
        try:
            return WorkerReport.from_json(text)
        except (ValueError, TypeError) as exc:
            raise SwarmError(f"worker {name} handed in something that is not a report: {exc}", {name: str(exc)}) from None

    # -- a worker ----------------------------------------------------------------------------
    def set_status(self, name: str, state: str, **fields: Any) -> None:
        """Record a worker's state (under the run's lock, so concurrent updates are not lost)."""
        with self.board.lock(self.key("lock")):
            status = self.status()
            status[name] = {"state": state, "at": time.time(), **fields}
            self.board.set(self.key("status"), _dumps(status))

    def beat(self, name: str, beat: Mapping[str, Any]) -> None:
        """Post a worker's heartbeat."""
        self.board.set(self.key("beat", name), _dumps(dict(beat)))

    def hand_in(self, report: WorkerReport) -> None:
        """Post a worker's report, then mark it reported."""
        self.board.set(self.key("report", report.worker), report.to_json())
        self.set_status(report.worker, REPORTED)


# --------------------------------------------------------------------------------------------
# a worker's side
# --------------------------------------------------------------------------------------------
class SwarmMember:
    """One worker of a swarm run: read the spec, join, wait for the go, beat, hand in (or fail).

    Args:
        swarm: the run.
        name: this worker's name (one of the roster's).
        host: where it runs (for the coordinator's messages).
    """

    def __init__(self, swarm: Swarm, name: str, *, host: str = "", sleep: Callable[[float], None] = time.sleep
                 ) -> None:  # fmt: skip
        self.swarm = swarm
        self.name = name
        self.host = host or socket.gethostname().split(".")[0]
        self.started_at = 0.0
        self.late_s = 0.0
        self._sleep = sleep
        self._beat_thread: threading.Thread | None = None
        self._beat_stop = threading.Event()
        self._phase = "preparing"
        self._progress: Callable[[], Mapping[str, Any]] | None = None

    def check_roster(self) -> Roster:
        """The roster, after checking this worker's name is on it."""
        roster = self.swarm.roster()
        if self.name not in roster.names:
            raise SwarmError(f"worker {self.name} is not on swarm run {self.swarm.run}'s roster "
                             f"({', '.join(roster.names)})", {self.name: "not on the roster"})  # fmt: skip
        return roster

    def wait_for_spec(self, timeout: float = BARRIER_TIMEOUT_S) -> dict[str, Any]:
        """The coordinator's spec, waiting for it up to ``timeout`` (:class:`SwarmError` then)."""
        deadline = time.monotonic() + timeout
        while True:
            spec = self.swarm.spec()
            if spec is not None:
                return spec
            go = self.swarm.go()
            if go and "abort" in go:
                raise SwarmError(f"swarm run {self.swarm.run} was called off: {go['abort']}")
            if time.monotonic() >= deadline:
                raise SwarmError(f"worker {self.name}: the coordinator published no spec for swarm run "
                                 f"{self.swarm.run} within {timeout:g} s")  # fmt: skip
            self._sleep(POLL_S)

    def join(self) -> None:
        """Tell the coordinator this worker is ready to load, and start the heartbeat."""
        self.swarm.set_status(self.name, JOINED, host=self.host)
        self._phase = "waiting"
        self.start_heartbeat()

    def wait_for_start(self, timeout: float = BARRIER_TIMEOUT_S + START_LEAD_S + 5.0) -> float:
        """Wait for the go, then until the common start; returns the start (``time.time()``).

        Raises :class:`SwarmError` when the run is called off (with the coordinator's reason) or
        no go comes within ``timeout``.
        """
        deadline = time.monotonic() + timeout
        while True:
            go = self.swarm.go()
            if go and "abort" in go:
                raise SwarmError(f"swarm run {self.swarm.run} was called off: {go['abort']}")
            if go and "start_at" in go:
                break
            if time.monotonic() >= deadline:
                raise SwarmError(f"worker {self.name}: no start signal from the coordinator within {timeout:g} s")
            self._sleep(POLL_S / 2)
        start_at = float(go["start_at"])
        ahead = start_at - time.time()
        if ahead > 0:
            self._sleep(ahead)
        now = time.time()
        self.late_s = max(0.0, now - start_at)
        self.started_at = now
        self._phase = "loading"
        return now

    def set_progress(self, progress: Callable[[], Mapping[str, Any]] | None) -> None:
        """What the heartbeat reports while loading, e.g. ``lambda: {"messages": n}``."""
        self._progress = progress

    def start_heartbeat(self, interval: float = HEARTBEAT_S) -> None:
        """Post a heartbeat every ``interval`` seconds from a thread until :meth:`close`."""
        if self._beat_thread is not None:
            return
        self._beat_stop.clear()

        def run() -> None:
            seq = 0
            while not self._beat_stop.is_set():
                seq += 1
                beat: dict[str, Any] = {"seq": seq, "phase": self._phase, "host": self.host}
                if self.started_at:
                    beat["t"] = round(time.time() - self.started_at, 3)
                progress = self._progress
                if progress is not None:
                    try:
                        beat["progress"] = dict(progress())
                    except Exception as exc:  # noqa: BLE001 - a broken counter must not stop the beat
                        beat["progress_error"] = str(exc)[:100]
                try:
                    self.swarm.beat(self.name, beat)
                except BoardError:
                    pass  # the next beat tries again; a board that stays away fails the hand-in
                self._beat_stop.wait(interval)

        self._beat_thread = threading.Thread(target=run, name=f"swarm-heartbeat-{self.name}", daemon=True)
        self._beat_thread.start()

    def hand_in(self, report: WorkerReport) -> None:
        """Hand in this worker's report (its name is set to this worker's)."""
        self._phase = "reporting"
        report.worker = self.name
        report.maxima.setdefault("start_late_ms", round(self.late_s * 1000, 3))
        try:
            self.swarm.hand_in(report)
        finally:
            self.close()

    def fail(self, reason: str) -> None:
        """Tell the coordinator this worker failed and why (best effort: the board may be the cause)."""
        try:
            self.swarm.set_status(self.name, FAILED, host=self.host, reason=reason[:500])
        except BoardError:
            pass
        finally:
            self.close()

    def close(self) -> None:
        """Stop the heartbeat."""
        self._beat_stop.set()
        t, self._beat_thread = self._beat_thread, None
        if t is not None:
            t.join(timeout=5.0)


# --------------------------------------------------------------------------------------------
# the coordinator's side
# --------------------------------------------------------------------------------------------
@dataclass
class SwarmOutcome:
    """What came back from a swarm: the reports by worker name, and each failure's reason."""

    names: list[str]
    reports: dict[str, WorkerReport]
    failures: dict[str, str]
    hosts: dict[str, str] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """Whether every worker reported and none failed."""
        return not self.failures and all(n in self.reports for n in self.names)

    def ordered_reports(self) -> list[WorkerReport]:
        """The reports in roster order."""
        return [self.reports[n] for n in self.names if n in self.reports]

    def merged(self) -> MergedReports:
        """Every report merged exactly; :attr:`MergedReports.complete` is false when any is missing."""
        return merge_reports(self.ordered_reports(), expected=len(self.names))

    def failure_text(self) -> str:
        """``worker w03 (host b): reason; worker w07: reason`` (empty when none failed)."""
        return "; ".join(f"worker {n}{self._at(n)} {why}" for n, why in self.failures.items())

    def _at(self, name: str) -> str:
        host = self.hosts.get(name)
        return f" on {host}" if host else ""

    def describe(self) -> str:
        """One line: how many reported, and why the others did not."""
        text = f"{len(self.reports)} of {len(self.names)} workers reported"
        return text + (f": {self.failure_text()}" if self.failures else "")


class Coordinator:
    """The coordinator's part of a swarm run: spec, barrier, go, and the collection of reports.

    Args:
        swarm: the run (its roster names the workers).
        clock, sleep: injectable for tests.
        poll_s: how often the board is read.
        stale_s: a worker whose heartbeat stands still this long has died or hung.
    """

    def __init__(self, swarm: Swarm, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, poll_s: float = POLL_S,
                 stale_s: float = STALE_S) -> None:  # fmt: skip
        self.swarm = swarm
        self.roster = swarm.roster()
        self.names = list(self.roster.names)
        self.clock = clock
        self.sleep = sleep
        self.poll_s = poll_s
        self.stale_s = stale_s
        self.start_at = 0.0
        self.hosts: dict[str, str] = {}

    def open(self, spec: Mapping[str, Any]) -> None:
        """Publish the spec (with the roster's names added) for the workers."""
        self.swarm.publish_spec({**dict(spec), "names": self.names})

    def _who(self, name: str, claims: Mapping[str, str]) -> str:
        host = self.hosts.get(name) or claims.get(name)
        return f"{name} (on {host})" if host else name

    def wait_for_workers(self, timeout: float = BARRIER_TIMEOUT_S,
                         on_tick: Callable[[int, int], object] | None = None) -> None:  # fmt: skip
        """Wait until every worker joined the barrier; else call the run off and raise :class:`SwarmError`.

        A worker that reports a failure while the others gather calls the run off at once;
        after ``timeout`` the message names every worker that did not join, and whether any
        host claimed it. ``on_tick(joined, expected)`` is called on every poll.
        """
        deadline = self.clock() + timeout
        while True:
            status = self.swarm.status()
            self.hosts.update({n: s["host"] for n, s in status.items() if isinstance(s, dict) and s.get("host")})
            failed = {n: str(s.get("reason", "failed")) for n, s in status.items()
                      if isinstance(s, dict) and s.get("state") == FAILED}  # fmt: skip
            joined = [n for n in self.names if n in status]
            if on_tick is not None:
                on_tick(len(joined), len(self.names))
            if failed:
                claims = self.swarm.claims()
                text = "; ".join(f"worker {self._who(n, claims)} failed before the start: {why}"
                                 for n, why in failed.items())  # fmt: skip
                self.swarm.abort(text)
                raise SwarmError(f"start barrier: {text}", failed)
            if len(joined) == len(self.names):
                return
            if self.clock() >= deadline:
                claims = self.swarm.claims()
                missing = [n for n in self.names if n not in status]
                reasons = {n: (f"claimed by {claims[n]} but did not join within {timeout:g} s" if n in claims
                               else f"was never claimed by any host within {timeout:g} s") for n in missing}  # fmt: skip
                text = (f"start barrier: {len(joined)} of {len(self.names)} workers joined within {timeout:g} s; "
                        + "; ".join(f"worker {n} {why}" for n, why in reasons.items()))  # fmt: skip
                self.swarm.abort(text)
                raise SwarmError(text, reasons)
            self.sleep(self.poll_s)

    def start(self, lead_s: float = START_LEAD_S) -> float:
        """Give the go; returns the common start (``time.time()``)."""
        self.start_at = self.swarm.give_go(lead_s)
        return self.start_at

    def collect(self, window_s: float, *, grace_s: float = REPORT_GRACE_S,
                on_tick: Callable[[dict[str, dict[str, Any]]], object] | None = None,
                tick_s: float = 1.0) -> SwarmOutcome:  # fmt: skip
        """Every worker's report, or why it has none, waiting at most the window plus ``grace_s``.

        A worker that failed is named with its reason as soon as it says so; one whose heartbeat
        stands still for ``stale_s`` is named as silent (died or hung); one with neither a report
        nor a failure at the deadline is named as late. ``on_tick(beats)`` gets every worker's
        latest heartbeat about every ``tick_s``.
        """
        lead = max(0.0, self.start_at - time.time()) if self.start_at else 0.0
        deadline = self.clock() + lead + window_s + grace_s
        reports: dict[str, WorkerReport] = {}
        failures: dict[str, str] = {}
        seen: dict[str, tuple[Any, float]] = {n: (None, self.clock()) for n in self.names}
        next_tick = self.clock()
        beats: dict[str, dict[str, Any]] = {}
        while True:
            status = self.swarm.status()
            self.hosts.update({n: s["host"] for n, s in status.items() if isinstance(s, dict) and s.get("host")})
            now = self.clock()
            read_beats = now >= next_tick
            if read_beats:
                next_tick = now + tick_s
            for name in self.names:
                if name in reports or name in failures:
                    continue
                state = status.get(name, {}) if isinstance(status.get(name), dict) else {}
                if state.get("state") == REPORTED:
                    try:
                        report = self.swarm.report_of(name)
                    except SwarmError as exc:
                        failures[name] = str(exc)
                        continue
                    if report is not None:
                        reports[name] = report
                        continue
                if state.get("state") == FAILED:
                    failures[name] = f"failed: {state.get('reason', 'no reason given')}"
                    continue
                if not read_beats:
                    continue
                beat = self.swarm.beat_of(name)
                if beat is not None:
                    beats[name] = beat
                marker = beat.get("seq") if beat else None
                last, since = seen[name]
                if marker != last:
                    seen[name] = (marker, now)
                elif now - since >= self.stale_s:
                    if beat is None:
                        last_heard = "never heard from"
                    elif "t" in beat:
                        last_heard = f"last heard {beat['t']:.1f} s into the window, {beat.get('phase', '?')}"
                    else:
                        last_heard = f"last heard before the start, {beat.get('phase', '?')}"
                    failures[name] = f"fell silent: no heartbeat for {self.stale_s:g} s ({last_heard}): it died or hung"
            if read_beats and on_tick is not None:
                on_tick(dict(beats))
            pending = [n for n in self.names if n not in reports and n not in failures]
            if not pending:
                break
            if now >= deadline:
                for n in pending:
                    failures[n] = (f"handed in no report within {window_s + grace_s:g} s of the start "
                                   "(still working, or too slow)")  # fmt: skip
                break
            self.sleep(self.poll_s)
        ordered = {n: failures[n] for n in self.names if n in failures}
        return SwarmOutcome(self.names, reports, ordered, dict(self.hosts))
