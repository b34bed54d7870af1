"""The message bus format: byte-exact serialization, the real reader's parse rules, safe appends."""

from __future__ import annotations

import multiprocessing as mp
import os
import threading

import pytest

from conductor_perf.formats import bus

# Contract section 4.5, line by line.
CONTRACT_EXAMPLE = (
    b"---\n"
    b"msg_id: MSG-20260301-120000-123456789-PID04242-0001\n"
    b"ts: 2026-03-01T12:00:00.123457Z\n"
    b"type: FACT\n"
    b"project_id: perf-proj\n"
    b"task_id: task-20260301-120000-bench\n"
    b'run_id: ""\n'
    b"---\n"
    b"first body\n"
    b"\n"
    b"---\n"
    b"msg_id: MSG-20260301-120000-223456789-PID04242-0002\n"
    b"ts: 2026-03-01T12:00:00.223457Z\n"
    b"type: PROGRESS\n"
    b"project_id: perf-proj\n"
    b"task_id: task-20260301-120000-bench\n"
    b"run_id: 20260301-1200000000-4242-1\n"
    b"meta:\n"
    b'    step: "2"\n'
    b"---\n"
    b"second body\n"
)


def _example_messages() -> list[bus.Message]:
    return [
        bus.Message(
            type="FACT",
            project_id="perf-proj",
            task_id="task-20260301-120000-bench",
            body="first body",
            msg_id="MSG-20260301-120000-123456789-PID04242-0001",
            ts_ns=bus.parse_rfc3339("2026-03-01T12:00:00.123457Z"),
        ),
        bus.Message(
            type="PROGRESS",
            project_id="perf-proj",
            task_id="task-20260301-120000-bench",
            run_id="20260301-1200000000-4242-1",
            body="second body",
            msg_id="MSG-20260301-120000-223456789-PID04242-0002",
            ts_ns=bus.parse_rfc3339("2026-03-01T12:00:00.223457Z"),
            meta={"step": "2"},
        ),
    ]


def test_serialize_matches_contract_example_byte_for_byte():
    first, second = _example_messages()
    assert bus.serialize(first) + b"\n" + bus.serialize(second) == CONTRACT_EXAMPLE


def test_append_to_empty_bus_writes_contract_example(tmp_path):
    path = tmp_path / bus.TASK_BUS
    for msg in _example_messages():
        bus.append_prepared(path, bus.serialize(msg))
    assert path.read_bytes() == CONTRACT_EXAMPLE
    assert oct(path.stat().st_mode & 0o777) == "0o644"


def test_parse_reproduces_body_read_back_quirk():
    first, second = bus.parse(CONTRACT_EXAMPLE)
    assert first.body == "first body\n"  # the blank separator line joins the body
    assert second.body == "second body"  # the last message loses its final newline
    assert second.meta == {"step": "2"}
    assert first.run_id == "" and second.run_id == "20260301-1200000000-4242-1"
    assert first.timestamp == "2026-03-01T12:00:00.123457Z"


def test_parents_and_links_use_four_space_yaml():
    msg = bus.Message(
        type="FACT",
        project_id="p",
        msg_id="MSG-20260301-120000-000000001-PID00001-0001",
        ts_ns=bus.parse_rfc3339("2026-03-01T12:00:00Z"),
        parents=[bus.Parent(msg_id="MSG-X-0006", kind="source_run_event")],
        links=[bus.Link(url="/abs/path/TASK-MESSAGE-BUS.md", label="task message bus", kind="task_bus")],
        meta={"z": "last", "a": "2026-03-01T12:00:00Z", "kind": "task_completion_propagation"},
        body="b",
    )
    text = bus.serialize(msg).decode()
    assert (
        "parents:\n"
        "    - msg_id: MSG-X-0006\n"
        "      kind: source_run_event\n"
        "links:\n"
        "    - url: /abs/path/TASK-MESSAGE-BUS.md\n"
        "      label: task message bus\n"
        "      kind: task_bus\n"
        "meta:\n"
        '    a: "2026-03-01T12:00:00Z"\n'
        "    kind: task_completion_propagation\n"
        "    z: last\n"
    ) in text
    assert "ts: 2026-03-01T12:00:00Z\n" in text  # no fraction when nanoseconds are zero
    (back,) = bus.parse(text.encode())
    assert back.parents == msg.parents and back.links == msg.links and back.meta == msg.meta


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain text", "plain text"),
        ("", '""'),
        ("123", '"123"'),
        ("1.5", '"1.5"'),
        ("true", '"true"'),
        ("null", '"null"'),
        ("key: value", "'key: value'"),
        ("- dash", "'- dash'"),
        ("it's", "it's"),
        ("#hash", "'#hash'"),
    ],
)
def test_meta_values_are_quoted_like_yaml_v3(value, expected):
    msg = bus.Message(type="X", project_id="p", msg_id="MSG-1", ts_ns=1, meta={"k": value})
    assert f"    k: {expected}\n" in bus.serialize(msg).decode()
    (back,) = bus.parse(bus.serialize(msg))
    assert back.meta == {"k": value}


def test_multiline_meta_value_round_trips():
    msg = bus.Message(type="X", project_id="p", msg_id="MSG-1", ts_ns=1, meta={"k": "line1\nline2"})
    (back,) = bus.parse(bus.serialize(msg))
    assert back.meta == {"k": "line1\nline2"}


