"""Faults of the system under test: kill it, bring up a fresh one, fail fast when it dies mid-measurement.

They apply to any SUT the suite owns (the embedded conductor or a managed conductor-loop binary:
the ``can_restart`` capability); an external one is refused with the reason.

* :func:`kill_sut` / :func:`kill_later`: ``SIGKILL`` the SUT's server process, now or from a
  background timer (its agents are left running, as after a real crash; :func:`restart_sut`
  collects them).
* :func:`restart_sut`: a fresh instance on the same runs root (and, when it is free, the same
  port, so clients can reconnect to the URL they know).
* :func:`down_reason`: one line saying why the SUT is down, or ``None`` while it is up.
* :func:`fail_fast_if_sut_dies`: a context manager that watches the SUT from a thread while the
  body runs. When the SUT dies it kills this process's ``multiprocessing`` workers (the worker
  pool's load generators, bus writers, SSE clients: they could only wait for their duration against
  a dead server; the pool then names them as killed) and
  raises :class:`SutDown` in the main thread through a signal, so a blocking wait (an asyncio
  loop, a queue) ends at once instead of running to its configured duration.

Example::

    with fail_fast_if_sut_dies(target):
        result = load.run_closed(target.url, "/api/v1/health", workers=16, duration=60)
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import psutil

from .target import Target, TargetError, http_json, kill_processes

INTERRUPT_SIGNAL = signal.SIGUSR2
"""The signal the watchdog sends to the main thread to interrupt a blocking wait."""

DEFAULT_POLL_S = 0.1
"""How often the watchdog checks the SUT."""
DEFAULT_HEALTH_FAILURES = 3
"""Consecutive failed health checks after which an external SUT counts as down."""
UNEXPECTED_EXIT = "conductor exited unexpectedly"
"""The metric of the failed figure recorded when an owned SUT is found dead although the suite did
not kill it (a crash); an A/B comparison fails the round that has one."""

_ORPHANS: dict[int, list[psutil.Process]] = {}


class SutDown(RuntimeError):
    """The SUT died while a measurement ran; the message is one line for the console and the log."""

    ROBOT_SUPPRESS_NAME = True

    def __init__(self, reason: str, *, elapsed_s: float, detected_at: float) -> None:
        super().__init__(
            f"conductor died: {reason}; the measurement was stopped {elapsed_s:.1f} s after it began "
            "(figures measured before are kept in the metrics)"
        )
        self.reason = reason
        self.elapsed_s = elapsed_s
        self.detected_at = detected_at


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def down_reason(target: Target, *, timeout: float = 1.0) -> str | None:
    """Why the SUT is down (one line), or ``None`` while it answers.

    An owned SUT is down when its process has exited (no HTTP round trip needed); an external one
    when ``GET /api/v1/health`` is refused or does not answer 200 within ``timeout``.
    """
    if target.owned:
        if target.process is None:
            return f"{target.name} (pid {target.pid}) was stopped"
        code = target.process.poll()
        return None if code is None else f"{target.name} (pid {target.pid}) {_exit_text(code)}"
    try:
        status, _ = http_json(
            target.endpoint("/api/v1/health"), timeout=timeout, headers=target.auth_headers()
        )
    except TargetError as exc:
        return str(exc)
    return None if status == 200 else f"conductor at {target.url} answers HTTP {status} on /api/v1/health"


def is_down(target: Target) -> bool:
    """Whether an owned SUT's process has gone (external targets: never assumed down)."""
    return target.owned and (target.process is None or target.process.poll() is not None)


def _require_killable(target: Target) -> None:
    if not target.owned:
        raise TargetError(f"the suite cannot kill this SUT: {target.capability_gap('can_restart')}")
    if target.process is None or target.pid is None:
        raise TargetError(f"the {target.name} is not running: nothing to kill")


