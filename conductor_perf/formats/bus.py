"""conductor-loop's message bus file format: one implementation for the suite and the reference server.

A bus file (``TASK-MESSAGE-BUS.md`` / ``PROJECT-MESSAGE-BUS.md``) is a sequence of messages, each
``---`` / YAML header / ``---`` / body, separated by one blank line (conductor-loop's ``internal/messagebus``).

* :func:`serialize` produces the exact bytes of the real server (yaml.v3 key order, ``run_id: ""``,
  4-space nested YAML, meta keys sorted, numbers/timestamps double-quoted).
* :func:`parse` reproduces the real reader's rules: legacy one-line records only before the first
  ``---``, a header that fails to parse swallows lines up to the next ``---``, a torn trailing
  message (no final newline) is dropped, and every body but the last keeps one trailing ``\\n``.
* :func:`append` writes with ``O_APPEND`` under an exclusive ``flock`` on the bus file itself
  (10 s lock timeout, 3 attempts with 100/200 ms backoff); readers take no lock.
"""

from __future__ import annotations

import calendar
import fcntl
import itertools
import os
import re
import stat as _stat
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .locking import flock_until, try_flock
from .yamlio import block_value, emit_list_of_maps, emit_string_map, parse_flat, scalar

TASK_BUS = "TASK-MESSAGE-BUS.md"
PROJECT_BUS = "PROJECT-MESSAGE-BUS.md"

LOCK_TIMEOUT_S = 10.0
LOCK_POLL_S = 0.010
MAX_ATTEMPTS = 3
RETRY_BACKOFF_S = 0.100

RUN_START, RUN_STOP, RUN_CRASH = "RUN_START", "RUN_STOP", "RUN_CRASH"


class BusError(Exception):
    """A bus file could not be written or read."""


class BusLockTimeout(BusError):
    """The exclusive lock on a bus file was not acquired in time."""


class MessageNotFound(BusError, KeyError):
    """A ``since``/``after`` message id is not in the bus."""

    def __str__(self) -> str:  # KeyError would repr() the argument
        return str(self.args[0]) if self.args else "message id not found"


@dataclass(slots=True)
class Parent:
    """A structured parent reference (``parents`` list item)."""

    msg_id: str
    kind: str = ""
    meta: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Link:
    """An advisory link (``links`` list item)."""

    url: str
    label: str = ""
    kind: str = ""


@dataclass(slots=True)
class Message:
    """One bus message. ``ts_ns`` is the UTC timestamp in nanoseconds since the epoch."""

    type: str
    project_id: str
    body: str = ""
    task_id: str = ""
    run_id: str = ""
    msg_id: str = ""
    ts_ns: int = 0
    issue_id: str = ""
    parents: list[Parent] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    meta: dict[str, str] = field(default_factory=dict)

    @property
    def timestamp(self) -> str:
        """RFC3339Nano text of ``ts_ns`` (trailing zeros trimmed, as Go prints it)."""
        return format_rfc3339nano(self.ts_ns)


# --------------------------------------------------------------------------- time and ids

_second_cache: tuple[int, str, str] = (-1, "", "")


def _second_parts(sec: int) -> tuple[str, str]:
    """Return (``YYYY-MM-DDTHH:MM:SS``, ``YYYYMMDD-HHMMSS``) for an epoch second, cached."""
    global _second_cache
    cached = _second_cache
    if cached[0] == sec:
        return cached[1], cached[2]
    t = time.gmtime(sec)
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", t)
    compact = time.strftime("%Y%m%d-%H%M%S", t)
    _second_cache = (sec, iso, compact)
    return iso, compact


def format_rfc3339nano(ts_ns: int) -> str:
    """Format nanoseconds since the epoch like Go's ``time.RFC3339Nano`` in UTC."""
    sec, frac = divmod(ts_ns, 1_000_000_000)
    iso = _second_parts(sec)[0]
    if frac:
        return f"{iso}.{frac:09d}".rstrip("0") + "Z"
    return iso + "Z"


