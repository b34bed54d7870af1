"""Goroutines of a Go server from its SIGQUIT stack dump.

A Go program that gets SIGQUIT (and has not caught it) prints ``SIGQUIT: quit`` and the stack of
every goroutine to its stderr, then exits with status 2. conductor-loop 0.76 exposes neither pprof
nor a goroutine metric, so for a server the suite owns this dump is the way to count them:
:func:`goroutine_dump` signals the process, waits for it to exit, reads the new part of its stderr
log and :func:`parse_goroutine_dump` counts the ``goroutine N [...]:`` headers. The server is gone
afterwards: the caller restarts it.

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
