"""Goroutines of a Go server from its SIGQUIT stack dump.

A Go program that gets SIGQUIT (and has not caught it) prints ``SIGQUIT: quit`` and the stack of
every goroutine to its stderr, then exits with status 2. conductor-loop 0.76 exposes neither pprof
nor a goroutine metric, so for a server the suite owns this dump is the way to count them:
:func:`goroutine_dump` signals the process, waits for it to exit, reads the new part of its stderr
log and :func:`parse_goroutine_dump` counts the ``goroutine N [...]:`` headers. The server is gone
afterwards: the caller restarts it.

A Go program started with ``GODEBUG=schedtrace=1000,scheddetail=1`` (:data:`SCHEDTRACE`; the suite
starts a conductor-loop build that way) also prints its scheduler's state once a second, without
stopping: a ``SCHED <ms>ms: ... threads=N ... idlethreads=M ...`` line, then one indented line per
P, per M (OS thread) and per goroutine (``G<id>: status=<n>(<wait reason>) ...``).
:func:`parse_schedtrace` reads those blocks and :func:`next_sched_snapshot` waits for the next
complete one in a log: goroutines counted without ending the process (dead goroutines the runtime
keeps for reuse, status 6, left out), and the OS threads the runtime keeps parked for reuse
(``idlethreads``) told apart from the busy ones.

Each header names the goroutine's state (``running``, ``select``, ``IO wait``, ``chan receive``...),
optionally with how long it has waited and ``locked to thread``. Since Go 1.21 a SIGQUIT dump also
lists the runtime's own goroutines (GC workers, the scavenger, ``goroutine 0`` of a thread), a
dozen or so, which ``runtime.NumGoroutine`` would leave out: the count is the dump's, the upper
bound, and :attr:`GoroutineDump.runtime` says how many of them are the runtime's.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

QUIT_MARKER = "SIGQUIT: quit"
_HEADER = re.compile(r"^goroutine (\d+)(?: gp=\S+)?(?: m=\S+)?(?: mp=\S+)? \[([^\]]*)\]:\s*$")


class GoroutineDumpError(RuntimeError):
    """No goroutine dump could be taken or read; the message is one line."""


@dataclass
class GoroutineDump:
    """What a SIGQUIT dump says.

    Attributes:
        count: goroutine headers in the dump (the figure).
        states: goroutines per state (``select``, ``IO wait``, ...), largest first.
        runtime: the runtime's own goroutines (started in package ``runtime``, other than
            ``runtime.main``: GC workers, the scavenger, a thread's ``goroutine 0``).
        entry_functions: the function each goroutine was started with (its outermost frame),
            counted: what the goroutines are (``net/http.(*conn).serve`` per connection...).
        exit_status: the process's exit status (2 for a Go program dumping on SIGQUIT), when known.
        elapsed_s: from the signal to the dump being read.
    """

    count: int
    states: dict[str, int] = field(default_factory=dict)
    runtime: int = 0
    entry_functions: dict[str, int] = field(default_factory=dict)
    exit_status: int | None = None
    elapsed_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return {"count": self.count, "states": self.states, "runtime": self.runtime,
                "entry_functions": self.entry_functions, "exit_status": self.exit_status,
                "elapsed_s": self.elapsed_s}  # fmt: skip


def _state(text: str) -> str:
    """``select, 1 minutes, locked to thread`` -> ``select``."""
    return text.split(",", 1)[0].strip() or "?"


def parse_goroutine_dump(text: str, *, top: int = 10) -> GoroutineDump:
    """Count and classify the goroutines of a Go stack dump.

    Reads from the last ``SIGQUIT: quit`` line when there is one (a log may hold earlier dumps
    and other lines), else the whole text.

    Example::

        dump = parse_goroutine_dump(Path("conductor.stderr").read_text())
        dump.count, dump.states["IO wait"]

    Raises:
        ValueError: the text holds no goroutine header.
    """
    start = text.rfind(QUIT_MARKER)
    if start >= 0:
        text = text[start:]
    states: Counter[str] = Counter()
    entries: Counter[str] = Counter()
    runtime = 0
    current: list[str] | None = None

    def close(frames: list[str] | None) -> None:
        nonlocal runtime
        if frames is None:
            return
        # at the "system" traceback level of a SIGQUIT dump the outermost frame is runtime.goexit
        started = [f for f in frames if f != "runtime.goexit"]
        entry = started[-1] if started else "?"
        entries[entry] += 1
        # the runtime's own goroutines, as Go's isSystemGoroutine sees them: started in package
        # runtime (runtime.main runs the program's main)
        if entry == "?" or entry.startswith("runtime.") and entry != "runtime.main":
            runtime += 1

    count = 0
    for line in text.splitlines():
        m = _HEADER.match(line)
        if m:
            close(current)
            count += 1
            states[_state(m.group(2))] += 1
            current = []
            continue
        if current is None:
            continue
        if not line.strip():
            close(current)
            current = None
        elif not line[0].isspace() and "(" in line and not line.startswith(("created by ", "...")):
            current.append(line.rpartition("(")[0])  # "pkg.(*T).m(0x1, {0x2, 0x3})" -> "pkg.(*T).m"
    close(current)
    if count == 0:
        raise ValueError("no goroutine header ('goroutine N [state]:') in the dump")
    return GoroutineDump(count=count, states=dict(states.most_common()), runtime=runtime,
                         entry_functions=dict(entries.most_common(top)))  # fmt: skip


def goroutine_dump(pid: int, log_path: str | os.PathLike[str], timeout: float = 15.0) -> GoroutineDump:
    """SIGQUIT a Go process, wait for it to exit, and parse the dump it wrote to ``log_path``.

    ``log_path`` is the file the process's stderr goes to. Only what it gains after the signal is
    read. The process's children that it leaves behind (agents) are killed once it is gone, so
    nothing outlives the dump; the caller restarts the server.

    Example::

        dump = goroutine_dump(target.pid, target.log_path.with_suffix(".stderr"), timeout=15)
        assert dump.count < 1000

    Raises:
        GoroutineDumpError: no such process, it did not exit within ``timeout`` (it is then
            killed), or the log holds no dump.
    """
    log = Path(log_path)
    t0 = time.monotonic()
    try:
        proc = psutil.Process(pid)
        children = proc.children(recursive=True)
    except psutil.NoSuchProcess:
        raise GoroutineDumpError(f"no process {pid} to dump goroutines of") from None
    try:
        offset = log.stat().st_size
    except OSError:
        raise GoroutineDumpError(f"the process's stderr log {log} does not exist") from None
    try:
        proc.send_signal(signal.SIGQUIT)
        status = proc.wait(timeout=timeout)
    except psutil.NoSuchProcess:
        status = None
    except psutil.TimeoutExpired:
        proc.kill()
        psutil.wait_procs([proc], timeout=5)
        raise GoroutineDumpError(f"process {pid} did not exit within {timeout:g} s of SIGQUIT (killed)") from None
    leftovers = [c for c in children if c.is_running()]
    for c in leftovers:
        try:
            c.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(leftovers, timeout=5)
    text = ""
    deadline = time.monotonic() + max(1.0, timeout - (time.monotonic() - t0))
    while True:
        # the dump is written before the exit; a reader of a pipe may still be flushing it to the file
        with open(log, "rb") as fh:
            fh.seek(offset)
            text = fh.read().decode("utf-8", "replace")
        if QUIT_MARKER in text and "\ngoroutine " in text or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    try:
        dump = parse_goroutine_dump(text)
    except ValueError:
        last = [ln for ln in text.splitlines() if ln.strip()][-1:] or ["nothing"]
        raise GoroutineDumpError(f"process {pid} exited with status {status} after SIGQUIT but {log} holds no "
                                 f"goroutine dump (last line: {last[0][:160]})") from None  # fmt: skip
    dump.exit_status = status
    dump.elapsed_s = round(time.monotonic() - t0, 3)
    return dump


# -- the scheduler trace ---------------------------------------------------------------------------

SCHEDTRACE = "schedtrace=1000,scheddetail=1"
"""The ``GODEBUG`` settings that make a Go program print its scheduler's state once a second."""
_SCHED = re.compile(r"^SCHED (\d+)ms: .*?\bthreads=(\d+)\b.*?\bidlethreads=(\d+)\b")
_G_LINE = re.compile(r"^\s+G(\d+): status=(\d+)\(([^)]*)\)")
_G_DEAD, _G_IDLE, _G_SCAN = 6, 0, 0x1000
SCHED_READ_BYTES = 4 << 20
"""How much of a log's end :func:`next_sched_snapshot` reads at most (one block is a few KB)."""