_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|z|[+-]\d{2}:\d{2})?$"
)


def parse_rfc3339(text: str) -> int:
    """Parse an RFC3339(Nano) timestamp into UTC nanoseconds. Raises ``ValueError``."""
    m = _RFC3339.match(text.strip())
    if not m:
        raise ValueError(f"not an RFC3339 timestamp: {text!r}")
    y, mo, d, h, mi, s, frac, tz = m.groups()
    sec = calendar.timegm((int(y), int(mo), int(d), int(h), int(mi), int(s), 0, 0, 0))
    if tz and tz not in ("Z", "z"):
        sign = 1 if tz[0] == "+" else -1
        sec -= sign * (int(tz[1:3]) * 3600 + int(tz[4:6]) * 60)
    return sec * 1_000_000_000 + (int(frac.ljust(9, "0")) if frac else 0)


class MessageIdGenerator:
    """Generates ids ``MSG-<YYYYMMDD>-<HHMMSS>-<ns 9>-PID<pid%100000 5>-<seq%10000 4>`` (UTC).

    The counter is process-wide in the real server; ``itertools.count`` is atomic under the GIL, so
    one generator can be shared by threads.
    """

    def __init__(self, pid: int | None = None) -> None:
        self.pid = (os.getpid() if pid is None else pid) % 100000
        self._seq = itertools.count(1)

    def next(self, now_ns: int | None = None) -> tuple[str, int]:
        """Return a new ``(msg_id, ts_ns)``; the id and the timestamp share the clock reading."""
        ts = time.time_ns() if now_ns is None else now_ns
        sec, frac = divmod(ts, 1_000_000_000)
        compact = _second_parts(sec)[1]
        return f"MSG-{compact}-{frac:09d}-PID{self.pid:05d}-{next(self._seq) % 10000:04d}", ts


DEFAULT_IDS = MessageIdGenerator()


def _reset_ids_in_child() -> None:
    # a forked writer must not reuse the parent's pid and counter in its ids
    DEFAULT_IDS.pid = os.getpid() % 100000
    DEFAULT_IDS._seq = itertools.count(1)


os.register_at_fork(after_in_child=_reset_ids_in_child)


# --------------------------------------------------------------------------- serialize


def serialize_header(msg: Message) -> str:
    """The YAML header of a message in yaml.v3's field order and quoting."""
    parts = [
        "msg_id: ", msg.msg_id if msg.msg_id.startswith("MSG-") else scalar(msg.msg_id), "\n",
        "ts: ", format_rfc3339nano(msg.ts_ns), "\n",
        "type: ", scalar(msg.type), "\n",
        "project_id: ", scalar(msg.project_id), "\n",
        "task_id: ", scalar(msg.task_id), "\n",
        "run_id: ", scalar(msg.run_id), "\n",
    ]  # fmt: skip
    if msg.issue_id:
        parts.append(block_value("issue_id", msg.issue_id))
    if msg.parents:
        items = []
        for p in msg.parents:
            pairs: list[tuple[str, object]] = [("msg_id", p.msg_id)]
            if p.kind:
                pairs.append(("kind", p.kind))
            if p.meta:
                pairs.append(("meta", p.meta))
            items.append(pairs)
        parts.append(emit_list_of_maps("parents", items))
    if msg.links:
        items = []
        for link in msg.links:
            pairs = [("url", link.url)]
            if link.label:
                pairs.append(("label", link.label))
            if link.kind:
                pairs.append(("kind", link.kind))
            items.append(pairs)
        parts.append(emit_list_of_maps("links", items))
    if msg.meta:
        parts.append(emit_string_map("meta", msg.meta))
    return "".join(parts)


def serialize(msg: Message) -> bytes:
    """The bytes of one message as the real server appends it (without the separator line)."""
    body = msg.body
    tail = "" if body.endswith("\n") else "\n"
    return f"---\n{serialize_header(msg)}---\n{body}{tail}".encode()


