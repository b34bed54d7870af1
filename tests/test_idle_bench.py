"""Idle CPU bench: the CPU figures of a series, and one measurement on the reference conductor."""

from __future__ import annotations

import httpx
import pytest

from conductor_perf.bench import idle_bench
from conductor_perf.measure.monitor import ResourceSample, ResourceSeries
from conductor_perf.target import Target, start_embedded


def _sample(t: float, window: float | None, core_pct: float | None, ncpu: int = 2) -> ResourceSample:
    machine = None if core_pct is None else core_pct / ncpu
    return ResourceSample(t_s=t, wall=1e9 + t, window_s=window, rss_bytes=1, uss_bytes=None, pss_bytes=None,
                          cpu_percent=core_pct, cpu_children_percent=0.0, cpu_machine_percent=machine,
                          cpu_total_machine_percent=machine, threads=5, open_fds=10, tcp_connections=2,
                          tcp_established=1, children=1, children_rss_bytes=1)  # fmt: skip


def test_cpu_figures_weight_samples_by_their_window():
    series = ResourceSeries(pid=1, interval_s=0.5, ncpu=2,
                            samples=[_sample(0.5, 0.5, 0.0), _sample(1.0, 0.5, 0.0), _sample(2.5, 1.5, 100.0)])  # fmt: skip
    mean, peak, core_mean, n = idle_bench.cpu_figures(series)
    # 1.5 s of a full core out of 2.5 s, on 2 cores: 30 % of the machine, 60 % of one core
    assert mean == pytest.approx(30.0)
    assert core_mean == pytest.approx(60.0)
    assert peak == pytest.approx(50.0)
    assert n == 3


def test_cpu_figures_of_an_empty_or_cpu_less_series_are_zero():
    assert idle_bench.cpu_figures(ResourceSeries(pid=1, interval_s=0.5, ncpu=2)) == (0.0, 0.0, 0.0, 0)
    series = ResourceSeries(pid=1, interval_s=0.5, ncpu=2, samples=[_sample(0.5, 0.5, None)])
    assert idle_bench.cpu_figures(series) == (0.0, 0.0, 0.0, 0)


def test_refuses_a_target_without_pid_or_a_bad_window():
    with pytest.raises(ValueError, match="not visible"):
        idle_bench.measure_idle_stream_cpu(Target(kind="external", url="http://127.0.0.1:1/"))
    with pytest.raises(ValueError, match="window"):
        idle_bench.measure_idle_stream_cpu(Target(kind="external", url="http://127.0.0.1:1/", pid=1), window_s=0)


@pytest.mark.timeout(60)
def test_measures_a_quiet_stream_and_stops_the_run(tmp_path):
    target = start_embedded(root=tmp_path / "root", log_dir=tmp_path)
    try:
        r = idle_bench.measure_idle_stream_cpu(target, window_s=1.5, interval_s=0.25)
        assert r.stream_status == 200
        assert r.events_before.get("status") == 1  # the run's status when the stream opened
        assert "log" not in r.events  # the agent wrote nothing during the window
        assert r.samples >= 2 and len(r.cpu_series()) == r.samples  # 6 planned; a loaded machine samples late
        assert 0.0 <= r.cpu_mean_pct <= r.cpu_peak_pct <= 100.0
        assert r.run_status_after in ("failed", "completed") and not r.errors
        info = httpx.get(target.endpoint(f"/api/v1/runs/{r.run_id}"), timeout=5).json()
        assert info["status"] != "running"
        assert r.to_dict()["run_id"] == r.run_id and "series" not in r.to_dict()
    finally:
        target.stop()
