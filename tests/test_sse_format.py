"""SSE wire framing: the encoder's exact bytes and the incremental parser (WHATWG rules)."""

from __future__ import annotations

import pytest

from conductor_perf.formats.sse import Event, SSEParser, encode_comment, encode_event


def test_encode_log_event_has_real_server_layout() -> None:
    data = '{"run_id":"r1","stream":"stdout","line":"x","timestamp":"2026-01-01T00:00:00Z"}'
    assert encode_event(data, event="log", id="s=4;e=0") == (
        b"id: s=4;e=0\nevent: log\ndata: " + data.encode() + b"\n\n"
    )


def test_encode_without_id_and_event() -> None:
    assert encode_event("hello") == b"data: hello\n\n"


def test_encode_empty_data_becomes_braces_like_the_real_server() -> None:
    assert encode_event("", event="heartbeat") == b"event: heartbeat\ndata: {}\n\n"


def test_encode_multiline_data_one_data_line_per_line() -> None:
    assert encode_event("a\nb\r\nc\rd") == b"data: a\ndata: b\ndata: c\ndata: d\n\n"


def test_encode_rejects_line_break_in_id() -> None:
    with pytest.raises(ValueError):
        encode_event("x", id="a\nb")


def test_encode_comment() -> None:
    assert encode_comment("ping") == b": ping\n\n"


def test_parse_round_trip_of_encoder_output() -> None:
    events = [("log", "s=1;e=0", '{"line":"a"}'), ("status", None, '{"status":"running"}'),
              ("heartbeat", None, "{}"), ("message", "MSG-1", "multi\nline")]  # fmt: skip
    wire = b"".join(encode_event(d, event=e, id=i) for e, i, d in events)
    parsed = SSEParser().feed(wire)
    assert [(p.event, p.id, p.data) for p in parsed] == events


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_parse_accepts_every_line_ending(newline: bytes) -> None:
    wire = newline.join([b"id: 7", b"event: log", b"data: one", b"data: two", b"", b""])
    assert SSEParser().feed(wire) == [Event(data="one\ntwo", event="log", id="7")]


def test_parse_byte_by_byte_including_crlf_split() -> None:
    wire = b"\xef\xbb\xbfevent: a\r\ndata: \xc3\xa9t\xc3\xa9\r\n\r\n: comment\r\ndata: b\r\n\r\n"
    parser = SSEParser()
    out: list[Event] = []
    for i in range(len(wire)):
        out += parser.feed(wire[i:i + 1])
    assert out == [Event(data="\u00e9t\u00e9", event="a"), Event(data="b")]


def test_parse_comments_retry_unknown_fields_and_space_rules() -> None:
    parser = SSEParser()
    events = parser.feed(b": hi\nretry: 1500\nfoo: bar\ndata:x\ndata:  y\n\nretry: 1.5\ndata\n\n")
    assert events == [Event(data="x\n y", retry=1500), Event(data="")]
    assert parser.retry == 1500


def test_parse_last_event_id_persists_and_nul_ids_are_ignored() -> None:
    parser = SSEParser()
    first = parser.feed(b"id: 1\ndata: a\n\n")
    second = parser.feed(b"data: b\n\nid: 2\x003\ndata: c\n\n")
    assert first[0].id == "1"
    assert second[0].id is None and second[1].id is None
    assert parser.last_event_id == "1"


def test_parse_block_without_data_dispatches_nothing_but_sets_id() -> None:
    parser = SSEParser()
    assert parser.feed(b"id: 9\nevent: x\n\n") == []
    assert parser.last_event_id == "9"


def test_parse_incomplete_trailing_event_is_not_dispatched() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\n\ndata: b\n") == [Event(data="a")]
    assert parser.feed(b"\n") == [Event(data="b")]


def test_reset_keeps_last_event_id() -> None:
    parser = SSEParser()
    parser.feed(b"id: 5\ndata: a\n\ndata: partial")
    parser.reset()
    assert parser.last_event_id == "5"
    assert parser.feed(b"\n\n") == []
