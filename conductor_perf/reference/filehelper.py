"""A helper process that does the file work of task submissions beside the server's event loop.

``POST /api/v1/tasks`` must create four inodes before its 201 (task dir, ``TASK.md``, ``runs/``,
the run dir, as conductor-loop does). The real server does that in one goroutine per request, so a burst of
submissions spreads its kernel work over the cores. In one Python process the same work competes
with request parsing for the GIL: on the 2-core CI machine a burst of 100 submissions answered
with p95 ~34 ms when the loop did the file work itself, ~20 ms with a worker thread when the disk
was quiet, and 40-85 ms with that thread when creating files was slow (the thread's jobs spent
half their time waiting for the GIL). This helper has its own interpreter and GIL.

Protocol: ``["ready"]`` on stdout once imported; then one JSON array per line on stdin,
``[job, task_dir, prompt, run_id]``, and one line back on stdout per job, ``[job, run_id]`` or
``[job, null, errno, message]``. EOF on stdin ends it. The work itself is
:func:`conductor_perf.formats.runs.prepare_task`, the same function the server runs inline when no
helper is available.

    python -m conductor_perf.reference.filehelper
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from typing import Any

from ..formats import runs

HELPER_MODULE = "conductor_perf.reference.filehelper"
READY = b'["ready"]'
START_TIMEOUT_S = 10.0
JOB_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 2.0


def serve(stdin: Any = None, stdout: Any = None) -> int:
    """The helper's loop: one job per input line until EOF. Returns the exit status."""
    src = stdin or sys.stdin.buffer
    out = stdout or sys.stdout.buffer
    out.write(READY + b"\n")  # imports are done: the server may send jobs (and print its URL)
    out.flush()
    for raw in src:
        try:
            job, task_dir, prompt, run_id = json.loads(raw)
        except (ValueError, TypeError):
            continue  # not a job: nothing to answer
        try:
            reply = [job, runs.prepare_task(task_dir, prompt, run_id)]
        except OSError as exc:
            reply = [job, None, exc.errno or 0, exc.strerror or str(exc)]
        except Exception as exc:  # noqa: BLE001 - any failure is the job's answer, never the helper's end
            reply = [job, None, 0, f"{type(exc).__name__}: {exc}"]
        out.write(json.dumps(reply).encode() + b"\n")
        out.flush()
    return 0


class FileHelper:
    """The server side: ``await helper.prepare_task(task_dir, prompt, run_id)``.

    Without a running helper (not started, failed to start, or exited) the work runs inline on the
    loop, so a request never fails because the helper is gone. A job the helper does not answer
    within :data:`JOB_TIMEOUT_S` fails with ``TimeoutError`` (an ``OSError``).
    """

    def __init__(self, log: Any = None) -> None:
        self.log = log
        self.proc: asyncio.subprocess.Process | None = None
        self._pending: dict[int, asyncio.Future[str]] = {}
        self._next = 0
        self._reader: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        """Whether jobs go to the helper process (alive, and its answers still read)."""
        return (self.proc is not None and self.proc.returncode is None
                and self._reader is not None and not self._reader.done())  # fmt: skip

    async def start(self) -> None:
        """Start the helper process (a failure leaves the inline path in use)."""
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", HELPER_MODULE,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=None,
            )  # fmt: skip
        except OSError as exc:
            self._event("file_helper_unavailable", error=str(exc))
            self.proc = None
            return
        # the server reports healthy only once the helper has imported: a burst sent right after
        # the first healthy answer otherwise waited for a booting interpreter (p95 44-68 ms vs 16-42)
        assert self.proc.stdout is not None
        try:
            first = await asyncio.wait_for(self.proc.stdout.readline(), START_TIMEOUT_S)
        except TimeoutError:
            first = b""
        if first.strip() != READY:
            self._event("file_helper_unavailable", error=f"no ready line within {START_TIMEOUT_S:g} s")
            await self.close()
            return
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def prepare_task(self, task_dir: str, prompt: str, run_id: str) -> str:
        """:func:`runs.prepare_task` in the helper (inline when there is none)."""
        if not self.running:
            return runs.prepare_task(task_dir, prompt, run_id)
        assert self.proc is not None and self.proc.stdin is not None
        self._next += 1
        job = self._next
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._pending[job] = fut
        try:
            self.proc.stdin.write(json.dumps([job, task_dir, prompt, run_id]).encode() + b"\n")
            return await asyncio.wait_for(fut, JOB_TIMEOUT_S)
        except TimeoutError:
            raise TimeoutError(f"file helper did not answer within {JOB_TIMEOUT_S:g} s") from None
        finally:
            self._pending.pop(job, None)

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        try:
            while line := await self.proc.stdout.readline():
                try:
                    job, run_id, *err = json.loads(line)
                except (ValueError, TypeError):
                    continue
                fut = self._pending.get(job)
                if fut is None or fut.done():
                    continue
                if run_id is not None:
                    fut.set_result(run_id)
                else:
                    fut.set_exception(OSError(err[0] or None, err[1]) if err else OSError("file helper failed"))
        finally:
            self._fail_pending("file helper exited")

    def _fail_pending(self, why: str) -> None:
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(OSError(why))
        if pending:
            self._event("file_helper_exited", pending=len(pending))

    async def close(self) -> None:
        """End the helper: EOF on its stdin, then a bounded wait (killed if it does not exit)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            with contextlib.suppress(OSError, RuntimeError):
                proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None

    def _event(self, event: str, **fields: Any) -> None:
        if self.log is not None:
            self.log.event("WARNING", "api", event, **fields)


if __name__ == "__main__":
    # Ctrl-C reaches the whole process group: the helper ends by EOF from its server, after the
    # server has finished the jobs it sent, not in the middle of one with a traceback
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(serve())
