"""Start, attach to and stop the system under test (SUT)."""

from __future__ import annotations

import atexit
import os
from datetime import timedelta
from pathlib import Path

from _perf_base import figure, require_target, robot_var, seconds, skip
from robot.api import logger
from robot.api.deco import keyword, library
from robot.libraries.BuiltIn import BuiltIn

from conductor_perf import faults
from conductor_perf import target as sut
from conductor_perf.context import RunContext
from conductor_perf.measure import fsprobe


@library(scope="GLOBAL", auto_keywords=False)
class ConductorLibrary:
    """Owns the SUT of a suite run: the embedded reference conductor or a running conductor-loop.

    = Choosing the SUT =

    With no ``CONDUCTOR_URL`` (variable or environment), `Start Or Attach Conductor` starts the
    embedded reference conductor on a free 127.0.0.1 port with a fresh runs root under the results
    folder. With ``CONDUCTOR_URL`` it attaches to that server; ``CONDUCTOR_ROOT`` gives its runs
    root for file-level tests (without it those tests are skipped, with the reason) and
    ``CONDUCTOR_API_KEY`` its API key.

    = Faults =

    `Kill Conductor` kills the embedded conductor with SIGKILL (now or after a delay, in the
    background); `Restart Conductor` starts a fresh one on the same runs root and port. A suite
    setup (`Start Or Attach Conductor`) that finds the embedded conductor dead starts a fresh one,
    so the suites after a crash still run.

    = Results =

    ``RESULTS_DIR`` (variable or ``CONDUCTOR_PERF_RESULTS`` environment) is where metrics and the
    SUT's log go. The SUT kind, URL and version are set as suite metadata.

    = Run context =

    The first `Start Or Attach Conductor` of a Robot process creates the run context (results
    folder, SUT, profile, attempt, last fault, metric sink; ``conductor_perf.context``) and this
    library holds it for the whole run; the other libraries read it from here.

    Example:
    | `Start Or Attach Conductor`
    | ${url} =    `Get Conductor Url`
    | `Stop Conductor`
    """

    def __init__(self) -> None:
        self.context: RunContext | None = None
        self._locks: list[str] = []
        self._extra_args: list[str] = []
        self._kill: faults.KillTimer | None = None

    @keyword
    def start_or_attach_conductor(
        self,
        url: str = "",
        root: str = "",
        api_key: str = "",
        *,
        results_dir: str = "",
        profile: str = "",
        extra_args: str = "",
    ) -> str:
        """Start the embedded reference conductor, or attach to ``url`` when one is given.

        Arguments default to the variables/environment ``CONDUCTOR_URL``, ``CONDUCTOR_ROOT``,
        ``CONDUCTOR_API_KEY``. ``extra_args`` are added to the embedded conductor's command line
        (space separated). Returns the base URL. Fails with one line when the SUT is unreachable.

        Example:
        | `Start Or Attach Conductor`    # embedded, or CONDUCTOR_URL if set
        """
        url = url or _setting("CONDUCTOR_URL")
        root = root or _setting("CONDUCTOR_ROOT")
        api_key = api_key or _setting("CONDUCTOR_API_KEY")
        if self.context is None:
            self.context = RunContext.from_environment(
                results_dir=results_dir or _setting("RESULTS_DIR") or None, profile=profile or _setting("PROFILE")
            )
        ctx = self.context
        if ctx.target is not None:
            if faults.is_down(ctx.target):
                logger.warn(f"{faults.down_reason(ctx.target)}: starting a fresh one on the same runs root")
                try:
                    self._restart(ctx.target)
                except sut.TargetError as exc:
                    BuiltIn().fatal_error(f"could not restart the embedded conductor: {exc}")
            return ctx.target.url
        self._extra_args = extra_args.split() if extra_args else []
        try:
            if url:
                target = sut.attach(url, root=root or None, api_key=api_key)
            else:
                sut_dir = ctx.results_dir / f"sut-{os.getpid()}"
                target = sut.start_embedded(
                    root=root or (sut_dir / "root"),
                    log_dir=sut_dir,
                    api_key=api_key,
                    extra_args=self._extra_args,
                )
        except sut.TargetError as exc:
            BuiltIn().fatal_error(str(exc))
        ctx.target = target
        atexit.register(target.stop)  # a suite run on its own must not leave the SUT behind
        ctx.record(metric="sut", suite="", test="", unit="", value=0, verdict="info", extra=target.describe())
        for name, value in (("SUT", target.kind), ("SUT URL", target.url), ("SUT version", target.version),
                            ("SUT runs root", str(target.root) if target.root else "not given")):  # fmt: skip
            BuiltIn().set_suite_metadata(name, value, top=True)
        logger.info(f"SUT: {target.kind} conductor {target.version} at {target.url} (root {target.root})")
        return target.url

    @keyword
    def stop_conductor(self) -> None:
        """Stop the embedded conductor and its whole process tree (an attached server is left running).

        Example:
        | `Stop Conductor`
        """
        if self.context is None:
            return
        target, self.context.target = self.context.target, None
        if target is not None:
            target.stop()

    @keyword
    def kill_conductor(self, after: timedelta = timedelta(0)) -> None:
        """Kill the embedded conductor with SIGKILL, now or ``after`` a delay (in the background).

        Its agents are left running, as after a real crash (a restart collects them). Fails for
        an external SUT. Example:
        | `Kill Conductor`    after=1 s    # while the next keyword runs a load test
        """
        target = require_target()
        ctx = self._context()
        try:
            if seconds(after) > 0:
                self._kill = faults.kill_later(target, seconds(after), on_kill=lambda at: ctx.note_fault("kill", at, target.pid))
                logger.info(
                    f"the embedded conductor (pid {target.pid}) will be killed in {seconds(after):g} s"
                )
            else:
                ctx.note_fault("kill", faults.kill_embedded(target), target.pid)
                logger.info(f"killed the embedded conductor (pid {target.pid}) with SIGKILL")
        except sut.TargetError as exc:
            raise AssertionError(str(exc)) from None

    @keyword
    def restart_conductor(self, *, if_down: bool = False) -> str:
        """Start a fresh embedded conductor on the same runs root (and port when free); returns its URL.

        A running one is stopped first. With ``if_down=True`` nothing happens while the SUT runs
        (nor for an external SUT), which suits a teardown after a fault test. Example:
        | [Teardown]    `Restart Conductor`    if_down=${True}
        """
        target = require_target()
        if self._kill is not None:
            self._kill.cancel()
            self._kill = None
        if if_down and not faults.is_down(target):
            return target.url
        try:
            self._restart(target)
        except sut.TargetError as exc:
            raise AssertionError(str(exc)) from None
        return require_target().url

    def _restart(self, old: sut.Target) -> None:
        new = faults.restart_embedded(old, extra_args=self._extra_args)
        self._context().target = new
        atexit.register(new.stop)
        figure("embedded conductor restarted", 1, "restarts", details=new.describe())
        logger.info(f"fresh embedded conductor (pid {new.pid}) at {new.url} on the runs root {new.root}")

    def _context(self) -> RunContext:
        if self.context is None:
            raise AssertionError("no conductor: call 'Start Or Attach Conductor' in the suite setup first")
        return self.context

    @keyword
    def get_conductor_url(self) -> str:
        """The SUT's base URL, e.g. ``http://127.0.0.1:41234/``.

        Example:
        | ${url} =    `Get Conductor Url`
        """
        return require_target().url

    @keyword
    def get_conductor_kind(self) -> str:
        """``embedded`` or ``external``.

        Example:
        | ${kind} =    `Get Conductor Kind`
        """
        return require_target().kind

    @keyword
    def conductor_should_be_healthy(self) -> None:
        """Fail unless ``GET /api/v1/health`` answers 200 within 5 s.

        Example:
        | `Conductor Should Be Healthy`
        """
        try:
            sut.wait_healthy(require_target(), timeout=5)
        except sut.TargetError as exc:
            raise AssertionError(str(exc)) from None

    @keyword
    def record_file_system_state(self) -> float | None:
        """Log what creating a directory costs now beside the embedded conductor's runs root (info figure).

        Figures that create files depend on the disk's state as much as on the code (see
        ``conductor_perf.measure.fsprobe``); this puts that state next to them. Against an external
        SUT nothing is written into its runs root and nothing is recorded. Returns the p50 in us.

        Example:
        | `Record File System State`
        """
        target = require_target()
        if target.kind != sut.EMBEDDED or target.root is None:
            logger.info("file system state not probed: only beside the embedded conductor's root")
            return None
        cost = fsprobe.directory_creation_cost(Path(target.root).parent)
        return figure("file system directory creation p50", round(cost["p50_us"], 1), "us", details=cost)

    @keyword
    def acquire_measurement_lock(self, name: str = "measurement") -> None:
        """Wait until no other pabot process measures, then hold the lock (local under plain robot).

        Measured tests take it in their setup so two measurements never share the CPU.

        Example:
        | Test Setup    `Acquire Measurement Lock`
        """
        BuiltIn().run_keyword("pabot.PabotLib.Acquire Lock", name)
        self._locks.append(name)

    @keyword
    def release_measurement_lock(self) -> None:
        """Release the measurement lock if this test holds it (safe when setup failed before taking it).

        Example:
        | Test Teardown    `Release Measurement Lock`
        """
        while self._locks:
            BuiltIn().run_keyword("pabot.PabotLib.Release Lock", self._locks.pop())

    @keyword
    def skip_unless_embedded_conductor(self, reason: str = "") -> None:
        """Skip the test unless the SUT is the embedded reference conductor.

        Example:
        | `Skip Unless Embedded Conductor`    restarts the SUT
        """
        if require_target().kind != sut.EMBEDDED:
            skip(f"needs the embedded reference conductor{': ' + reason if reason else ''}")


def _setting(name: str) -> str:
    """A Robot variable ``${NAME}`` if set and non-empty, else the environment variable."""
    value = robot_var("${" + name + "}", None)
    if value not in (None, ""):
        return str(value)
    return os.environ.get(name, "")
