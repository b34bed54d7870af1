"""FACT lines: the seed's facts first, one per test after, written in conductor-loop's bus format."""

from __future__ import annotations

from conductor_perf import facts
from conductor_perf.formats import bus


def rec(test, metric, value, verdict, unit="", target=None, extra=None):
    r = {"suite": "S", "test": test, "metric": metric, "value": value, "unit": unit, "verdict": verdict}
    if target:
        r["target"] = target
    if extra:
        r["extra"] = extra
    return r


RECORDS = [
    rec("Bus Test", "bus write throughput", 104000.5, "pass", "msg/s", "> 1000 msg/s"),
    rec("Bus Test", "bus messages lost", 0, "pass", "messages", "== 0 messages"),
    rec("SSE Test", "sse log delivery latency p95", 3.25, "pass", "ms", "< 200 ms"),
    rec("Agents Test", "agents wall time", 90.0, "pass", "s", "< 300 s", extra={"agents": 50}),
    rec("Load Test", "task submission latency p95", 96.7, "fail", "ms", "< 50 ms"),
    rec("Load Test", "task history", 100, "info", "tasks"),
    rec("Goroutines", "skipped", None, "skipped"),
]
RECORDS[-1]["message"] = "goroutine count not available"


def test_seed_facts_come_first_with_their_figures():
    bodies = facts.fact_bodies(RECORDS, sut="embedded conductor")
    assert bodies[0] == (
        "Performance benchmarks complete against embedded conductor: 3 targets met, 1 missed, "
        "0 invalid measurements, 1 skipped"
    )
    assert bodies[1] == "Message bus throughput: 104000.5 msg/sec (PASS)"
    assert bodies[2] == "SSE latency: 3.25 ms (PASS)"
    assert bodies[3] == "50 concurrent agents completed in 1.50 minutes (PASS)"


def test_one_fact_per_test_with_the_worst_verdict():
    bodies = facts.fact_bodies(RECORDS)
    per_test = bodies[4:]
    assert len(per_test) == 5
    assert per_test[0] == (
        "Bus Test: bus write throughput 104000.5 msg/s (target > 1000 msg/s); "
        "bus messages lost 0 messages (target == 0 messages): PASS"
    )
    assert per_test[3] == "Load Test: task submission latency p95 96.70 ms (target < 50 ms): FAIL"
    assert per_test[4] == "Goroutines: goroutine count not available: SKIPPED"


def test_write_facts_appends_fact_messages_in_bus_format(tmp_path):
    path = tmp_path / "MESSAGE-BUS.md"
    ids = facts.write_facts(path, RECORDS, sut="x")
    msgs = bus.read(path)
    assert [m.msg_id for m in msgs] == ids
    assert {m.type for m in msgs} == {"FACT"}
    assert msgs[0].body.startswith("Performance benchmarks complete against x")
    facts.write_facts(path, RECORDS[:1])
    assert len(bus.read(path)) == len(ids) + 3  # appended, nothing lost
