"""Evidence of one HTTP exchange, and a requests transport that fails with it instead of a traceback.

An acceptance test that fails must show what was sent and what came back. :func:`describe_exchange`
writes both in a few lines (method, URL, request body, status, content type, answer body, each
cut to :data:`EXCERPT` characters)::

    request: POST http://127.0.0.1:41234/api/v1/tasks
      body: {"project_id": "acc", ...}
    answer:  500 Internal Server Error (text/html, 21 bytes)
      body: <h1>oops</h1>

Transport failures never produce an answer, so requests raises its own exceptions, whose text
names neither the path nor the wait. :class:`EvidenceAdapter`, mounted on a requests session
(RequestsLibrary's ``Create Session`` returns one), turns them into :class:`TransportFailure`, an
``AssertionError`` that Robot reports as a plain failure: a server that accepts the connection and
never answers, one that answers part of a body and stops (a hang mid-body is bounded by a total
deadline, not only by the per-read timeout), a refused connection, a connection closed without an
answer, an answer cut off before its announced length.

Example::

    session = requests.Session()
    install(session, deadline_s=5)
    session.get(url, timeout=5)   # TransportFailure: GET http://...: no answer within 5 s ...
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter

from .behaviour import EXCERPT, excerpt

__all__ = ["EXCERPT", "EvidenceAdapter", "TransportFailure", "describe_answer", "describe_exchange",
           "describe_request", "excerpt", "install"]  # fmt: skip


class TransportFailure(AssertionError):
    """No complete answer arrived (time-out, refused, closed, cut off); the message says which, for which request."""

    ROBOT_SUPPRESS_NAME = True  # Robot shows the message alone, as for AssertionError


def _request_body(body: Any) -> str:
    if body is None or body == b"" or body == "":
        return ""
    if isinstance(body, bytes | bytearray | str):
        return excerpt(body)
    return f"({type(body).__name__} body)"  # a file or generator: not read twice


def describe_request(
    method: str, url: str, body: Any = None, headers: Mapping[str, str] | None = None
) -> str:
    """``request: METHOD URL`` plus the body (and ``Last-Event-ID``, which changes what a stream sends)."""
    lines = [f"request: {method.upper()} {url}"]
    if headers and headers.get("Last-Event-ID"):
        lines.append(f"  Last-Event-ID: {headers['Last-Event-ID']}")
    text = _request_body(body)
    if text:
        lines.append(f"  body: {text}")
    return "\n".join(lines)


def describe_answer(status: int, reason: str, headers: Mapping[str, str], body: bytes | str) -> str:
    """``answer: STATUS REASON (content type, size)`` plus the body."""
    size = len(body.encode() if isinstance(body, str) else body)
    ctype = headers.get("Content-Type", "no Content-Type")
    lines = [f"answer:  {' '.join(str(x) for x in (status, reason) if x)} ({ctype}, {size} bytes)"]
    if size:
        lines.append(f"  body: {excerpt(body)}")
    return "\n".join(lines)


def describe_exchange(response: requests.Response) -> str:
    """Request and answer of a requests response, as shown in failure messages and the log."""
    req = response.request
    return (describe_request(req.method or "?", req.url or "?", req.body, req.headers) + "\n"
            + describe_answer(response.status_code, response.reason or "", response.headers,
                              response.content or b""))  # fmt: skip


def _read_timeout(timeout: Any) -> float | None:
    if isinstance(timeout, tuple):
        return timeout[1] if len(timeout) > 1 else timeout[0]
    return timeout


def _seconds(value: float | None) -> str:
    return "no time limit" if value is None else f"{value:g} s"


class EvidenceAdapter(HTTPAdapter):
    """A requests transport adapter: no retries, a total deadline on the body, failures with evidence.

    Args:
        deadline_s: longest time from sending a request to the last byte of its answer's body;
            the per-read timeout (the session's ``timeout``) still bounds the wait for each byte.
    """

    def __init__(self, deadline_s: float, **kwargs: Any) -> None:
        super().__init__(max_retries=0, **kwargs)
        self.deadline_s = deadline_s

    def send(self, request: requests.PreparedRequest, stream: bool = False, timeout: Any = None,
             verify: Any = True, cert: Any = None, proxies: Any = None) -> requests.Response:  # fmt: skip
        """Send, then read the whole body within :attr:`deadline_s` (unless the caller streams)."""
        start = time.monotonic()
        asked = describe_request(request.method or "?", request.url or "?", request.body, request.headers)
        read_timeout = _read_timeout(timeout)
        try:
            response = super().send(request, stream=True, timeout=timeout, verify=verify, cert=cert,
                                    proxies=proxies)  # fmt: skip
        except requests.exceptions.ConnectTimeout:
            raise TransportFailure(f"no connection within {_seconds(read_timeout)}\n{asked}") from None
        except requests.exceptions.ReadTimeout:
            raise TransportFailure(f"no answer within {_seconds(read_timeout)}: the server accepted the "
                                   f"request and sent nothing back (it hangs)\n{asked}") from None  # fmt: skip
        except requests.exceptions.ConnectionError as exc:
            raise TransportFailure(f"no answer: {_connection_problem(exc)}\n{asked}") from None
        except requests.RequestException as exc:
            raise TransportFailure(f"no answer: {type(exc).__name__}: {exc}\n{asked}") from None
        if stream:
            return response
        chunks: list[bytes] = []
        received = 0
        try:
            while True:
                chunk = response.raw.read1(65536, decode_content=True)  # what has arrived, so a cut keeps it
                if not chunk:
                    break
                chunks.append(chunk)
                received += len(chunk)
                if time.monotonic() - start > self.deadline_s:
                    raise TransportFailure(
                        f"answer {response.status_code} still incomplete after {self.deadline_s:g} s "
                        f"({received} bytes of its body so far: the server drips or hangs)\n{asked}"
                        f"\n  body so far: {excerpt(b''.join(chunks))}")  # fmt: skip
        except TransportFailure:
            response.close()
            raise
        except (urllib3.exceptions.HTTPError, OSError, requests.RequestException) as exc:
            response.close()
            what = (f"no more of the body within {_seconds(read_timeout)}"
                    if isinstance(exc, urllib3.exceptions.ReadTimeoutError | TimeoutError)
                    else f"the answer was cut off ({_short(exc)})")  # fmt: skip
            raise TransportFailure(
                f"answer {response.status_code} {response.reason}: {what} after {received} bytes of its body"
                f"\n{asked}\n  body so far: {excerpt(b''.join(chunks))}") from None  # fmt: skip
        response._content = b"".join(chunks)  # noqa: SLF001 - the documented way requests keeps a read body
        response._content_consumed = True  # noqa: SLF001
        return response


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    incomplete = re.search(r"IncompleteRead\((\d+) bytes read, (\d+) more expected\)", text)
    if incomplete:
        return f"{incomplete.group(1)} bytes read, {incomplete.group(2)} more announced"
    if "ended prematurely" in text or "InvalidChunkLength" in text:
        return "the chunked body ended prematurely"
    return text if len(text) <= 200 else text[:200] + "..."


def _connection_problem(exc: requests.exceptions.ConnectionError) -> str:
    text = str(exc)
    if "Connection refused" in text or "ECONNREFUSED" in text:
        return "connection refused (nothing listens there)"
    if "RemoteDisconnected" in text or "closed connection without response" in text:
        return "the server closed the connection without an answer"
    if "Connection reset" in text:
        return "the connection was reset"
    return _short(exc)


def install(session: requests.Session, *, deadline_s: float) -> EvidenceAdapter:
    """Mount an :class:`EvidenceAdapter` for ``http://`` and ``https://`` on ``session``; returns it."""
    adapter = EvidenceAdapter(deadline_s)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return adapter