def kill_sut(target: Target, *, on_kill: Callable[[float], None] | None = None) -> float:
    """``SIGKILL`` the owned SUT's server process now and reap it; returns the kill time (``time.time()``).

    Its agents keep running, as after a real crash; :func:`restart_sut` stops them. The caller
    keeps the kill time where it needs it (the run context's last fault). ``on_kill(time)`` is
    called *before* the signal is sent, so whoever notices the death (a watchdog in another thread)
    already finds the kill recorded.
    """
    _require_killable(target)
    assert target.process is not None and target.pid is not None
    try:
        _ORPHANS[target.pid] = psutil.Process(target.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        _ORPHANS[target.pid] = []
    killed_at = time.time()
    if on_kill is not None:
        on_kill(killed_at)
    try:
        os.kill(target.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        target.process.wait(timeout=5)
    except Exception:  # noqa: BLE001 - SIGKILL cannot be ignored; a stuck reap is not our failure
        pass
    return killed_at


@dataclass
class KillTimer:
    """A pending or done background kill of the SUT; ``on_kill(time)`` is called as it kills."""

    target: Target
    after_s: float
    on_kill: Callable[[float], None] | None = None
    killed_at: float | None = None
    error: str = ""
    _timer: threading.Timer | None = field(default=None, repr=False)

    def start(self) -> KillTimer:
        """Arm the timer."""
        self._timer = threading.Timer(self.after_s, self._fire)
        self._timer.daemon = True
        self._timer.start()
        return self

    def _fire(self) -> None:
        try:
            kill_sut(self.target, on_kill=self._note)
        except Exception as exc:  # noqa: BLE001 - reported through .error
            self.error = str(exc)

    def _note(self, at: float) -> None:
        self.killed_at = at
        if self.on_kill is not None:
            self.on_kill(at)

    def cancel(self) -> None:
        """Disarm the timer if it has not fired."""
        if self._timer is not None:
            self._timer.cancel()


def kill_later(target: Target, after_s: float, *, on_kill: Callable[[float], None] | None = None) -> KillTimer:
    """``SIGKILL`` the owned SUT ``after_s`` seconds from now, from a background thread.

    ``on_kill`` receives the kill time (``time.time()``) from that thread.
    """
    _require_killable(target)
    return KillTimer(target, max(0.0, float(after_s)), on_kill).start()


def _collect_orphans(pid: int | None) -> int:
    return kill_processes(_ORPHANS.pop(pid or -1, []))


def restart_sut(old: Target, *, same_port: bool = True) -> Target:
    """Start a fresh instance of the owned SUT ``old`` on its runs root (and port, when it is free).

    A running ``old`` is stopped first (SIGTERM, its tree collected); a dead one is reaped and the
    agents it left behind are killed. The new instance is started the way ``old`` was (its
    ``launch``: the same arguments, binary and config).
    """
    gap = old.capability_gap("can_restart")
    if gap is not None:
        raise TargetError(f"the suite cannot restart this SUT: {gap}")
    assert old.launch is not None and old.root is not None
    if old.process is not None and old.process.poll() is None:
        old.stop()
    else:
        if old.process is not None:
            with contextlib.suppress(Exception):
                old.process.wait(timeout=5)
            old.process = None
        _collect_orphans(old.pid)
    log_dir = old.log_path.parent if old.log_path else old.root.parent
    try:
        new = old.launch.start(root=old.root, log_dir=log_dir, api_key=old.api_key, port=old.port if same_port else 0)
    except TargetError:
        if not same_port:
            raise
        # the old port is taken (by another process since): any free port will do
        new = old.launch.start(root=old.root, log_dir=log_dir, api_key=old.api_key, port=0)
    new.owns_root = old.owns_root
    return new


# ------------------------------------------------------------------------------------ fail fast


class Watch:
    """The state of one :func:`fail_fast_if_sut_dies` block: ``reason`` is set once the SUT died."""

    def __init__(self, target: Target, poll_s: float, failures: int, kill_workers: bool,
                 on_down: Callable[[str], None] | None) -> None:  # fmt: skip
        self.target = target
        self.poll_s = poll_s
        self.failures = failures
        self.kill_workers = kill_workers
        self.on_down = on_down
        self.started = time.monotonic()
        self.reason: str | None = None
        self.detected_at = 0.0
        self.raised = False
        self.interrupted = False
        self.active = True
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.signal_main = False

    def error(self) -> SutDown:
        return SutDown(self.reason or "unknown", elapsed_s=self.detected_at - self.started,
                       detected_at=self.detected_at)  # fmt: skip

    def watch(self) -> None:
        misses = 0
        while not self.stop.wait(self.poll_s):
            reason = down_reason(self.target, timeout=max(0.5, self.poll_s * 5))
            if reason is None:
                misses = 0
                continue
            misses += 1
            if not self.target.owned and misses < self.failures:
                continue
            self._down(reason)
            return

    def _down(self, reason: str) -> None:
        with self.lock:
            if not self.active:
                return
            self.reason, self.detected_at = reason, time.monotonic()
            if self.kill_workers:
                for child in multiprocessing.active_children():
                    with contextlib.suppress(Exception):
                        child.kill()
            if self.on_down is not None:
                with contextlib.suppress(Exception):
                    self.on_down(reason)
            if self.signal_main:
                signal.pthread_kill(threading.main_thread().ident or 0, INTERRUPT_SIGNAL)


_ACTIVE: list[Watch] = []
_HANDLER_INSTALLED = False


def _noop() -> None:
    pass


def _on_interrupt(signum: int, frame: object) -> None:
    """Interrupt the body of the guard whose SUT died.

    Inside a running asyncio loop an exception raised here could land in a plain callback, which
    the loop would log and swallow; the loop's tasks are cancelled instead, with the reason as the
    cancel message (their ``finally`` blocks close connections), and the guard turns the
    cancellation into :class:`SutDown`. Anywhere else :class:`SutDown` is raised at once.
    """
    for guard in reversed(_ACTIVE):
        if guard.reason is not None and not guard.interrupted:
            guard.interrupted = True
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            if loop is not None:
                message = str(guard.error())
                for task in asyncio.all_tasks(loop):
                    task.cancel(message)
                loop.call_soon_threadsafe(_noop)  # wake the selector now
                return
            guard.raised = True
            raise guard.error()


def _install_handler() -> bool:
    """Install the interrupt handler (main thread only); it stays, and ignores stray signals."""
    global _HANDLER_INSTALLED
    if threading.current_thread() is not threading.main_thread():
        return False
    if not _HANDLER_INSTALLED:
        signal.signal(INTERRUPT_SIGNAL, _on_interrupt)
        _HANDLER_INSTALLED = True
    return True


@contextlib.contextmanager
def fail_fast_if_sut_dies(
    target: Target,
    *,
    poll_s: float = DEFAULT_POLL_S,
    failures: int = DEFAULT_HEALTH_FAILURES,
    kill_workers: bool = True,
    on_down: Callable[[str], None] | None = None,
) -> Iterator[Watch]:
    """Run the body while a thread watches the SUT; raise :class:`SutDown` soon after it dies.

    An owned SUT is checked through its process (every ``poll_s``); an external one
    through ``/api/v1/health`` (down after ``failures`` misses in a row). On death: the
    ``multiprocessing`` children of this process are killed (``kill_workers``), ``on_down(reason)``
    is called, and the main thread is interrupted with :class:`SutDown`. Entered from another
    thread, the body is not interrupted; :class:`SutDown` is raised when it returns. Yields the
    :class:`Watch` (its ``reason`` tells, inside a ``finally``, whether the SUT died).
    """
    guard = Watch(target, poll_s, failures, kill_workers, on_down)
    guard.signal_main = _install_handler()
    _ACTIVE.append(guard)
    thread = threading.Thread(target=guard.watch, name="conductor-perf-watchdog", daemon=True)
    thread.start()
    try:
        yield guard
    except SutDown:
        raise
    except (Exception, asyncio.CancelledError) as exc:
        # the body may notice the dead SUT (refused connections) before the watchdog's next look
        if guard.reason is None and target.owned:
            reason = down_reason(target)
            if reason is not None:
                guard.reason, guard.detected_at = reason, time.monotonic()
        if guard.reason is not None:
            guard.raised = True
            raise guard.error() from exc
        raise
    finally:
        _close(guard, thread)
    if guard.reason is not None and not guard.raised:
        guard.raised = True
        raise guard.error()


def _close(guard: Watch, thread: threading.Thread) -> None:
    """Stop the watchdog; each step runs even if the (single) interrupt lands in an earlier one."""
    try:
        with guard.lock:
            guard.active = False  # no signal is sent after this point
    finally:
        try:
            guard.stop.set()
            thread.join(timeout=max(2.0, guard.poll_s * 10 + 1.0))
        finally:
            if guard in _ACTIVE:
                _ACTIVE.remove(guard)
