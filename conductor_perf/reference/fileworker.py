"""One thread that runs the short file-system work of request handlers, beside the event loop.

Creating a task costs four inode allocations (task dir, ``TASK.md``, ``runs/``, the run dir) before
the 201. On the event loop they would run one request after another; the real server runs each
request in its own goroutine, so its kernel work for a burst of requests spreads over the cores.
This worker gives the reference the same shape: the loop parses and answers requests while the
worker thread sits in the kernel (``mkdir``/``open`` release the GIL). Each job is handed back as
soon as it is done; jobs that finish before the loop got to them share one wake-up.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any

_Job = tuple[Callable[..., Any], tuple[Any, ...], asyncio.Future]


class FileWorker:
    """``await worker.run(fn, *args)``: ``fn(*args)`` on the worker thread, result or exception back."""

    def __init__(self, name: str = "conductor-files") -> None:
        self.name = name
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._done: list[tuple[asyncio.Future, Any, BaseException | None]] = []
        self._wake_pending = False

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the thread for ``loop`` (idempotent)."""
        if self._thread is None:
            self._loop = loop
            self._thread = threading.Thread(target=self._work, name=self.name, daemon=True)
            self._thread.start()

    def run(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future:
        """Queue ``fn(*args)``; the returned future resolves on the loop (inline when not started)."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        if self._thread is None or loop is not self._loop:
            try:
                fut.set_result(fn(*args))
            except Exception as exc:  # noqa: BLE001 - handed to the awaiting handler
                fut.set_exception(exc)
            return fut
        self._queue.put((fn, args, fut))
        return fut

    def close(self, timeout: float = 5.0) -> None:
        """Finish the queued jobs and stop the thread."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            fn, args, fut = job
            try:
                outcome = (fut, fn(*args), None)
            except Exception as exc:  # noqa: BLE001 - handed to the awaiting handler
                outcome = (fut, None, exc)
            with self._lock:
                self._done.append(outcome)
                wake = not self._wake_pending
                self._wake_pending = True
            if wake and self._loop is not None:
                try:
                    self._loop.call_soon_threadsafe(self._resolve)
                except RuntimeError:  # loop closed at shutdown: nobody waits any more
                    return

    def _resolve(self) -> None:
        """On the loop: hand every finished job to its waiter (one wake-up for what finished meanwhile)."""
        with self._lock:
            done, self._done = self._done, []
            self._wake_pending = False
        for fut, result, exc in done:
            if fut.cancelled():
                continue
            if exc is not None:
                fut.set_exception(exc)
            else:
                fut.set_result(result)
