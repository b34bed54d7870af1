"""Record model: verdicts, direction, JSON types, metrics.json round trip, atomic writes, the per-process records."""

from __future__ import annotations

import json
import os
import re
import stat

import pytest
from sample_runs import full_run

from conductor_perf import environment, records
from conductor_perf.records import MetricRecord, ResultsError, RunResults

# -- records ----------------------------------------------------------------------------------------


def test_record_verdict_is_derived_when_left_empty_and_validated_when_given():
    assert MetricRecord("s", "t", "m", "msg/s", 1200, target="> 1000 msg/s").verdict == "pass"
    assert MetricRecord("s", "t", "m", "msg/s", 900, target="> 1000 msg/s").verdict == "fail"
    assert MetricRecord("s", "t", "m", "ms", None, target="< 5 ms").verdict == "invalid"
    assert MetricRecord("s", "t", "m", "ms", 3).verdict == "info"  # informational
    assert MetricRecord("s", "t", "m", "ms", 3, verdict="SKIPPED").verdict == "skipped"
    with pytest.raises(ValueError, match="verdict"):
        MetricRecord("s", "t", "m", "ms", 3, verdict="ok")


def test_record_direction_comes_from_field_target_or_unit():
    assert MetricRecord("s", "t", "m", "x", 1, higher_is_better=True).direction() is True
    assert MetricRecord("s", "t", "m", "x", 1, target="> 5 x").direction() is True
    assert MetricRecord("s", "t", "m", "ms", 1).direction() is False
    assert MetricRecord("s", "t", "m", "req/s", 1).direction() is True
    assert MetricRecord("s", "t", "m", "widgets", 1).direction() is None


def test_record_normalises_to_json_types():
    r = MetricRecord(
        "s",
        "t",
        "m",
        "ms",
        float("nan"),
        samples=[1, float("inf"), 2],
        histogram={"percentiles": {50: 1.0}},
        series={"a": [(0, 1)]},
    )
    assert r.value is None and r.samples == [1.0, 2.0]
    assert r.histogram == {"percentiles": {"50": 1.0}}
    assert r.series == {"a": [[0.0, 1.0]]}


# -- schema round trip ------------------------------------------------------------------------------


def test_schema_round_trip_write_then_load_is_equal(tmp_path):
    run = full_run()
    path = run.write(tmp_path / run.run_id)
    assert path == tmp_path / run.run_id / "metrics.json"
    loaded = RunResults.load(path.parent)
    assert loaded == run
    assert loaded.to_json() == run.to_json()
    data = json.loads(path.read_text())
    assert data["schema_version"] == records.SCHEMA_VERSION
    assert list(data)[:4] == ["schema_version", "run_id", "started", "finished"]
    rec = data["metrics"][0]
    assert {"suite", "test", "metric", "unit", "value", "target", "verdict", "message"} <= set(rec)
    assert "hdr" not in rec and "hdr" in data["metrics"][1]


def test_new_run_fills_machine_commit_and_tools(tmp_path):
    run = RunResults.new(profile="smoke", sut={"kind": "external", "url": "http://127.0.0.1:1"})
    assert re.fullmatch(r"\d{8}-\d{6}-\d+", run.run_id)
    for k in ("cpu_model", "logical_cores", "memory_bytes", "os", "python", "hostname"):
        assert k in run.machine
    assert set(run.commit) == {"sha", "dirty"}
    assert set(environment.TOOL_DISTRIBUTIONS) == set(run.tools)
    assert run.tools["robotframework"]  # installed in the venv
    assert run.sut == {"kind": "external", "url": "http://127.0.0.1:1", "version": None, "root": None}
    run.finish()
    assert RunResults.load(run.write(tmp_path / "r.json")) == run


def test_new_run_id_sorts_by_time():
    a = records.new_run_id(now=1_800_000_000, pid=99)
    b = records.new_run_id(now=1_800_000_001, pid=3)
    assert a == "20270115-080000-99" and a < b


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path):
    p = tmp_path / "metrics.json"
    full_run().write(p)
    run2 = full_run("20261127-190000-1")
    run2.write(p)
    assert RunResults.load(p).run_id == "20261127-190000-1"
    assert [x.name for x in tmp_path.iterdir()] == ["metrics.json"]
    assert stat.S_IMODE(p.stat().st_mode) == 0o644


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "no such file"),
        ("{not json", "not valid JSON (line 1"),
        ("[1, 2]", "not a metrics file"),
        ('{"run_id": "x"}', "not a metrics file"),
        ('{"run_id": "x", "metrics": [], "schema_version": 99}', "newer than supported"),
        ('{"run_id": "x", "metrics": [{"suite": "s"}]}', "metric #1"),
        (
            '{"run_id": "x", "metrics": [{"suite": "s", "test": "t", "metric": "m", "verdict": "meh"}]}',
            "verdict",
        ),
    ],
)
def test_load_errors_are_one_line(tmp_path, content, expected):
    p = tmp_path / "metrics.json"
    if content is not None:
        p.write_text(content)
    with pytest.raises(ResultsError) as exc:
        RunResults.load(p)
    assert expected in str(exc.value)
    assert "\n" not in str(exc.value)


def test_unknown_record_keys_survive_under_extra():
    rec = MetricRecord.from_dict(
        {"suite": "s", "test": "t", "metric": "m", "unit": "ms", "value": 1, "future": 7}
    )
    assert rec.extra["_unknown"] == {"future": 7}


# -- the records of a run in progress -------------------------------------------------------------


def test_each_process_appends_its_records_and_all_are_read_in_time_order(tmp_path):
    sink = records.MetricSink(tmp_path / records.RECORDS_DIR)
    first = sink.record(metric="a", value=1)
    second = sink.record(metric="b", value=2)
    assert sink.path.name == f"{os.getpid()}.jsonl" and sink.last("a") == first
    other = tmp_path / records.RECORDS_DIR / "1.jsonl"  # another process, and a line torn by a crash
    other.write_text(json.dumps({"time": first["time"] - 1, "metric": "c"}) + '\n{"time": ', encoding="utf-8")
    assert [r["metric"] for r in records.load_records(tmp_path)] == ["c", "a", "b"]
    assert records.load_records(tmp_path / "none") == [] and second["value"] == 2
