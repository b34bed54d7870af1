"""A Server-Sent Events stream recorded on a background thread, for tests that act while they listen.

:class:`EventRecorder` opens one stream with :class:`conductor_perf.measure.sse.SSEClient` (the
project's SSE client and parser, used through its public methods only), keeps every event in
arrival order with its receive time, and lets the caller wait until the events received satisfy a
condition. Everything is bounded: opening (connect + response head), each wait, closing. A stream
that cannot be opened, answers something other than ``text/event-stream``, ends early or stays
silent raises :class:`StreamProblem` (an ``AssertionError``) naming the request, the answer and
the events received so far -- never a traceback.

Example::

    with EventRecorder(url + "api/v1/messages/stream?project_id=p") as rec:
        rec.open(timeout=5)
        post_three_messages()
        events = rec.wait(lambda evs: count(evs, "message") >= 3, timeout=5, what="3 message events")
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..measure.sse import SSEClient, SSEError, SSEStatusError, StreamEnded
from .evidence import describe_answer, describe_request, excerpt

__all__ = ["EventRecorder", "RecordedEvent", "StreamProblem", "count", "names", "summarize"]


class StreamProblem(AssertionError):
    """The stream could not be opened, answered wrongly, ended early or lacked the expected events."""

    ROBOT_SUPPRESS_NAME = True  # Robot shows the message alone, as for AssertionError


@dataclass(frozen=True)
class RecordedEvent:
    """One event: name (``message`` when unnamed), id (``None`` without an ``id:`` line), data, receive time."""

    event: str
    id: str | None  # noqa: A003
    data: str
    received_s: float
    """``time.monotonic()`` when it arrived."""

    def json(self) -> Any:
        """``data`` parsed as JSON (``None`` when it is not JSON)."""
        try:
            return json.loads(self.data)
        except ValueError:
            return None

    def as_dict(self) -> dict[str, Any]:
        """``{"event", "id", "data", "json"}`` for Robot."""
        return {"event": self.event, "id": self.id, "data": self.data, "json": self.json()}

    def brief(self) -> str:
        """``event[id] data`` on one line, cut short."""
        ident = f"[{self.id}]" if self.id else ""
        return f"{self.event}{ident} {excerpt(self.data, 100)}"


def names(events: Sequence[RecordedEvent], *, ignore: Sequence[str] = ("heartbeat",)) -> list[str]:
    """Event names in order, without the ignored ones."""
    return [e.event for e in events if e.event not in ignore]


def count(events: Sequence[RecordedEvent], event: str) -> int:
    """How many events are named ``event``."""
    return sum(1 for e in events if e.event == event)


def summarize(events: Sequence[RecordedEvent], limit: int = 8) -> str:
    """The events received, one per line (the first and last ``limit // 2`` when there are more)."""
    if not events:
        return "no events received"
    shown = list(events)
    lines = [f"{len(shown)} events received:"]
    if len(shown) > limit:
        half = limit // 2
        lines += [f"  {e.brief()}" for e in shown[:half]]
        lines.append(f"  ... {len(shown) - 2 * half} more ...")
        lines += [f"  {e.brief()}" for e in shown[-half:]]
    else:
        lines += [f"  {e.brief()}" for e in shown]
    return "\n".join(lines)


class EventRecorder:
    """One SSE stream read on its own thread (own event loop); events are kept until :meth:`close`.

    Args:
        url: absolute URL of the stream.
        api_key: sent as ``Authorization: Bearer`` when non-empty.
        last_event_id: ``Last-Event-ID`` header of the request (empty: none).
        connect_timeout: seconds for the TCP connect.
    """

    def __init__(self, url: str, *, api_key: str = "", last_event_id: str = "",
                 connect_timeout: float = 5.0) -> None:  # fmt: skip
        self.url = url
        self.api_key = api_key
        self.last_event_id = last_event_id
        self.connect_timeout = connect_timeout
        self.status = 0
        self.headers: dict[str, str] = {}
        self.ended = ""
        """Why the stream ended ('' while it is open)."""
        self._events: list[RecordedEvent] = []
        self._cond = threading.Condition()
        self._opened = threading.Event()
        self._open_error: BaseException | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.opened_s = 0.0

    # ------------------------------------------------------------------ describing

    def request(self) -> str:
        """The request as evidence."""
        headers = {"Last-Event-ID": self.last_event_id} if self.last_event_id else {}
        return describe_request("GET", self.url, None, headers)

    @property
    def events(self) -> list[RecordedEvent]:
        """A copy of the events received so far."""
        with self._cond:
            return list(self._events)

    def evidence(self) -> str:
        """Request, answer head, events so far and whether the stream ended."""
        parts = [self.request()]
        if self.status:
            parts.append(f"answer:  {self.status} ({self.headers.get('Content-Type', 'no Content-Type')})")
        parts.append(summarize(self.events))
        parts.append(f"stream ended: {self.ended}" if self.ended else "stream still open")
        return "\n".join(parts)

    # ------------------------------------------------------------------ lifecycle

    def open(self, timeout: float) -> None:
        """Connect and wait for the response head (at most ``timeout`` s); raise :class:`StreamProblem` unless
        it is 200 ``text/event-stream``."""
        if self._thread is not None:
            raise StreamProblem(f"stream already opened\n{self.request()}")
        self._thread = threading.Thread(target=self._run, args=(timeout,), name="acceptance-sse", daemon=True)
        self._thread.start()
        if not self._opened.wait(timeout + 1.0):
            self.close()
            raise StreamProblem(f"no answer head within {timeout:g} s\n{self.request()}")
        err = self._open_error
        if isinstance(err, SSEStatusError):
            self.close()
            raise StreamProblem(f"the stream was refused with {err.status}\n{self.request()}\n"
                                + describe_answer(err.status, "", err.headers, err.body))  # fmt: skip
        if isinstance(err, TimeoutError):
            self.close()
            raise StreamProblem(f"no answer head within {timeout:g} s (the server hangs)\n{self.request()}")
        if err is not None:
            self.close()
            raise StreamProblem(f"the stream could not be opened: {err}\n{self.request()}")
        ctype = self.headers.get("Content-Type", "")
        if not ctype.split(";", 1)[0].strip().lower() == "text/event-stream":
            self.close()
            raise StreamProblem(f"answered {self.status} with Content-Type {ctype or '(none)'!r} instead of "
                                f"text/event-stream\n{self.request()}")  # fmt: skip

    def _run(self, timeout: float) -> None:
        try:
            asyncio.run(self._main(timeout))
        except BaseException as exc:  # noqa: BLE001 - reported through the recorder, never raised on the thread
            if not self._opened.is_set():
                self._open_error = exc
                self._opened.set()
            with self._cond:
                self.ended = self.ended or f"reader failed: {type(exc).__name__}: {exc}"
                self._cond.notify_all()

    async def _main(self, timeout: float) -> None:
        # connect and answer head together within ``timeout`` (the client bounds their sum)
        connect = min(self.connect_timeout, timeout / 2)
        client = SSEClient(self.url, api_key=self.api_key, last_event_id=self.last_event_id or None,
                           connect_timeout=connect, headers_timeout=timeout - connect)  # fmt: skip
        try:
            try:
                await client.connect()
            except (SSEError, TimeoutError) as exc:
                self._open_error = exc
                return
            finally:
                self.status = client.status
                self.headers = dict(client.response_headers)
                self.opened_s = time.monotonic()
                self._opened.set()
            while not self._stop.is_set():
                try:
                    ev = await client.next_event(0.1)
                except TimeoutError:
                    continue
                except StreamEnded as exc:
                    with self._cond:
                        self.ended = f"the server ended the stream ({exc})"
                        self._cond.notify_all()
                    return
                except SSEError as exc:
                    with self._cond:
                        self.ended = f"the stream broke ({exc})"
                        self._cond.notify_all()
                    return
                with self._cond:
                    self._events.append(RecordedEvent(ev.event, ev.id, ev.data, time.monotonic()))
                    self._cond.notify_all()
        finally:
            await client.close()

    def wait(self, condition: Callable[[list[RecordedEvent]], bool], *, timeout: float,
             what: str) -> list[RecordedEvent]:  # fmt: skip
        """Wait until ``condition(events)`` holds (checked on each event); returns the events then.

        Raises :class:`StreamProblem` naming ``what`` was awaited when ``timeout`` s pass or the stream
        ends first, with the events received so far.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                events = list(self._events)
                if condition(events):
                    return events
                if self.ended:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
        why = "the stream ended first" if self.ended else f"not within {timeout:g} s"
        raise StreamProblem(f"expected {what}: {why}\n{self.evidence()}")

    def close(self, timeout: float = 5.0) -> None:
        """Stop reading and close the connection (bounded)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def __enter__(self) -> EventRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
