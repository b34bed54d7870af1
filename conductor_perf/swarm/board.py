"""The board a swarm's processes share: PabotLib's key/value store and locks, or an in-memory one.

Every process of a swarm (the coordinator, each worker, on this machine or another) reads and
writes a few string values under the run's keys and takes short locks; nothing else is shared,
so no file system is needed. Two boards offer the same four operations:

* :class:`PabotLibBoard` talks to a PabotLib server (``python -m pabot.pabotlib`` or the one a
  pabot run starts) over its XML-RPC remote-library protocol, the protocol the ``PabotLib``
  keywords use (``set_parallel_value_for_key``, ``get_parallel_value_for_key``, ``acquire_lock``,
  ``release_lock``), without Robot in between: a worker's heartbeat thread can use it, and every
  call is bounded by a timeout;
* :class:`LocalBoard` keeps the same data in this process (tests, and a swarm run in threads).

Values are strings (JSON for structures). A board that cannot be reached raises
:class:`BoardError` with one line naming the server and the reason.

Example::

    board = PabotLibBoard.from_uri("127.0.0.1:8270", caller="w01")
    with board.lock("swarm:42"):
        board.set("swarm:42:status", "{}")
    print(board.get("swarm:42:status"))
"""

from __future__ import annotations

import contextlib
import http.client
import threading
import time
import uuid
import xmlrpc.client
from collections.abc import Iterator
from typing import Protocol

__all__ = ["Board", "BoardError", "LocalBoard", "PabotLibBoard", "parse_uri"]

CALL_TIMEOUT_S = 10.0
"""How long one call to a PabotLib server may take."""
LOCK_TIMEOUT_S = 30.0
"""How long :meth:`Board.lock` waits for a lock another process holds."""
LOCK_POLL_S = 0.01


class BoardError(RuntimeError):
    """The board could not be reached or refused a call (one line: which server, why)."""


class Board(Protocol):
    """What a swarm needs from a shared store: string values by key and named locks."""

    def get(self, key: str) -> str:
        """The value of ``key`` (``""`` when unset)."""
        ...

    def set(self, key: str, value: str) -> None:  # noqa: A003 - the store's verb
        """Set ``key`` to ``value``."""
        ...

    def lock(self, name: str, timeout: float = LOCK_TIMEOUT_S) -> contextlib.AbstractContextManager[None]:
        """Hold the named lock for a ``with`` block (``BoardError`` when not had within ``timeout``)."""
        ...

    def describe(self) -> str:
        """Where the board is, for messages (``PabotLib at 127.0.0.1:8270``)."""
        ...


class LocalBoard:
    """A board in this process's memory (thread-safe): for tests and single-process swarms."""

    def __init__(self) -> None:
        self._values: dict[str, str] = {}
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    def get(self, key: str) -> str:
        """The value of ``key`` (``""`` when unset)."""
        with self._guard:
            return self._values.get(key, "")

    def set(self, key: str, value: str) -> None:  # noqa: A003
        """Set ``key`` to ``value``."""
        with self._guard:
            self._values[key] = str(value)

    @contextlib.contextmanager
    def lock(self, name: str, timeout: float = LOCK_TIMEOUT_S) -> Iterator[None]:
        """Hold the named lock for a ``with`` block."""
        with self._guard:
            lk = self._locks.setdefault(name, threading.Lock())
        if not lk.acquire(timeout=timeout):
            raise BoardError(f"lock {name!r} on the local board not had within {timeout:g} s")
        try:
            yield
        finally:
            lk.release()

    def describe(self) -> str:
        """``local board``."""
        return "local board"


def parse_uri(uri: str) -> tuple[str, int]:
    """``host:port`` (as PabotLib's ``${PABOTLIBURI}`` reads) -> ``(host, port)``; ``ValueError`` otherwise."""
    text = uri.strip()
    if text.startswith("http://"):
        text = text[len("http://") :].rstrip("/")
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"a PabotLib server is named host:port (e.g. 127.0.0.1:8270), got {uri!r}")
    return host.strip("[]"), int(port)


