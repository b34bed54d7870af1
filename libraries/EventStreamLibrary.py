"""Server-Sent Events streams for acceptance tests: open, listen while acting, check what arrived."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

from _perf_base import seconds
from robot.api import logger
from robot.api.deco import keyword, library

from conductor_perf.acceptance import behaviour
from conductor_perf.acceptance.streams import EventRecorder, RecordedEvent, StreamProblem, count, names


@library(scope="GLOBAL", auto_keywords=False)
class EventStreamLibrary:
    """Opens SSE streams and checks the events they deliver against the documented stream contract.

    `Use Event Stream Server` names the server (base URL, API key) that relative stream paths go to.
    A stream is read on a background thread from `Open Event Stream` until `Close Event Stream`,
    so a test can act (post messages, start a run) while it listens, then wait for and check what
    arrived. Streams have a name (``default`` unless given) so one test can hold several.

    Every wait is bounded. A stream that is refused, answers something other than
    ``text/event-stream``, ends early or stays silent fails the keyword with the request, the
    answer head and the events received so far. Rules cited in failures are anchors of
    ``docs/api-behaviour.md``.

    The client is the project's SSE client (``conductor_perf.measure.sse``), driven through its
    public methods by ``conductor_perf.acceptance.streams``.

    Example:
    | `Use Event Stream Server`    ${url}
    | `Open Event Stream`    api/v1/messages/stream?project_id=p    name=bus
    | POST On Session    conductor    /api/v1/messages    json=${message}
    | `Wait Until Stream Has Events`    1    event=message    name=bus    timeout=10 s
    | `Stream Message Ids Should Be`    ${msg_id}    name=bus
    | `Close Event Stream`    bus
    """

    def __init__(self) -> None:
        self._streams: dict[str, EventRecorder] = {}
        self._base = ""
        self._api_key = ""

    @keyword
    def use_event_stream_server(self, url: str, *, api_key: str = "") -> None:
        """Open relative stream paths on the server at ``url`` (``http://host:port/``), with ``api_key``
        (sent as ``Authorization: Bearer``) unless a stream is given its own.

        Example:
        | `Use Event Stream Server`    http://127.0.0.1:14355/    api_key=${key}
        """
        self._base = url if url.endswith("/") else url + "/"
        self._api_key = api_key

    def _get(self, name: str) -> EventRecorder:
        try:
            return self._streams[name]
        except KeyError:
            raise AssertionError(f"no open event stream {name!r}: open it with 'Open Event Stream'") from None

    @keyword
    def open_event_stream(self, url: str, *, name: str = "default", last_event_id: str = "", api_key: str = "",
                          timeout: timedelta = timedelta(seconds=10)) -> dict[str, str]:  # fmt: skip
        """Open the SSE stream at ``url`` (with ``Last-Event-ID`` when given) and start recording its events.

        A relative ``url`` (``api/v1/...``) is opened on the server of `Use Event Stream Server`, with its
        API key unless ``api_key`` is given.

        Waits at most ``timeout`` for the answer head; fails unless it is 200 ``text/event-stream``.
        Returns the answer's headers.

        Example:
        | ${headers} =    `Open Event Stream`    ${url}api/v1/runs/${run}/stream    name=run    last_event_id=s=1;e=0
        """
        if name in self._streams:
            self.close_event_stream(name)
        if not url.startswith(("http://", "https://")):
            if not self._base:
                raise AssertionError(
                    f"relative stream path {url!r}: name the server with 'Use Event Stream Server'"
                )
            url = self._base + url.lstrip("/")
            api_key = api_key or self._api_key
        rec = EventRecorder(url, api_key=api_key, last_event_id=last_event_id)
        rec.open(seconds(timeout))
        self._streams[name] = rec
        logger.info(f"{rec.request()}\nanswer:  {rec.status} {json.dumps(rec.headers)}")
        return dict(rec.headers)

    @keyword
    def event_stream_header_should_be(self, header: str, expected: str, *, name: str = "default",
                                      rule: str = "sse-headers") -> str:  # fmt: skip
        """The stream's answer carries ``header`` equal to ``expected`` (names compared case-insensitively).

        Example:
        | `Event Stream Header Should Be`    Cache-Control    no-cache    name=run
        """
        rec = self._get(name)
        value = next((v for k, v in rec.headers.items() if k.lower() == header.lower()), None)
        if value is None or value.strip().lower() != expected.strip().lower():
            got = "missing" if value is None else repr(value)
            raise behaviour.departure(f"{header} is {got}, expected {expected!r}", rule, rec.evidence())
        return value

    @keyword
    def close_event_stream(self, name: str = "default") -> None:
        """Close one stream (logging every event it delivered); nothing happens for an unknown name.

        Example:
        | `Close Event Stream`    bus
        """
        rec = self._streams.pop(name, None)
        if rec is not None:
            rec.close()
            logger.info(f"stream {name!r} closed\n{rec.evidence()}")

    @keyword
    def close_all_event_streams(self) -> None:
        """Close every open stream (a test teardown).

        Example:
        | [Teardown]    `Close All Event Streams`
        """
        for name in list(self._streams):
            self.close_event_stream(name)

    @keyword
    def wait_until_stream_has_events(self, amount: int, *, event: str = "", name: str = "default",
                                     timeout: timedelta = timedelta(seconds=10)) -> list[dict[str, Any]]:  # fmt: skip
        """Wait until the stream delivered ``amount`` events (named ``event``, or of any name but
        ``heartbeat``); returns them as dictionaries (``event``, ``id``, ``data``, ``json``).

        Example:
        | ${events} =    `Wait Until Stream Has Events`    3    event=message    name=bus
        """
        rec = self._get(name)

        def enough(evs: list[RecordedEvent]) -> bool:
            return len(_select(evs, event)) >= amount

        what = f"{amount} {event or 'non-heartbeat'} events"
        events = rec.wait(enough, timeout=seconds(timeout), what=what)
        return [e.as_dict() for e in _select(events, event)]

    @keyword
    def wait_until_stream_goes_quiet(self, *, event: str = "", name: str = "default",
                                     quiet: timedelta = timedelta(seconds=1),
                                     timeout: timedelta = timedelta(seconds=10)) -> list[dict[str, Any]]:  # fmt: skip
        """Wait until the stream delivered at least one event (named ``event``, or of any name but
        ``heartbeat``) and then none for ``quiet``; returns those events. For a burst of unknown length
        (a stream's catch-up), checked afterwards.

        Example:
        | `Wait Until Stream Goes Quiet`    event=message    name=bus    quiet=1 s
        """
        rec = self._get(name)
        end = time.monotonic() + seconds(timeout)
        rec.wait(
            lambda evs: bool(_select(evs, event)),
            timeout=seconds(timeout),
            what=f"a {event or 'non-heartbeat'} event",
        )
        while True:
            selected = _select(rec.events, event)
            idle = time.monotonic() - selected[-1].received_s
            if idle >= seconds(quiet):
                return [e.as_dict() for e in selected]
            if time.monotonic() >= end:
                raise behaviour.departure(f"{event or 'non-heartbeat'} events kept arriving for {seconds(timeout):g} s",
                                          "message-stream", rec.evidence())  # fmt: skip
            time.sleep(min(seconds(quiet) - idle, max(0.0, end - time.monotonic())) + 0.01)

    @keyword
    def wait_until_stream_has_event(self, event: str, *, name: str = "default",
                                    timeout: timedelta = timedelta(seconds=10), **fields: str) -> dict[str, Any]:  # fmt: skip
        """Wait for an event named ``event`` whose JSON data has each of ``fields`` (compared as text);
        returns it.

        Example:
        | `Wait Until Stream Has Event`    status    name=run    status=completed
        """
        rec = self._get(name)

        def matches(ev: RecordedEvent) -> bool:
            data = ev.json()
            return ev.event == event and (not fields or (isinstance(data, dict) and all(
                str(data.get(k)) == str(v) for k, v in fields.items())))  # fmt: skip

        wanted = event + (" with " + ", ".join(f"{k}={v}" for k, v in fields.items()) if fields else "")
        events = rec.wait(
            lambda evs: any(matches(e) for e in evs), timeout=seconds(timeout), what=f"a {wanted} event"
        )
        return next(e for e in events if matches(e)).as_dict()

    @keyword
    def stream_should_stay_quiet(self, *, name: str = "default", event: str = "",
                                 duration: timedelta = timedelta(seconds=1),
                                 rule: str = "message-stream-resume") -> None:  # fmt: skip
        """No further event named ``event`` (or of any name but ``heartbeat``) arrives for ``duration``.

        Example:
        | `Stream Should Stay Quiet`    name=bus    event=message    duration=1 s
        """
        rec = self._get(name)
        before = len(_select(rec.events, event))
        try:
            events = rec.wait(
                lambda evs: len(_select(evs, event)) > before, timeout=seconds(duration), what=""
            )
        except StreamProblem:
            return
        extra = _select(events, event)[before:]
        raise behaviour.departure(f"{len(extra)} more {event or 'non-heartbeat'} events arrived: "
                                  + "; ".join(e.brief() for e in extra[:5]), rule,
                                  rec.evidence())  # fmt: skip

    @keyword
    def stream_event_names_should_be(
        self, *expected: str, name: str = "default", rule: str = "run-stream"
    ) -> None:
        """The names of the events delivered so far, heartbeats left out, are exactly ``expected``.

        Example:
        | `Stream Event Names Should Be`    status    log    log    log    status    name=run
        """
        rec = self._get(name)
        got = names(rec.events)
        if got != list(expected):
            raise behaviour.departure(
                f"events arrived as {got}, expected {list(expected)}", rule, rec.evidence()
            )

    @keyword
    def stream_events_should_have_shape(self, event: str, shape: str, *, name: str = "default") -> int:
        """Every event named ``event`` delivered so far carries JSON data of the documented ``shape``; returns
        how many there were.

        Example:
        | `Stream Events Should Have Shape`    log    log event    name=run
        """
        rec = self._get(name)
        selected = [e for e in rec.events if e.event == event]
        behaviour.check_shapes([e.json() for e in selected], shape, evidence=rec.evidence(),
                               subject=f"{event} events")  # fmt: skip
        return len(selected)

    @keyword
    def stream_log_lines_should_be(self, *lines: str, name: str = "default", stream: str = "stdout") -> None:
        """The ``log`` events of one output ``stream`` carry exactly ``lines``, in order, with cursor ids
        ``s=N;e=M`` that count up by one line each.

        Example:
        | `Stream Log Lines Should Be`    alpha    beta    gamma    name=run
        """
        rec = self._get(name)
        logs = [e for e in rec.events if e.event == "log" and (e.json() or {}).get("stream") == stream]
        got = [(e.json() or {}).get("line") for e in logs]
        problems = []
        if got != list(lines):
            problems.append(f"{stream} lines arrived as {got}, expected {list(lines)}")
        counters = [_cursor(e.id, "s" if stream == "stdout" else "e") for e in logs]
        if any(c is None for c in counters):
            problems.append(f"log ids {[e.id for e in logs]} are not all s=<n>;e=<m> cursors")
        elif any(b != a + 1 for a, b in zip(counters, counters[1:], strict=False)):
            problems.append(f"{stream} cursors {counters} do not count up by one line per event")
        if problems:
            raise behaviour.departure("; ".join(problems), "run-stream", rec.evidence())

    @keyword
    def stream_message_ids_should_be(self, *messages: Any, name: str = "default",
                                     rule: str = "message-stream-resume") -> None:  # fmt: skip
        """The ``message`` events delivered so far are exactly ``messages``, in order, none twice, each with
        its msg_id as the event id. A message is its id, or a dictionary with ``msg_id`` (what the
        acceptance resource's ``Post Message`` returns).

        Example:
        | `Stream Message Ids Should Be`    @{ids}    name=bus
        """
        rec = self._get(name)
        msg_ids = [m["msg_id"] if isinstance(m, dict) else str(m) for m in messages]
        received = [e for e in rec.events if e.event == "message"]
        got = [e.id for e in received]
        problems = []
        if got != list(msg_ids):
            missed = [i for i in msg_ids if i not in got]
            extra = [i for i in got if i not in msg_ids]
            twice = sorted({i for i in got if got.count(i) > 1})
            problems.append(f"{len(got)} message events arrived, expected {len(msg_ids)}: missed {len(missed)} "
                            f"{_few(missed)}, not expected {len(extra)} {_few(extra)}, repeated {len(twice)} "
                            f"{_few(twice)}" + ("" if missed or extra or twice else f"; order {got}"))  # fmt: skip
        mismatched = [e.id for e in received if (e.json() or {}).get("msg_id") != e.id]
        if mismatched:
            problems.append(f"events whose id differs from their data's msg_id: {mismatched}")
        if problems:
            raise behaviour.departure("; ".join(problems), rule, rec.evidence())

    @keyword
    def stream_heartbeats_should_arrive_every(self, interval: timedelta, *, name: str = "default",
                                              heartbeats: int = 2,
                                              tolerance: timedelta = timedelta(seconds=1)) -> float:  # fmt: skip
        """Wait for ``heartbeats`` heartbeat events with data ``{}``, none later than ``interval`` + ``tolerance``
        after the previous one (or after the stream opened); returns the longest gap in seconds.

        Example:
        | `Stream Heartbeats Should Arrive Every`    1 s    name=bus    heartbeats=2    tolerance=1 s
        """
        rec = self._get(name)
        limit = seconds(interval) + seconds(tolerance)
        events = rec.wait(lambda evs: count(evs, "heartbeat") >= heartbeats, timeout=limit * heartbeats + 1,
                          what=f"{heartbeats} heartbeat events, one at least every {limit:g} s")  # fmt: skip
        beats = [e for e in events if e.event == "heartbeat"][:heartbeats]
        times = [rec.opened_s] + [e.received_s for e in beats]
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        problems = [f"heartbeat data is {e.data!r}, not {{}}" for e in beats if e.data.strip() != "{}"]
        if max(gaps) > limit:
            problems.append(f"gaps between heartbeats {[round(g, 2) for g in gaps]} s exceed {limit:g} s")
        logger.info(f"heartbeat gaps: {[round(g, 3) for g in gaps]} s (interval {seconds(interval):g} s)")
        if problems:
            raise behaviour.departure("; ".join(problems), "heartbeat", rec.evidence())
        return max(gaps)

    @keyword
    def get_stream_events(self, *, name: str = "default", event: str = "") -> list[dict[str, Any]]:
        """The events delivered so far (named ``event``, or all but heartbeats) as dictionaries.

        Example:
        | ${events} =    `Get Stream Events`    name=bus    event=message
        """
        return [e.as_dict() for e in _select(self._get(name).events, event)]


def _few(ids: list[str], limit: int = 5) -> str:
    """Up to ``limit`` ids, with how many more."""
    if not ids:
        return "[]"
    more = f" and {len(ids) - limit} more" if len(ids) > limit else ""
    return f"{ids[:limit]}{more}"


def _select(events: list[RecordedEvent], event: str) -> list[RecordedEvent]:
    if event:
        return [e for e in events if e.event == event]
    return [e for e in events if e.event != "heartbeat"]


def _cursor(event_id: str | None, key: str) -> int | None:
    """The ``s`` or ``e`` counter of a run-stream cursor ``s=N;e=M``."""
    if not event_id:
        return None
    for part in event_id.replace(",", ";").split(";"):
        k, _, v = part.partition("=")
        if k.strip() == key and v.strip().isdigit():
            return int(v)
    return None
