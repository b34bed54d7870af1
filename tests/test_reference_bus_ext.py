"""The two bus helpers the reference conductor added to formats/bus.py: parse_tail and append_nowait."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from conductor_perf.formats import bus


def _msg(i: int, body: str | None = None) -> bus.Message:
    return bus.Message(type="FACT", project_id="p", task_id="t", body=body if body is not None else f"body {i}")


def test_parse_tail_offset_reparses_to_the_same_result(tmp_path: Path) -> None:
    path = tmp_path / bus.TASK_BUS
    path.write_text("[2026-01-01 00:00:00] INFO: legacy\n")
    for i in range(3):
        bus.append(path, _msg(i, "multi\nline\n" if i == 1 else None))
    data = path.read_bytes()
    messages, offset = bus.parse_tail(data)
    assert [m.type for m in messages] == ["INFO", "FACT", "FACT", "FACT"]
    assert data[offset:].startswith(b"---\nmsg_id: " + messages[-1].msg_id.encode())
    bus.append(path, _msg(9))
    grown = path.read_bytes()
    tail_messages, _ = bus.parse_tail(grown[offset:])
    full = bus.parse(grown)
    assert [(m.msg_id, m.body) for m in tail_messages] == [(m.msg_id, m.body) for m in full[-2:]]
    assert tail_messages[0].body == "body 2\n"  # no longer the last message: the read-back quirk applies


def test_parse_tail_of_non_ascii_and_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / bus.TASK_BUS
    bus.append(path, _msg(0, "h\u00e9llo \u2603"))
    bus.append(path, _msg(1))
    data = path.read_bytes() + b"\n---\nmsg_id: MSG-torn\nts: 2026-01-01T00:00:00Z\ntype: X\n---\npartial"
    messages, offset = bus.parse_tail(data)
    assert len(messages) == 2
    assert data[offset:].startswith(b"---\nmsg_id: " + messages[1].msg_id.encode())
    assert bus.parse_tail(b"") == ([], 0)


def test_append_nowait_writes_or_reports_busy(tmp_path: Path) -> None:
    path = tmp_path / bus.TASK_BUS
    msg = bus.prepare(_msg(0))
    assert bus.append_nowait(path, bus.serialize(msg)) is True
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another holder (flock locks are per open file description)
        assert bus.append_nowait(path, bus.serialize(bus.prepare(_msg(1)))) is False
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    assert bus.append_nowait(path, bus.serialize(bus.prepare(_msg(2)))) is True
    assert [m.body for m in bus.read(path)] == ["body 0\n", "body 2"]