@dataclass
class SchedSnapshot:
    """One block of a Go program's scheduler trace.

    Attributes:
        at_ms: milliseconds since the program started.
        threads: OS threads the runtime has made (``threads=``).
        idle_threads: of those, the ones parked for reuse (``idlethreads=``).
        goroutines: live goroutines (``G`` lines; dead and not yet started ones left out).
        states: live goroutines by wait reason (``IO wait``, ``select``...; ``running``,
            ``runnable``, ``syscall`` for those without one).
        offset: where the block starts in the log, bytes.
    """

    at_ms: int
    threads: int
    idle_threads: int
    goroutines: int = 0
    states: Counter = field(default_factory=Counter)
    offset: int = 0

    @property
    def busy_threads(self) -> int:
        """OS threads not parked by the runtime: running, in a system call, or spinning."""
        return self.threads - self.idle_threads


_STATUS_NAMES = {1: "runnable", 2: "running", 3: "syscall", 4: "waiting", 8: "copystack", 9: "preempted"}


def parse_schedtrace(text: str, *, base_offset: int = 0) -> list[SchedSnapshot]:
    """The complete scheduler-trace blocks of ``text``, in order.

    A block is complete once a line that is not part of it follows (the next ``SCHED`` line or any
    other log line); the last block of a log still being written is left out. ``base_offset`` is
    where ``text`` starts in its file (for :attr:`SchedSnapshot.offset`).
    """
    out: list[SchedSnapshot] = []
    current: SchedSnapshot | None = None
    pos = base_offset
    for line in text.splitlines(keepends=True):
        start, pos = pos, pos + len(line.encode("utf-8", "replace"))
        m = _SCHED.match(line)
        if m:
            if current is not None:
                out.append(current)
            current = SchedSnapshot(at_ms=int(m.group(1)), threads=int(m.group(2)), idle_threads=int(m.group(3)),
                                    offset=start)  # fmt: skip
            continue
        if current is None:
            continue
        if line[:1] in (" ", "\t"):
            g = _G_LINE.match(line)
            if g:
                status = int(g.group(2)) & ~_G_SCAN
                if status not in (_G_DEAD, _G_IDLE):
                    current.goroutines += 1
                    current.states[g.group(3) or _STATUS_NAMES.get(status, str(status))] += 1
            continue
        out.append(current)  # another log line ends the block
        current = None
    return out


