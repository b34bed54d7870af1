"""The bus benchmark's integrity scan: the byte-level pass agrees with the real reader's rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from conductor_perf.bench import bus_bench
from conductor_perf.formats import bus


def _write(path: Path, writers: int = 3, per_writer: int = 20) -> None:
    for seq in range(per_writer):
        for w in range(writers):
            msg = bus.Message(type="FACT", project_id="perf-bench", task_id="task-bench", run_id=f"writer-{w}",
                              body=bus_bench.body_for(w, seq))  # fmt: skip
            bus.append(path, msg)


def _slow(path: Path, monkeypatch: pytest.MonkeyPatch):
    with monkeypatch.context() as m:
        m.setattr(bus_bench, "_scan_uniform", lambda raw: None)
        return bus_bench.scan_counts(path)


def test_uniform_file_takes_the_fast_pass_with_the_readers_result(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "TASK-MESSAGE-BUS.md"
    _write(path)
    assert bus_bench._scan_uniform(path.read_bytes()) is not None
    fast = bus_bench.scan_counts(path)
    assert fast == _slow(path, monkeypatch)
    assert fast[1:] == (0, 0, 60)
    assert bus_bench.check_integrity(path, {0: 20, 1: 20, 2: 20}).ok


@pytest.mark.parametrize(
    "damage",
    [
        "torn-body",  # one body cut short: the reader skips or garbles it
        "interleaved",  # another writer's bytes in the middle of a message
        "foreign",  # a message that is not the benchmark's
        "bad-month",  # a timestamp the reader does not parse
        "other-writer",  # a body under another writer's run_id
        "trailing-garbage",
    ],
)
def test_damaged_files_give_the_readers_result(tmp_path: Path, monkeypatch, damage: str) -> None:
    path = tmp_path / "TASK-MESSAGE-BUS.md"
    _write(path)
    raw = path.read_bytes()
    if damage == "torn-body":
        raw = raw.replace(b"message w1 #5\n", b"message w1 #", 1)
    elif damage == "interleaved":
        raw = raw.replace(b"run_id: writer-2\n", b"run_id: wri---\nmsg_id: MSG-x\nter-2\n", 1)
    elif damage == "foreign":
        path.write_bytes(raw)
        bus.append(path, bus.Message(type="INFO", project_id="perf-bench", task_id="task-bench", body="hello"))
        raw = path.read_bytes()
    elif damage == "bad-month":
        stamp = raw.index(b"ts: ") + 4
        raw = raw[:stamp] + b"2026-13" + raw[stamp + 7 :]
    elif damage == "other-writer":
        raw = raw.replace(b"run_id: writer-1\n---\nperf test message w1 #3", b"run_id: writer-0\n---\nperf test message w1 #3")
    else:
        raw += b"\nxx"
    path.write_bytes(raw)
    assert bus_bench.scan_counts(path) == _slow(path, monkeypatch)
    expected = {0: 20, 1: 20, 2: 20}
    assert not bus_bench.check_integrity(path, expected).ok or damage in ("foreign", "trailing-garbage")


def test_month_check_falls_back_to_the_reader(tmp_path: Path) -> None:
    path = tmp_path / "TASK-MESSAGE-BUS.md"
    _write(path, writers=1, per_writer=2)
    raw = path.read_bytes()
    stamp = raw.index(b"ts: ") + 4
    raw = raw[:stamp] + b"2026-13" + raw[stamp + 7 :]
    assert bus_bench._scan_uniform(raw) is None
    path.write_bytes(raw)
    seen, torn, foreign, parsed = bus_bench.scan_counts(path)
    assert parsed == 1  # the reader skips the message with month 13


def test_empty_file_scans_to_nothing(tmp_path: Path) -> None:
    assert bus_bench._scan_uniform(b"") is not None
    assert bus_bench.scan_counts(tmp_path / "missing.md")[3] == 0