def prepare(msg: Message, ids: MessageIdGenerator = DEFAULT_IDS) -> Message:
    """Validate a message and assign its id and timestamp (as the server does before locking)."""
    if not msg.type.strip():
        raise BusError("message type is empty")
    if not msg.project_id.strip():
        raise BusError("project id is empty")
    msg.msg_id, now = ids.next()
    if not msg.ts_ns:
        msg.ts_ns = now
    if msg.type == "ISSUE" and not msg.issue_id:
        msg.issue_id = msg.msg_id
    return msg


# --------------------------------------------------------------------------- append

_process_locks: dict[str, threading.Lock] = {}
_process_locks_guard = threading.Lock()


def _process_lock(path: str) -> threading.Lock:
    lock = _process_locks.get(path)
    if lock is None:
        with _process_locks_guard:
            lock = _process_locks.setdefault(path, threading.Lock())
    return lock


def validate_bus_path(path: str | os.PathLike[str]) -> None:
    """Reject a symlink or a non-regular file at the bus path (a missing file is fine)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if _stat.S_ISLNK(st.st_mode):
        raise BusError(f"message bus path {str(path)!r} is a symlink")
    if not _stat.S_ISREG(st.st_mode):
        raise BusError(f"message bus path {str(path)!r} is not a regular file")


def _flock(fd: int, deadline: float) -> None:
    """Exclusive flock on the bus file before ``deadline`` (see :mod:`.locking` for the polling)."""
    try:
        locked = flock_until(fd, deadline, max_pause=LOCK_POLL_S)
    except OSError as exc:
        raise BusError(f"flock: {exc}") from exc
    if not locked:
        raise BusLockTimeout("lock timeout")


def _write_locked(fd: int, data: bytes, fsync: bool) -> None:
    """Write one message under the held flock (separator line first when the file is non-empty)."""
    try:
        if os.fstat(fd).st_size > 0:
            data = b"\n" + data
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            if n == 0:
                raise BusError("short write")
            view = view[n:]
        if fsync:
            os.fsync(fd)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _try_append(path: str, data: bytes, fsync: bool, lock_timeout: float) -> None:
    deadline = time.monotonic() + lock_timeout
    # Writers of this process queue on a thread lock first, so the cross-process flock is only
    # contended by other processes (the 10 ms poll would otherwise throttle same-process threads).
    local = _process_lock(path)
    if not local.acquire(timeout=max(0.0, lock_timeout)):
        raise BusLockTimeout("lock timeout")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            _flock(fd, deadline)
            _write_locked(fd, data, fsync)
        finally:
            os.close(fd)
    finally:
        local.release()


def append_nowait(path: str | os.PathLike[str], data: bytes, *, fsync: bool = False) -> bool:
    """One non-blocking attempt to append serialized message bytes; ``False`` if the lock is busy.

    For event-loop callers: when this returns ``False`` nothing was written and the caller should
    fall back to :func:`append_prepared` in a worker thread. Raises :class:`BusError` on I/O errors.
    """
    path = os.fspath(path)
    validate_bus_path(path)
    local = _process_lock(path)
    if not local.acquire(blocking=False):
        return False
    try:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise BusError(f"append to {path}: {exc.strerror or exc}") from exc
        try:
            try:
                if not try_flock(fd):
                    return False
            except OSError as exc:
                raise BusError(f"flock: {exc}") from exc
            try:
                _write_locked(fd, data, fsync)
            except OSError as exc:
                raise BusError(f"append to {path}: {exc.strerror or exc}") from exc
        finally:
            os.close(fd)
    finally:
        local.release()
    return True


def append(
    path: str | os.PathLike[str],
    msg: Message,
    *,
    fsync: bool = False,
    lock_timeout: float = LOCK_TIMEOUT_S,
    attempts: int = MAX_ATTEMPTS,
    ids: MessageIdGenerator = DEFAULT_IDS,
) -> str:
    """Append one message (id and timestamp assigned here) and return its ``msg_id``.

    Raises :class:`BusLockTimeout` after ``attempts`` lock timeouts and :class:`BusError` on any
    other failure; nothing already in the file is touched.
    """
    prepare(msg, ids)
    append_prepared(path, serialize(msg), fsync=fsync, lock_timeout=lock_timeout, attempts=attempts)
    return msg.msg_id


def append_prepared(
    path: str | os.PathLike[str],
    data: bytes,
    *,
    fsync: bool = False,
    lock_timeout: float = LOCK_TIMEOUT_S,
    attempts: int = MAX_ATTEMPTS,
) -> None:
    """Append already serialized message bytes with the real server's lock and retry protocol."""
    path = os.fspath(path)
    validate_bus_path(path)
    last: BusLockTimeout | None = None
    for attempt in range(max(1, attempts)):
        if attempt:
            time.sleep(RETRY_BACKOFF_S * (1 << (attempt - 1)))
        try:
            _try_append(path, data, fsync, lock_timeout)
            return
        except BusLockTimeout as exc:
            last = exc
        except OSError as exc:
            raise BusError(f"append to {path}: {exc.strerror or exc}") from exc
    raise BusLockTimeout(
        f"append to {path} failed after {max(1, attempts)} attempts: could not lock the bus "
        f"within {lock_timeout:g} s"
    ) from last