def log_size(log_path: str | os.PathLike[str]) -> int:
    """The log's size now, bytes (0 when it does not exist yet)."""
    try:
        return os.path.getsize(log_path)
    except OSError:
        return 0


def has_schedtrace(log_path: str | os.PathLike[str] | None) -> bool:
    """Whether the log holds a scheduler trace (the program was started with :data:`SCHEDTRACE`)."""
    if log_path is None:
        return False
    try:
        with open(log_path, "rb") as fh:
            fh.seek(max(0, log_size(log_path) - SCHED_READ_BYTES))
            return any(_SCHED.match(line.decode("utf-8", "replace")) for line in fh)
    except OSError:
        return False


def next_sched_snapshot(log_path: str | os.PathLike[str], offset: int, *, timeout: float = 5.0,
                        poll: float = 0.1) -> SchedSnapshot:  # fmt: skip
    """The first complete scheduler-trace block that starts at or after ``offset`` in the log.

    Take ``offset`` with :func:`log_size` when the state of interest begins; the program prints a
    block a second, so this waits about one to two seconds.

    Raises:
        GoroutineDumpError: no such block within ``timeout`` (one line, with the log's last line).
    """
    deadline = time.monotonic() + timeout
    while True:
        size = log_size(log_path)
        start = max(offset, size - SCHED_READ_BYTES)
        try:
            with open(log_path, "rb") as fh:
                fh.seek(start)
                text = fh.read(size - start).decode("utf-8", "replace")
        except OSError as exc:
            raise GoroutineDumpError(f"cannot read the scheduler trace in {log_path}: {exc.strerror or exc}") from None
        if start > offset:  # began mid-line: drop the partial first line
            cut = text.find("\n") + 1
            text, start = text[cut:], start + cut
        blocks = parse_schedtrace(text, base_offset=start)
        if blocks:
            return blocks[0]
        if time.monotonic() >= deadline:
            last = [ln for ln in text.splitlines() if ln.strip()][-1:] or ["nothing new"]
            raise GoroutineDumpError(f"no scheduler trace block in {log_path} within {timeout:g} s (was the "
                                     f"program started with GODEBUG={SCHEDTRACE}? last line: {last[0][:160]})")  # fmt: skip
        time.sleep(poll)