def test_legacy_lines_only_before_first_separator():
    data = (
        (
            b"[2026-01-02 03:04:05] fact: old style\n"
            b"[2026-01-02T03:04:06] not a type token here\n"
            b"random text is ignored\n"
        )
        + CONTRACT_EXAMPLE
        + b"\n[2026-01-02 03:04:07] INFO: after the first separator\n"
    )
    msgs = bus.parse(data)
    assert [m.msg_id for m in msgs[:2]] == ["LEGACY-LINE-000000001", "LEGACY-LINE-000000002"]
    assert (msgs[0].type, msgs[0].body) == ("FACT", "old style")
    assert (msgs[1].type, msgs[1].body) == ("INFO", "not a type token here")
    assert msgs[0].timestamp == "2026-01-02T03:04:05Z"
    assert len(msgs) == 4
    assert msgs[-1].body.endswith("[2026-01-02 03:04:07] INFO: after the first separator")


def test_torn_trailing_message_is_dropped():
    torn = CONTRACT_EXAMPLE[:-1]  # the last message lost its final newline
    msgs = bus.parse(torn)
    assert [m.body for m in msgs] == ["first body\n"]


def test_torn_header_is_dropped():
    msgs = bus.parse(CONTRACT_EXAMPLE + b"\n---\nmsg_id: MSG-20260301-1")
    assert len(msgs) == 2


def test_bad_header_skips_that_message_only():
    bad = b"---\nmsg_id: [unclosed\nts: nope\n---\nbody of bad\n\n" + CONTRACT_EXAMPLE
    msgs = bus.parse(bad)
    # the reader stays in header state after a bad header, so the next "---" closes an empty header
    assert all(m.body != "body of bad" for m in msgs)
    assert msgs[-1].body == "second body"


def test_crlf_lines_are_tolerated():
    msgs = bus.parse(CONTRACT_EXAMPLE.replace(b"\n", b"\r\n"))
    assert [m.type for m in msgs] == ["FACT", "PROGRESS"]
    assert msgs[1].body == "second body"


def test_after_returns_messages_in_file_order_and_rejects_unknown_ids():
    msgs = bus.parse(CONTRACT_EXAMPLE)
    assert bus.after(msgs, "") == msgs
    assert bus.after(msgs, msgs[0].msg_id) == msgs[1:]
    assert bus.after(msgs, msgs[1].msg_id) == []
    with pytest.raises(bus.MessageNotFound):
        bus.after(msgs, "MSG-unknown")


def test_message_ids_have_the_real_format():
    ids = bus.MessageIdGenerator(pid=1234567)
    msg_id, ts = ids.next(now_ns=bus.parse_rfc3339("2026-11-27T17:31:53.970467578Z"))
    assert msg_id == "MSG-20261127-173153-970467578-PID34567-0001"
    assert ids.next()[0].endswith("-0002")


def test_prepare_validates_and_sets_issue_id():
    with pytest.raises(bus.BusError, match="type is empty"):
        bus.prepare(bus.Message(type=" ", project_id="p"))
    with pytest.raises(bus.BusError, match="project id is empty"):
        bus.prepare(bus.Message(type="FACT", project_id=""))
    issue = bus.prepare(bus.Message(type="ISSUE", project_id="p"))
    assert issue.issue_id == issue.msg_id


def test_symlink_bus_is_rejected(tmp_path):
    target = tmp_path / "elsewhere.md"
    target.write_text("")
    link = tmp_path / bus.TASK_BUS
    link.symlink_to(target)
    with pytest.raises(bus.BusError, match="symlink"):
        bus.append(link, bus.Message(type="FACT", project_id="p"))
    assert target.read_text() == ""


def test_lock_timeout_fails_clearly_and_leaves_file_intact(tmp_path):
    import fcntl

    path = tmp_path / bus.TASK_BUS
    bus.append(path, bus.Message(type="FACT", project_id="p", body="kept"))
    before = path.read_bytes()
    holder = os.open(path, os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)
    try:
        with pytest.raises(bus.BusLockTimeout, match="after 2 attempts"):
            bus.append(path, bus.Message(type="FACT", project_id="p"), lock_timeout=0.05, attempts=2)
    finally:
        os.close(holder)
    assert path.read_bytes() == before


def test_missing_bus_reads_empty(tmp_path):
    assert bus.read(tmp_path / "nope.md") == []


def _writer(path: str, writer: int, count: int) -> None:
    for i in range(count):
        bus.append(
            path,
            bus.Message(type="FACT", project_id="p", task_id="t", run_id=f"w{writer}", body=f"{writer}:{i}"),
        )


def test_processes_and_threads_append_without_loss_duplication_or_tearing(tmp_path):
    path = str(tmp_path / bus.TASK_BUS)
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(path, w, 300)) for w in range(4)]
    threads = [threading.Thread(target=_writer, args=(path, 10 + w, 300)) for w in range(3)]
    for p in procs:
        p.start()
    for t in threads:
        t.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    for t in threads:
        t.join(60)
    msgs = bus.read(path)
    bodies = [m.body.rstrip("\n") for m in msgs]
    expected = {f"{w}:{i}" for w in [0, 1, 2, 3, 10, 11, 12] for i in range(300)}
    assert len(bodies) == len(expected)
    assert set(bodies) == expected
    assert len({m.msg_id for m in msgs}) == len(msgs)
    # per writer, file order equals write order
    for w in [0, 3, 11]:
        seq = [int(b.split(":")[1]) for b in bodies if b.startswith(f"{w}:")]
        assert seq == sorted(seq)


def test_fsync_option_writes_the_same_bytes(tmp_path):
    a, b = tmp_path / "a.md", tmp_path / "b.md"
    for msg in _example_messages():
        data = bus.serialize(msg)
        bus.append_prepared(a, data, fsync=True)
        bus.append_prepared(b, data)
    assert a.read_bytes() == b.read_bytes() == CONTRACT_EXAMPLE
