"""Server-Sent Events wire framing: the one encoder and the one incremental parser of the project.

conductor-loop's v1 streams (docs/conductor-loop.md, SSE) write each event as an optional ``id: <id>``
line, an optional ``event: <name>`` line, one ``data: <text>`` line per line of the payload (an
empty payload is replaced by ``{}``) and an empty line. They never send ``retry:`` or comments.

* :func:`encode_event` produces exactly those bytes (used by the reference conductor).
* :class:`SSEParser` is an incremental parser following the WHATWG event-stream rules: lines end
  in ``\\n``, ``\\r\\n`` or ``\\r`` (also when split across chunks); ``:`` lines are comments;
  ``data`` lines are joined with ``\\n``; ``id`` sets the last event id (ids with NUL are
  ignored); ``retry`` takes ASCII digits only; a block without ``data`` dispatches nothing; an
  incomplete trailing block is never dispatched; a leading UTF-8 BOM is skipped.

Example::

    >>> encode_event('{"a":1}', event="log", id="s=1;e=0")
    b'id: s=1;e=0\\nevent: log\\ndata: {"a":1}\\n\\n'
    >>> SSEParser().feed(b"event: status\\r\\ndata: x\\r\\n\\r\\n")
    [Event(data='x', event='status', id=None, retry=None)]
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Event", "SSEParser", "encode_event", "encode_comment", "EMPTY_DATA", "HEADERS"]

EMPTY_DATA = "{}"
"""What the real server sends in place of an empty payload."""

HEADERS: dict[str, str] = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "Connection": "keep-alive",
    "X-Accel-Buffering": "no",
}
"""Response headers of every conductor-loop SSE endpoint."""

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def encode_event(data: str, event: str | None = None, id: str | None = None) -> bytes:  # noqa: A002
    """The bytes of one event in the real server's layout (``id``, ``event``, ``data``..., blank line).

    ``data`` is split on line breaks (``\\n``, ``\\r\\n``, ``\\r``) into one ``data:`` line each; an
    empty ``data`` becomes ``{}`` like the real server. ``id``/``event`` are written only when
    non-empty and must not contain line breaks (``ValueError``).
    """
    parts: list[str] = []
    if id:
        if "\n" in id or "\r" in id:
            raise ValueError("SSE id must not contain a line break")
        parts.append(f"id: {id}\n")
    if event:
        if "\n" in event or "\r" in event:
            raise ValueError("SSE event name must not contain a line break")
        parts.append(f"event: {event}\n")
    if not data:
        data = EMPTY_DATA
    if "\n" in data or "\r" in data:
        for line in _LINE_BREAK.split(data):
            parts.append(f"data: {line}\n")
    else:
        parts.append(f"data: {data}\n")
    parts.append("\n")
    return "".join(parts).encode("utf-8")


def encode_comment(text: str = "") -> bytes:
    """A comment line (``: text``) plus the blank line; clients ignore it (not used by the real server)."""
    if "\n" in text or "\r" in text:
        raise ValueError("SSE comment must not contain a line break")
    return f": {text}\n\n".encode() if text else b":\n\n"


@dataclass(slots=True)
class Event:
    """One dispatched event.

    ``event`` is ``"message"`` when the block had no ``event:`` line (the WHATWG default); ``id``
    is the value of this block's ``id:`` line or ``None`` when it had none (the persistent
    last-event-id of the stream is :attr:`SSEParser.last_event_id`); ``retry`` is the block's
    ``retry:`` value in ms, if any.
    """

    data: str
    event: str = "message"
    id: str | None = None  # noqa: A003
    retry: int | None = None


class SSEParser:
    """Incremental event-stream parser: ``feed(chunk) -> [Event, ...]``.

    Keeps undecoded bytes of an unfinished line and the fields of an unfinished event between
    calls, so chunks may split anywhere (inside a UTF-8 sequence or between ``\\r`` and ``\\n``).
    """

    __slots__ = ("_buf", "_data", "_event", "_id", "_retry", "_has_data", "_pending_cr", "_started",
                 "last_event_id", "retry")  # fmt: skip

    def __init__(self) -> None:
        self._buf = b""
        self._data: list[str] = []
        self._has_data = False
        self._event = ""
        self._id: str | None = None
        self._retry: int | None = None
        self._pending_cr = False  # the previous chunk ended in "\r": a following "\n" belongs to it
        self._started = False
        self.last_event_id = ""
        """The stream's last event id (persists across events; what a reconnect sends)."""
        self.retry: int | None = None
        """The last reconnection time announced by the server (ms)."""

    def feed(self, chunk: bytes) -> list[Event]:
        """Consume bytes; return the events completed by them (possibly none)."""
        if not chunk:
            return []
        if self._pending_cr:
            self._pending_cr = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        buf = self._buf + chunk if self._buf else chunk
        if not self._started:
            if len(buf) < 3 and b"\xef\xbb\xbf".startswith(buf):
                self._buf = buf
                return []
            self._started = True
            if buf.startswith(b"\xef\xbb\xbf"):
                buf = buf[3:]
        events: list[Event] = []
        if b"\r" not in buf:
            lines = buf.split(b"\n")
            self._buf = lines.pop()
        else:
            if buf.endswith(b"\r"):
                self._pending_cr = True
            lines = re.split(rb"\r\n|\r|\n", buf)
            self._buf = lines.pop()
            if self._pending_cr:
                # "...\r" splits into [..., b""]: the last line was complete, nothing is pending
                self._buf = b""
        for raw in lines:
            self._line(raw, events)
        return events

    def _line(self, raw: bytes, events: list[Event]) -> None:
        if not raw:
            self._dispatch(events)
            return
        if raw[:1] == b":":
            return
        line = raw.decode("utf-8", errors="replace")
        field, sep, value = line.partition(":")
        if sep and value[:1] == " ":
            value = value[1:]
        if field == "data":
            self._data.append(value)
            self._has_data = True
        elif field == "event":
            self._event = value
        elif field == "id":
            if "\x00" not in value:
                self._id = value
                self.last_event_id = value
        elif field == "retry":
            if value.isascii() and value.isdigit():
                self._retry = int(value)
                self.retry = self._retry
        # unknown fields are ignored

    def _dispatch(self, events: list[Event]) -> None:
        if self._has_data:
            events.append(Event(data="\n".join(self._data), event=self._event or "message", id=self._id,
                                retry=self._retry))  # fmt: skip
        self._data = []
        self._has_data = False
        self._event = ""
        self._id = None
        self._retry = None

    def reset(self) -> None:
        """Forget a partial event and buffered bytes (keeps :attr:`last_event_id`), e.g. after a reconnect."""
        last, retry = self.last_event_id, self.retry
        self.__init__()
        self.last_event_id, self.retry = last, retry
