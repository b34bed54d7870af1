"""``<root>/_audit/form-submissions.jsonl``: one JSON line per mutating API call (as conductor-loop 0.76 writes it).

The real server appends each record under a server-wide mutex with one fsync per record, which
serializes every POST. The reference hands records to one writer thread that writes everything
queued in a single ``write`` and then fsyncs once (group commit): the same file, the same lines,
the same durability per line, without making requests wait on each other. Records are redacted
like the real server's (sensitive keys -> ``[REDACTED]``, token-like strings masked, strings cut
at 4096 characters) and payload keys are sorted (Go marshals a ``map``).

Records submitted on an event loop are collected and encoded once per loop iteration on that
loop, and the writer thread only writes and fsyncs: during a burst of requests the writer wakes
once per batch and never competes with the request handlers for the GIL with Python work.
"""

from __future__ import annotations

import asyncio
import functools
import os
import queue
import re
import threading
from typing import Any

from . import gojson

AUDIT_DIR = "_audit"
AUDIT_FILE = "form-submissions.jsonl"
REDACTED = "[REDACTED]"
MAX_STRING = 4096

_SENSITIVE = ("token", "secret", "password", "passwd", "api_key", "apikey", "authorization", "auth",
              "cookie", "session", "private_key", "ssh_key", "access_key", "refresh_token")  # fmt: skip
_TOKEN_PATTERNS = (
    re.compile(r"(?i)\b(sk|rk|pk|xox[baprs]|ghp|github_pat)_[A-Za-z0-9_\-]{8,}\b"),
    re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\b"),
    re.compile(r"(?i)\b(?:token|secret|password|passwd|api[_-]?key|authorization)\s*[:=]\s*[^\s,\"';]+"),
)
_BEARER = re.compile(r"(?i)\bBearer\s+([A-Za-z0-9\-._~+/]+=*)")


@functools.lru_cache(maxsize=4096)
def _sensitive(key: str) -> bool:
    k = key.strip().lower().replace("-", "_")
    return bool(k) and any(part in k for part in _SENSITIVE)


def sanitize_string(value: str) -> str:
    """Mask bearer tokens and token-like substrings; cut at 4096 characters."""
    if "earer" in value or "_" in value or "eyJ" in value or "=" in value or ":" in value:
        value = _BEARER.sub("Bearer " + REDACTED, value)
        for pattern in _TOKEN_PATTERNS:
            value = pattern.sub(REDACTED, value)
    if len(value) > MAX_STRING:
        return value[:MAX_STRING] + "...[TRUNCATED]"
    return value


def sanitize(value: Any, key: str = "") -> Any:
    """Redact a JSON-like value the way the real audit log does (maps come back with sorted keys)."""
    if key and _sensitive(key):
        return REDACTED
    if isinstance(value, dict):
        return {k: sanitize(value[k], k) for k in sorted(value)}
    if isinstance(value, list):
        return [sanitize(v) for v in value]
    if isinstance(value, str):
        return sanitize_string(value)
    return value


class AuditWriter:
    """Background group-commit writer of audit records (thread-safe :meth:`submit`)."""

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.path = os.path.join(os.fspath(root), AUDIT_DIR, AUDIT_FILE)
        self.fsync = fsync
        self._queue: queue.SimpleQueue[tuple[bytes, int] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._pending: list[dict[str, Any]] = []
        self._submitted = 0
        self._written = 0
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._fd: int | None = None
        self.errors = 0

    def start(self) -> None:
        """Start the writer thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
            self._thread.start()

    def submit(self, record: dict[str, Any]) -> None:
        """Queue one record (keys in Go field order; ``payload`` is sanitized when it is encoded).

        On an event loop the record is encoded with the others of the same loop iteration (one
        hand-over to the writer per iteration); elsewhere it is handed over at once.
        """
        with self._lock:
            self._submitted += 1
            self._pending.append(record)
            first = len(self._pending) == 1
        if not first:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.handoff()
            return
        loop.call_soon(self.handoff)

    def handoff(self) -> None:
        """Encode the records submitted so far and pass them to the writer thread as one write."""
        with self._lock:
            batch, self._pending = self._pending, []
        if not batch:
            return
        lines = []
        for record in batch:
            try:
                lines.append(self._encode(record) + "\n")
            except (TypeError, ValueError):  # not JSON-encodable: counted, never blocks flush()
                self.errors += 1
        self._queue.put(("".join(lines).encode("utf-8", "replace"), len(batch)))

    def _encode(self, record: dict[str, Any]) -> str:
        payload = record.get("payload")
        if payload is not None:
            record["payload"] = sanitize(payload)
        return gojson.marshal(record)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            batch = [item]
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = None in batch
            chunks = [i for i in batch if i is not None]
            count = sum(n for _, n in chunks)
            data = b"".join(chunk for chunk, _ in chunks)
            if data:
                self._write(data)
            with self._cond:
                self._written += count
                self._cond.notify_all()
            if stop:
                return

    def _write(self, data: bytes) -> None:
        try:
            if self._fd is None:
                os.makedirs(os.path.dirname(self.path), exist_ok=True)
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
            if self.fsync:
                os.fsync(self._fd)
        except OSError:
            self.errors += 1

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every record submitted so far is written (and fsynced). Returns success.

        Called off the event loop (the loop hands its records over within one iteration).
        """
        target = self._submitted
        with self._cond:
            return self._cond.wait_for(lambda: self._written >= target, timeout=timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued and stop the thread."""
        self.handoff()
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