class _TimeoutTransport(xmlrpc.client.Transport):
    """XML-RPC over HTTP with a socket timeout (the standard transport has none)."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.timeout = timeout

    def make_connection(self, host: str) -> http.client.HTTPConnection:  # type: ignore[override]
        conn = super().make_connection(host)
        conn.timeout = self.timeout
        return conn


class PabotLibBoard:
    """A PabotLib server as the board: ``host``/``port`` of ``python -m pabot.pabotlib`` (or pabot's own).

    Args:
        host, port: the server.
        caller: this process's id for its locks (PabotLib locks belong to a caller id).
        timeout: seconds one call may take.

    Each thread gets its own connection (XML-RPC proxies are not shared between threads).
    """

    def __init__(self, host: str, port: int, *, caller: str = "", timeout: float = CALL_TIMEOUT_S) -> None:
        self.host = host
        self.port = int(port)
        self.caller = caller or f"swarm-{uuid.uuid4().hex[:12]}"
        self.timeout = float(timeout)
        self._local = threading.local()

    @classmethod
    def from_uri(cls, uri: str, *, caller: str = "", timeout: float = CALL_TIMEOUT_S) -> PabotLibBoard:
        """A board for ``host:port`` (``ValueError`` for anything else)."""
        host, port = parse_uri(uri)
        return cls(host, port, caller=caller, timeout=timeout)

    def describe(self) -> str:
        """``PabotLib at host:port``."""
        return f"PabotLib at {self.host}:{self.port}"

    def _proxy(self) -> xmlrpc.client.ServerProxy:
        proxy = getattr(self._local, "proxy", None)
        if proxy is None:
            proxy = xmlrpc.client.ServerProxy(f"http://{self.host}:{self.port}", allow_none=True,
                                              transport=_TimeoutTransport(self.timeout))  # fmt: skip
            self._local.proxy = proxy
        return proxy

    def call(self, keyword: str, *args: object) -> object:
        """Run one PabotLib keyword on the server; its return value, or :class:`BoardError`."""
        try:
            answer = self._proxy().run_keyword(keyword, list(args), {})
        except (TimeoutError, OSError, http.client.HTTPException, xmlrpc.client.Error) as exc:
            self._local.proxy = None  # a broken connection is not reused
            why = f"no answer within {self.timeout:g} s" if isinstance(exc, TimeoutError) else str(exc)
            raise BoardError(f"cannot reach {self.describe()}: {why or type(exc).__name__}") from None
        if not isinstance(answer, dict) or answer.get("status") != "PASS":
            error = answer.get("error", answer) if isinstance(answer, dict) else answer
            raise BoardError(f"{self.describe()} refused {keyword}: {error}")
        return answer.get("return")

    def get(self, key: str) -> str:
        """The value of ``key`` (``""`` when unset)."""
        value = self.call("get_parallel_value_for_key", key)
        return "" if value is None else str(value)

    def set(self, key: str, value: str) -> None:  # noqa: A003
        """Set ``key`` to ``value``."""
        self.call("set_parallel_value_for_key", key, str(value))

    @contextlib.contextmanager
    def lock(self, name: str, timeout: float = LOCK_TIMEOUT_S) -> Iterator[None]:
        """Hold PabotLib's named lock for a ``with`` block (polled every 10 ms, bounded by ``timeout``)."""
        deadline = time.monotonic() + timeout
        while not self.call("acquire_lock", name, self.caller):
            if time.monotonic() >= deadline:
                raise BoardError(f"lock {name!r} on {self.describe()} not had within {timeout:g} s")
            time.sleep(LOCK_POLL_S)
        try:
            yield
        finally:
            with contextlib.suppress(BoardError):
                self.call("release_lock", name, self.caller)

    def ping(self) -> None:
        """Raise :class:`BoardError` unless the server answers."""
        self.get("swarm:ping")
