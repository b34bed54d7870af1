"""Runs and records shared by the results tests (records, history, report): built in code, no I/O."""

from __future__ import annotations

from conductor_perf.records import MetricRecord, RunResults


def full_run(run_id: str = "20261127-183000-100", **kw) -> RunResults:
    run = RunResults(
        run_id=run_id,
        started=kw.get("started", "2026-11-27T18:30:00+00:00"),
        finished=kw.get("finished", "2026-11-27T18:40:00+00:00"),
        machine={
            "cpu_model": "Test CPU",
            "logical_cores": 2,
            "memory_bytes": 2**31,
            "os": "Linux",
            "python": "3.11.7",
            "hostname": "box",
        },
        commit={"sha": "0123456789abcdef", "dirty": False},
        tools={"robotframework": "7.5", "pabot": "5.2.2", "hdrhistogram": None},
        sut={"kind": "embedded", "url": "http://127.0.0.1:8123", "version": "ref-1", "root": "/tmp/runs"},
        profile="default",
    )
    run.add(
        MetricRecord(
            "Message Bus",
            "Bus Throughput Meets Target",
            "throughput",
            "msg/s",
            1234.5,
            target="> 1000 msg/s",
            samples=[1200.0, 1234.5, 1250.25],
            series={"msg/s": [(0, 1180.0), (1, 1250.5)]},
            extra={"writers": 10},
        )
    )
    run.add(
        MetricRecord(
            "API",
            "Task Latency p95",
            "p95 latency",
            "ms",
            31.5,
            target="p95 < 50 ms",
            histogram={"unit": "ms", "count": 1000, "percentiles": {"50": 10.0, "99.9": 60.0}, "max": 90.0},
            hdr="HISTFAAAACl4nJNpmSzMwMDAzAABMBoTMF...",
            higher_is_better=False,
        )
    )
    run.add(
        MetricRecord(
            "Resources",
            "Goroutines",
            "goroutines",
            "count",
            None,
            target="< 1000",
            verdict="skipped",
            message="SUT exposes no pprof",
        )
    )
    return run


def rec(test: str, value: float) -> MetricRecord:
    return MetricRecord("Suite", test, "throughput", "msg/s", value, target="> 100 msg/s")