# --------------------------------------------------------------------------- parse

_LEGACY_TYPE = re.compile(r"^[A-Za-z0-9_\-/]+$")
_LEGACY_TS = re.compile(r"^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2})$")


def _parse_legacy(line: str, line_no: int) -> Message | None:
    text = line.strip()
    if not text.startswith("["):
        return None
    closing = text.find("]")
    if closing <= 1:
        return None
    raw_ts = text[1:closing].strip()
    m = _LEGACY_TS.match(raw_ts)
    try:
        ts = parse_rfc3339(f"{m.group(1)}T{m.group(2)}Z") if m else parse_rfc3339(raw_ts)
    except ValueError:
        return None
    content = text[closing + 1 :].strip()
    if not content:
        return None
    msg_type, body = "INFO", content
    colon = content.find(":")
    if colon > 0:
        candidate = content[:colon].strip()
        if _LEGACY_TYPE.match(candidate):
            msg_type, body = candidate.upper(), content[colon + 1 :].strip()
    if not body:
        body = content
    return Message(type=msg_type, project_id="", body=body, msg_id=f"LEGACY-LINE-{line_no:09d}", ts_ns=ts)


def _message_from_header(header: str) -> Message | None:
    """Decode a header; None when it fails to parse (the real reader then skips the message)."""
    try:
        data = parse_flat(header)
        ts_raw = data.get("ts", "")
        ts = parse_rfc3339(ts_raw) if ts_raw else 0
    except (ValueError, TypeError):
        return None

    def text(key: str) -> str:
        value = data.get(key, "")
        return value if isinstance(value, str) else ""

    msg = Message(
        type=text("type"),
        project_id=text("project_id"),
        task_id=text("task_id"),
        run_id=text("run_id"),
        msg_id=text("msg_id"),
        ts_ns=ts,
        issue_id=text("issue_id"),
    )
    parents = data.get("parents")
    if isinstance(parents, list):
        for p in parents:
            if isinstance(p, str) and p:
                msg.parents.append(Parent(msg_id=p))
            elif isinstance(p, dict):
                meta = p.get("meta")
                msg.parents.append(
                    Parent(
                        msg_id=str(p.get("msg_id", "")),
                        kind=str(p.get("kind", "")),
                        meta=dict(meta) if isinstance(meta, dict) else {},
                    )
                )
    links = data.get("links")
    if isinstance(links, list):
        for link in links:
            if isinstance(link, dict):
                msg.links.append(
                    Link(
                        url=str(link.get("url", "")),
                        label=str(link.get("label", "")),
                        kind=str(link.get("kind", "")),
                    )
                )
    meta = data.get("meta")
    if isinstance(meta, dict):
        msg.meta = {str(k): str(v) for k, v in meta.items()}
    return msg


