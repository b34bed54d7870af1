"""Run a reference conductor inside the current process on a background thread (for tests).

    >>> with ServerThread(ReferenceConfig(root=tmp_path)) as srv:   # doctest: +SKIP
    ...     httpx.get(srv.url + "api/v1/health")

The server runs its own event loop on a daemon thread; :meth:`ServerThread.call` runs a coroutine
function on that loop (for example to read server state consistently).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from .__main__ import Running, serve
from .config import ReferenceConfig

T = TypeVar("T")


class ServerThread:
    """A reference conductor on ``127.0.0.1`` (free port) in a background thread."""

    def __init__(self, config: ReferenceConfig) -> None:
        self.config = config
        self.running: Running | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="reference-conductor", daemon=True)

    @property
    def url(self) -> str:
        """Base URL with a trailing slash."""
        assert self.running is not None
        return self.running.url

    @property
    def server(self) -> Any:
        """The :class:`~conductor_perf.reference.app.ConductorServer` (touch it only via :meth:`call`)."""
        assert self.running is not None
        return self.running.server

    def start(self, timeout: float = 15.0) -> ServerThread:
        """Start and wait until the socket listens."""
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("reference conductor did not start")
        if self._error is not None:
            raise self._error
        return self

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            async with serve(self.config) as running:
                self.running = running
                self._ready.set()
                await self._stop.wait()
        except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
            self._error = exc
            self._ready.set()

    def call(self, fn: Callable[[], Coroutine[Any, Any, T]], timeout: float = 10.0) -> T:
        """Run ``await fn()`` on the server's loop and return its result."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(fn(), self._loop).result(timeout)

    def stop(self, timeout: float = 15.0) -> None:
        """Shut down (streams closed, agents stopped) and join the thread."""
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
