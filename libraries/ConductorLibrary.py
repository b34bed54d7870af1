"""Start, attach to and stop the system under test (SUT)."""

from __future__ import annotations

import atexit
import os
import shlex
from datetime import timedelta
from pathlib import Path

from _perf_base import context, figure, require_target, robot_var, run_context, seconds, skip
from robot.api import logger
from robot.api.deco import keyword, library
from robot.libraries.BuiltIn import BuiltIn

from conductor_perf import faults
from conductor_perf import target as sut
from conductor_perf.binary import parse_config_overrides, start_binary
from conductor_perf.context import RunContext
from conductor_perf.measure import fsprobe
from conductor_perf.records import load_records


@library(scope="GLOBAL", auto_keywords=False, listener="SELF")
class ConductorLibrary:
    """Owns the SUT of a suite run: the embedded reference conductor, a conductor-loop build, or a running server.

    = Choosing the SUT =

    `Start Or Attach Conductor` decides, from variables or the environment of the same names:

    - nothing set: it starts the embedded reference conductor on a free 127.0.0.1 port with a
      fresh runs root under the results folder; ``CONDUCTOR_EMBEDDED_ARGS`` adds reference flags
      (shell words, e.g. ``--slowdown-us 10``);
    - ``CONDUCTOR_BINARY`` (a conductor-loop executable, e.g. ``run-agent``): it starts that
      binary as ``serve --config <generated> --root <fresh root> --host 127.0.0.1 --port <free>``
      with the stub agent first on its PATH and HOME in a scratch folder, and owns it exactly like
      the embedded conductor. ``CONDUCTOR_BINARY_ARGS`` adds server flags (shell words),
      ``CONDUCTOR_BINARY_CONFIG`` config keys (``api.sse.max_clients_per_run=500``, shell words);
    - ``CONDUCTOR_URL``: it attaches to that server; ``CONDUCTOR_ROOT`` gives its runs root for
      file-level tests (without it those tests are skipped, with the reason) and
      ``CONDUCTOR_API_KEY`` its API key.

    = Capabilities =

    Tests ask the SUT for a capability instead of its kind (`Skip Unless Conductor Has`):
    ``can_restart`` (the suite owns the process), ``pid`` (its process is visible here), ``auth``
    (the suite can start a second instance with an API key), ``profiler`` and ``goroutines``. A
    missing one skips the test with a reason that names it.

    = Faults =

    `Kill Conductor` kills the owned SUT with SIGKILL (now or after a delay, in the background);
    `Restart Conductor` starts a fresh one on the same runs root and port. A suite setup
    (`Start Or Attach Conductor`) that finds the owned SUT dead starts a fresh one, so the suites
    after a crash still run.

    = Results =

    ``RESULTS_DIR`` (variable or ``CONDUCTOR_PERF_RESULTS`` environment) is where metrics and the
    SUT's folder (runs root, log, generated config) go. The SUT kind, URL, version and, for a
    binary, its ``--version`` line and sha256 are set as suite metadata and recorded in metrics.json.

    = Run context =

    The first `Start Or Attach Conductor` of a Robot process creates the run context (results
    folder, SUT, profile, attempt, last fault, metric sink; ``conductor_perf.context``) and this
    library holds it for the whole run; the other libraries read it from here.

    = Test names =

    A test name may state a target from a variable (``Over ${BUS_MIN_MSG_PER_S} Messages Per
    Second``), so an override shows in the name. Figures are recorded under the name as written in
    the suite, which an override does not change, so history and the regression gate compare the
    same test across runs; the name as run is recorded beside it for the summaries.

    Example:
    | `Start Or Attach Conductor`
    | ${url} =    `Get Conductor Url`
    | `Stop Conductor`
    """

    ROBOT_LISTENER_API_VERSION = 3

    def __init__(self) -> None:
        self.test_as_written: tuple[str, str] | None = None
        """(name as written in the suite, name as run) of the running test; see `_perf_base.context`."""
        self.context: RunContext | None = None
        self._locks: list[str] = []
        self._kill: faults.KillTimer | None = None

    def start_test(self, data, result) -> None:  # listener: not a keyword (auto_keywords=False)
        """Remember the running test's name as written (``Over ${BUS_MIN_MSG_PER_S} Messages``): the key
        its figures are recorded under, the same whatever a ``--variable`` override makes of the name."""
        self.test_as_written = (str(data.name), str(result.name))

    def end_test(self, data, result) -> None:  # listener
        """Forget the name of the test that ended."""
        self.test_as_written = None

    @keyword
    def start_or_attach_conductor(
        self,
        url: str = "",
        root: str = "",
        api_key: str = "",
        *,
        binary: str = "",
        binary_args: str = "",
        binary_config: str = "",
        results_dir: str = "",
        profile: str = "",
        extra_args: str = "",
    ) -> str:
        """Start the embedded reference conductor or a conductor-loop ``binary``, or attach to ``url``.

        Arguments default to the variables/environment ``CONDUCTOR_URL``, ``CONDUCTOR_ROOT``,
        ``CONDUCTOR_API_KEY``, ``CONDUCTOR_BINARY``, ``CONDUCTOR_BINARY_ARGS`` and
        ``CONDUCTOR_BINARY_CONFIG`` (see `Choosing the SUT`). ``extra_args`` are added to the embedded
        conductor's command line (shell words; default ``CONDUCTOR_EMBEDDED_ARGS``). Returns the base
        URL. Fails the whole run with one line when the SUT cannot be started or reached. An owned SUT
        found dead here (not killed by the suite) is recorded as a failed figure ``conductor exited
        unexpectedly`` before a fresh one is started.

        Example:
        | `Start Or Attach Conductor`    # embedded, or CONDUCTOR_BINARY / CONDUCTOR_URL if set
        | `Start Or Attach Conductor`    binary=/opt/conductor/run-agent    binary_config=api.sse.max_clients_per_run=500
        """
        url = url or _setting("CONDUCTOR_URL")
        root = root or _setting("CONDUCTOR_ROOT")
        api_key = api_key or _setting("CONDUCTOR_API_KEY")
        binary = binary or _setting("CONDUCTOR_BINARY")
        if self.context is None:
            self.context = RunContext.from_environment(
                results_dir=results_dir or _setting("RESULTS_DIR") or None, profile=profile or _setting("PROFILE")
            )
        ctx = self.context
        if ctx.target is not None:
            if faults.is_down(ctx.target):
                self._note_unexpected_exit(ctx.target)
                logger.warn(f"{faults.down_reason(ctx.target)}: starting a fresh one on the same runs root")
                try:
                    self._restart(ctx.target)
                except sut.TargetError as exc:
                    BuiltIn().fatal_error(f"could not restart the {ctx.target.name}: {exc}")
            return ctx.target.url
        sut_dir = ctx.results_dir / f"sut-{os.getpid()}"
        if not url and not root:  # the runs root the suite creates is scratch; the SUT's log beside it stays
            ctx.note_scratch(sut_dir / "root")
        try:
            if url and binary:
                raise sut.TargetError("CONDUCTOR_URL and CONDUCTOR_BINARY are both set: choose one SUT")
            if url:
                target = sut.attach(url, root=root or None, api_key=api_key)
            elif binary:
                target = start_binary(
                    binary,
                    sut_dir=sut_dir,
                    root=root or None,
                    api_key=api_key,
                    extra_args=_words(binary_args or _setting("CONDUCTOR_BINARY_ARGS"), "CONDUCTOR_BINARY_ARGS"),
                    config=parse_config_overrides(
                        _words(binary_config or _setting("CONDUCTOR_BINARY_CONFIG"), "CONDUCTOR_BINARY_CONFIG")
                    ),
                )
            else:
                target = sut.start_embedded(
                    root=root or (sut_dir / "root"),
                    log_dir=sut_dir,
                    api_key=api_key,
                    extra_args=_words(extra_args or _setting("CONDUCTOR_EMBEDDED_ARGS"), "CONDUCTOR_EMBEDDED_ARGS"),
                )
        except sut.TargetError as exc:
            BuiltIn().fatal_error(str(exc))
        ctx.target = target
        atexit.register(target.stop)  # a suite run on its own must not leave the SUT behind
        ctx.record(metric="sut", suite="", test="", unit="", value=0, verdict="info", extra=target.describe())
        for name, value in _metadata(target):
            BuiltIn().set_suite_metadata(name, value, top=True)
        logger.info(f"SUT: {target.name} {target.version} at {target.url} (root {target.root}); capabilities "
                    + ", ".join(f"{k}={v}" for k, v in target.capabilities().items()))  # fmt: skip
        return target.url

    @keyword
    def stop_conductor(self) -> None:
        """Stop an owned SUT and its whole process tree (an attached server is left running).

        An owned SUT that is found dead here although the suite did not kill it is recorded as a
        failed figure ``conductor exited unexpectedly`` (its exit status and log), so a run whose SUT
        crashed never reads as a clean one.

        Example:
        | `Stop Conductor`
        """
        if self.context is None:
            return
        if self._kill is not None:
            self._kill.cancel()
            self._kill = None
        target, self.context.target = self.context.target, None
        if target is not None:
            if faults.is_down(target):
                self._note_unexpected_exit(target)
            target.stop()

    def _note_unexpected_exit(self, target: sut.Target) -> None:
        """Record a dead owned SUT that the suite did not kill (a crash) as a failed figure."""
        ctx = self._context()
        fault = ctx.last_fault
        if target.process is None or (fault is not None and fault.pid == target.pid):  # the suite's own fault
            return
        reason = faults.down_reason(target) or f"{target.name} exited"
        log = f"; its log: {target.log_path}" if target.log_path else ""
        suite, test = context()
        ctx.record(suite=suite, test=test, metric=faults.UNEXPECTED_EXIT, unit="exit status", value=target.exit_status(),
                   verdict="fail", message=f"{reason}, not killed by the suite{log}", extra=target.describe())  # fmt: skip
        logger.warn(f"{reason}, not killed by the suite{log}")

    @keyword
    def kill_conductor(self, after: timedelta = timedelta(0)) -> None:
        """Kill the owned SUT's server with SIGKILL, now or ``after`` a delay (in the background).

        Its agents are left running, as after a real crash (a restart collects them). Fails for
        an SUT the suite does not own (capability ``can_restart``). Example:
        | `Kill Conductor`    after=1 s    # while the next keyword runs a load test
        """
        target = require_target()
        ctx = self._context()

        def note(at: float) -> None:
            ctx.note_fault("kill", at, target.pid)

        try:
            if seconds(after) > 0:
                self._kill = faults.kill_later(target, seconds(after), on_kill=note)
                logger.info(f"the {target.name} (pid {target.pid}) will be killed in {seconds(after):g} s")
            else:
                faults.kill_sut(target, on_kill=note)
                logger.info(f"killed the {target.name} (pid {target.pid}) with SIGKILL")
        except sut.TargetError as exc:
            raise AssertionError(str(exc)) from None

    @keyword
    def restart_conductor(self, *, if_down: bool = False) -> str:
        """Start a fresh instance of the owned SUT on the same runs root (and port when free); returns its URL.

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
        new = faults.restart_sut(old)
        self._context().target = new
        atexit.register(new.stop)
        figure("conductor restarted", 1, "restarts", details=new.describe(), headline_figure=False)
        logger.info(f"fresh {new.name} (pid {new.pid}) at {new.url} on the runs root {new.root}")

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
        """``embedded``, ``binary`` or ``external`` (tests ask for capabilities instead: `Skip Unless Conductor Has`).

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
        """Log what creating a directory costs now beside the owned SUT's runs root (info figure).

        Figures that create files depend on the disk's state as much as on the code (see
        ``conductor_perf.measure.fsprobe``); this puts that state next to them. Against an external
        SUT nothing is written near its runs root and nothing is recorded. Warns when the disk is
        busier than at the run's quietest earlier probe (see ``fsprobe.busy_note``). Returns the p50 in us.

        Example:
        | `Record File System State`
        """
        target = require_target()
        if not target.owned or target.root is None:
            logger.info("file system state not probed: only beside the runs root of a SUT the suite started")
            return None
        ctx = run_context()
        ctx.note_scratch(Path(target.root).parent / f"{fsprobe.PROBE_PREFIX}*")
        earlier = fsprobe.recorded_probes(load_records(ctx.results_dir))
        cost = fsprobe.directory_creation_cost(Path(target.root).parent)
        note = fsprobe.busy_note(cost["p50_us"], earlier)
        if note:
            logger.warn(note)
        return figure(fsprobe.FIGURE, round(cost["p50_us"], 1), "us", details={**cost, "busy": bool(note)},
                      headline_figure=False)

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
    def skip_unless_conductor_has(self, capability: str, reason: str = "") -> None:
        """Skip the test unless the SUT has ``capability``; the skip names it and why it is missing.

        Capabilities: ``can_restart``, ``pid``, ``auth``, ``profiler``, ``goroutines`` (see
        `Capabilities`). ``reason`` says what the test needs it for.

        Example:
        | `Skip Unless Conductor Has`    can_restart    kills the conductor
        """
        try:
            gap = require_target().capability_gap(capability)
        except ValueError as exc:
            raise AssertionError(str(exc)) from None
        if gap is not None:
            skip(f"{gap}{' (the test ' + reason + ')' if reason else ''}")

    @keyword
    def get_conductor_capability(self, capability: str) -> object:
        """The value of one capability of the SUT: ``True``/``False``, or a name such as ``perf`` / ``None``.

        Example:
        | ${profiler} =    `Get Conductor Capability`    profiler
        """
        target = require_target()
        try:
            target.capability_gap(capability)  # validates the name
        except ValueError as exc:
            raise AssertionError(str(exc)) from None
        return target.capabilities()[capability]


def _words(text: str, name: str) -> list[str]:
    """Shell words of a setting (``--flag 'a b'`` -> two words); a broken quote fails the run with one line."""
    try:
        return shlex.split(text or "")
    except ValueError as exc:
        raise sut.TargetError(f"{name} is not valid shell words ({exc}): {text!r}") from None


def _metadata(target: sut.Target) -> list[tuple[str, str]]:
    """Suite metadata naming the SUT (kind, URL, version, runs root; for a binary its path, version line, sha256)."""
    rows = [("SUT", target.kind), ("SUT URL", target.url), ("SUT version", target.version),
            ("SUT runs root", str(target.root) if target.root else "not given")]  # fmt: skip
    if target.kind == sut.BINARY:
        rows += [("SUT binary", str(target.binary)), ("SUT binary version", target.binary_version),
                 ("SUT binary sha256", target.binary_sha256)]  # fmt: skip
    if target.log_path is not None:
        rows.append(("SUT log", str(target.log_path)))
    return rows


def _setting(name: str) -> str:
    """A Robot variable ``${NAME}`` if set and non-empty, else the environment variable."""
    value = robot_var("${" + name + "}", None)
    if value not in (None, ""):
        return str(value)
    return os.environ.get(name, "")