def _finalize_body(lines: list[str]) -> str:
    text = "".join(lines)
    if text.endswith("\n"):
        text = text[:-1]
    if text.endswith("\r"):
        text = text[:-1]
    return text


def parse(data: bytes | str) -> list[Message]:
    """Parse bus file content with the real reader's rules (see module docstring)."""
    return _parse(data)[0]


def parse_tail(data: bytes) -> tuple[list[Message], int]:
    """:func:`parse` plus the byte offset of the ``---`` line that opens the last parsed message.

    Parsing again from that offset (after more bytes were appended) yields that message first and
    then everything after it, with the same results as parsing the whole file; a tail reader
    (the reference conductor's message stream) re-reads from there instead of from byte 0. The
    offset is 0 when no framed message was parsed.
    """
    messages, start_line = _parse(data)
    if start_line <= 0:
        return messages, 0
    # line indexes are the same for bytes and decoded text: "\n" never changes under decoding
    return messages, len(b"\n".join(data.split(b"\n", start_line)[:start_line])) + 1


def _parse(data: bytes | str) -> tuple[list[Message], int]:
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes | bytearray) else data
    messages: list[Message] = []
    seek, header_state, body_state = 0, 1, 2
    state = seek
    header: list[str] = []
    body: list[str] = []
    current: Message | None = None
    # 0-based index of the "---" line that opened the current header, and of the last appended message
    header_open = current_start = last_start = -1
    for line_no, line in enumerate(_split_lines(text), start=1):
        stripped = line.rstrip("\r\n")
        if state == body_state:
            if stripped == "---":
                if current is not None:
                    current.body = _finalize_body(body)
                    messages.append(current)
                    last_start = current_start
                header = []
                header_open = line_no - 1
                state = header_state
            else:
                body.append(line)
        elif state == header_state:
            if stripped == "---":
                current = _message_from_header("".join(header))
                header = []
                if current is None:
                    header_open = line_no - 1
                    continue  # stays in header state, like the real reader
                current_start = header_open
                body = []
                state = body_state
            else:
                header.append(line)
        else:
            if stripped == "---":
                state = header_state
                header_open = line_no - 1
                header = []
            else:
                legacy = _parse_legacy(stripped, line_no)
                if legacy is not None:
                    messages.append(legacy)
    if state == body_state and current is not None and body and body[-1].endswith("\n"):
        current.body = _finalize_body(body)
        messages.append(current)
        last_start = current_start
    return messages, last_start


def _split_lines(text: str) -> list[str]:
    """Split on ``\\n`` only (kept), like Go's ``ReadString('\\n')``."""
    lines = text.split("\n")
    out = [line + "\n" for line in lines[:-1]]
    if lines[-1]:
        out.append(lines[-1])
    return out


def read(path: str | os.PathLike[str]) -> list[Message]:
    """Read every message of a bus file without a lock; a missing file gives ``[]``."""
    validate_bus_path(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        return []
    return parse(data)


def after(messages: Sequence[Message], msg_id: str) -> list[Message]:
    """Messages after the first one whose id is ``msg_id`` (file order); empty id → all.

    Raises :class:`MessageNotFound` for an unknown id.
    """
    if not msg_id.strip():
        return list(messages)
    for i, m in enumerate(messages):
        if m.msg_id == msg_id:
            return list(messages[i + 1 :])
    raise MessageNotFound(f"message id not found: {msg_id}")


def task_bus_path(root: str | os.PathLike[str], project_id: str, task_id: str) -> Path:
    """``<root>/<project>/<task>/TASK-MESSAGE-BUS.md``."""
    return Path(root) / project_id / task_id / TASK_BUS


def project_bus_path(root: str | os.PathLike[str], project_id: str) -> Path:
    """``<root>/<project>/PROJECT-MESSAGE-BUS.md``."""
    return Path(root) / project_id / PROJECT_BUS
