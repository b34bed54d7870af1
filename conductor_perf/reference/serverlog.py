"""The reference conductor's log: conductor-loop's ``key=value`` lines, buffered and cheap.

Lines look like the real server's::

    2026/03/01 12:00:00 ts=2026-03-01T12:00:00.123456789Z level=INFO subsystem=api event=request_completed request_id=req-... ...

Values are quoted like Go's ``strconv.Quote`` when empty or when they contain spaces, ``=`` or
quotes; values of sensitive keys are written as ``[REDACTED]``. Lines are collected in memory and
written at most every 0.2 s (or at 64 KiB) by a timer that exists only while lines are pending, so
an idle server schedules nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import IO

from ..formats.bus import format_rfc3339nano

_SENSITIVE = ("token", "secret", "password", "passwd", "api_key", "apikey", "authorization", "auth",
              "cookie", "session", "private_key", "ssh_key", "access_key", "refresh_token")  # fmt: skip
_QUOTE_CHARS = frozenset(' \t\n\r="')

FLUSH_DELAY_S = 0.2
FLUSH_BYTES = 64 * 1024


def go_quote(value: str) -> str:
    """An approximation of Go's ``strconv.Quote`` (JSON escaping without HTML escapes)."""
    return json.dumps(value, ensure_ascii=False)


_sensitive_keys: dict[str, bool] = {}


def _is_sensitive(key: str) -> bool:
    known = _sensitive_keys.get(key)
    if known is None:
        known = _sensitive_keys[key] = any(part in key for part in _SENSITIVE)
    return known


def encode_value(key: str, value: object) -> str:
    """``key=value`` the way conductor-loop's obslog writes it."""
    if _is_sensitive(key):
        text = "[REDACTED]"
    elif value is None:
        text = ""
    else:
        text = str(value).strip()
    if not text:
        return f'{key}=""'
    if _QUOTE_CHARS.isdisjoint(text):
        return f"{key}={text}"
    return f"{key}={go_quote(text)}"


class ServerLog:
    """Buffered writer of log lines to a file (appended) or to stderr."""

    def __init__(self, path: str | os.PathLike[str] | None = None, stream: IO[str] | None = None) -> None:
        self._fd: int | None = None
        self._stream = stream
        if path is not None:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        elif stream is None:
            self._stream = sys.stderr
        self._buf: list[str] = []
        self._size = 0
        self._timer: asyncio.TimerHandle | None = None
        self._sec = -1
        self._prefix = ""

    def _date_prefix(self, now_ns: int) -> str:
        sec = now_ns // 1_000_000_000
        if sec != self._sec:
            self._sec = sec
            self._prefix = time.strftime("%Y/%m/%d %H:%M:%S ", time.localtime(sec))
        return self._prefix

    def event(self, level: str, subsystem: str, event: str, **fields: object) -> None:
        """Log one structured line (``ts``, ``level``, ``subsystem``, ``event``, then the fields)."""
        now = time.time_ns()
        parts = [f"ts={format_rfc3339nano(now)} level={level} subsystem={subsystem} event={event}"]
        for key, value in fields.items():
            parts.append(encode_value(key, value))
        self.write_line(self._date_prefix(now) + " ".join(parts))

    def request(self, request_id: str, method: str, path: str, status: int, nbytes: int, duration_ms: int,
                project_id: str, task_id: str, run_id: str) -> None:  # fmt: skip
        """The ``request_completed`` line of one HTTP request (hot path: no generic field loop)."""
        now = time.time_ns()
        rid = encode_value("request_id", request_id)
        self.write_line(
            f"{self._date_prefix(now)}ts={format_rfc3339nano(now)} level=INFO subsystem=api "
            f"event=request_completed {rid} {encode_value('correlation_id', request_id)} method={method} "
            f"{encode_value('path', path)} status={status} bytes={nbytes} duration_ms={duration_ms} "
            f"{encode_value('project_id', project_id)} {encode_value('task_id', task_id)} "
            f"{encode_value('run_id', run_id)}"
        )

    def write_line(self, line: str) -> None:
        """Queue one raw line; it is written within :data:`FLUSH_DELAY_S`."""
        self._buf.append(line)
        self._size += len(line) + 1
        if self._size >= FLUSH_BYTES:
            self.flush()
        elif self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
                return
            self._timer = loop.call_later(FLUSH_DELAY_S, self.flush)

    def flush(self) -> None:
        """Write everything pending now."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._buf:
            return
        data = "\n".join(self._buf) + "\n"
        self._buf = []
        self._size = 0
        try:
            if self._fd is not None:
                raw = data.encode("utf-8", "replace")
                view = memoryview(raw)
                while view:
                    view = view[os.write(self._fd, view):]
            elif self._stream is not None:
                self._stream.write(data)
                self._stream.flush()
        except OSError:
            pass

    def close(self) -> None:
        """Flush and close the file."""
        self.flush()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
