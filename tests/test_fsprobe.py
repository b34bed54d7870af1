"""The file-system probe times directory creations and leaves them in place."""

from __future__ import annotations

from pathlib import Path

import pytest

from conductor_perf.measure.fsprobe import (
    FIGURE,
    PROBE_PREFIX,
    QUIET_PROBES,
    busy_note,
    directory_creation_cost,
    quiet_limit,
    wait_until_quiet,
)


def test_the_probe_reports_positive_costs_and_leaves_its_folders(tmp_path) -> None:
    cost = directory_creation_cost(tmp_path, count=10)
    assert cost["count"] == 10
    assert 0 < cost["p50_us"] <= cost["max_us"] and 0 < cost["mean_us"] <= cost["max_us"]
    (probe,) = list(tmp_path.iterdir())
    assert probe.name.startswith(PROBE_PREFIX)
    assert sorted(int(p.name) for p in probe.iterdir()) == list(range(10))


def test_bad_input_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(ValueError, match="count"):
        directory_creation_cost(tmp_path, count=0)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError):
        directory_creation_cost(blocker)


FIXTURE = Path(__file__).parent / "fixtures" / "fsprobe" / "after-mass-delete.txt"


def _measured_wave() -> list[tuple[float, float]]:
    """(seconds after the deletion, p50 us) as measured (see the fixture's header)."""
    rows = [line.split() for line in FIXTURE.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return [(float(t), float(p50)) for t, p50, _ in rows]


class Replay:
    """A fake clock and probe that replay a measured series: each probe answers the sample due now."""

    def __init__(self, series: list[tuple[float, float]], start: float = 0.0) -> None:
        self.series, self.now = series, start

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def probe(self, _directory: object) -> dict[str, float]:
        due = [p50 for t, p50 in self.series if t <= self.now]
        return {"p50_us": due[-1] if due else self.series[0][1]}


def test_a_steady_disk_is_quiet_after_the_probes_in_a_row(tmp_path) -> None:
    replay = Replay([(0.0, 200.0)])  # slow but steady: judged against itself, not an absolute figure
    wait = wait_until_quiet(tmp_path, timeout=60, probe=replay.probe, sleep=replay.sleep, clock=replay.clock)
    assert wait.quiet and len(wait.probes_us) == QUIET_PROBES
    assert wait.waited_s == pytest.approx(2.0 * (QUIET_PROBES - 1))
    assert "disk quiet after 8 s" in wait.summary() and "within 400 us" in wait.summary()


def test_the_waves_after_a_mass_deletion_are_waited_out() -> None:
    series = _measured_wave()
    # the wait starts 60 s after the deletion (the runner's fixed settle), as the waves begin
    replay = Replay(series, start=60.0)
    wait = wait_until_quiet("unused", timeout=300, baseline_us=16.5, probe=replay.probe, sleep=replay.sleep,
                            clock=replay.clock)  # fmt: skip
    assert wait.quiet
    quiet_at = 60.0 + wait.waited_s
    # every trough of the waves before 212 s lasted fewer than QUIET_PROBES probes
    assert quiet_at >= 212, quiet_at
    assert max(wait.probes_us[-QUIET_PROBES:]) <= quiet_limit(16.5) < min(max(p for _, p in series), 40)


def test_a_disk_that_stays_busy_is_measured_anyway_and_said_so() -> None:
    series = _measured_wave()
    replay = Replay(series, start=60.0)
    wait = wait_until_quiet("unused", timeout=60, baseline_us=16.5, probe=replay.probe, sleep=replay.sleep,
                            clock=replay.clock)  # fmt: skip
    assert not wait.quiet and wait.waited_s <= 60
    assert wait.summary().startswith("disk still busy after") and wait.summary().endswith("measuring anyway")


def test_quiet_limit_has_a_floor_of_a_few_microseconds() -> None:
    assert quiet_limit(4.0) == 14.0 and quiet_limit(100.0) == 200.0


def test_bad_wait_arguments_are_a_clear_error(tmp_path) -> None:
    for kwargs in ({"timeout": -1}, {"timeout": 1, "interval": 0}, {"timeout": 1, "probes_in_a_row": 0}):
        with pytest.raises(ValueError, match="timeout must be"):
            wait_until_quiet(tmp_path, **kwargs)


def test_the_real_probe_is_used_by_default_and_leaves_its_folders(tmp_path) -> None:
    wait = wait_until_quiet(tmp_path, timeout=0, probes_in_a_row=1)
    assert len(wait.probes_us) == 1 and wait.probes_us[0] > 0
    (probe,) = list(tmp_path.iterdir())
    assert probe.name.startswith(PROBE_PREFIX) and len(list(probe.iterdir())) == 32


def test_the_runner_judges_the_disk_against_the_runs_quietest_probe(tmp_path) -> None:
    from conductor_perf.housekeeping import scratch_paths
    from conductor_perf.records import RECORDS_DIR, MetricSink
    from conductor_perf.run import wait_for_quiet_disk

    sink = MetricSink(tmp_path / RECORDS_DIR)
    for value in (48.0, 12.5, 30.0):
        sink.record(suite="Storage", test="t", metric=FIGURE, value=value, unit="us", verdict="info")
    sink.record(suite="Storage", test="t", metric="run creation rate", value=1.0, unit="runs/s", verdict="pass")
    said = wait_for_quiet_disk(tmp_path, timeout=0)
    # one probe cannot show QUIET_PROBES quiet ones in a row: the runner measures anyway and says so
    assert said.startswith("disk still busy after 0 s") and "(quietest this run 12 us)" in said, said
    assert [p.name.startswith(PROBE_PREFIX) for p in scratch_paths(tmp_path)] == [True]


def test_the_runner_says_in_one_line_when_the_disk_cannot_be_probed(tmp_path) -> None:
    from conductor_perf.run import wait_for_quiet_disk

    blocker = tmp_path / "file"
    blocker.write_text("x")
    said = wait_for_quiet_disk(blocker, timeout=0)
    assert said.startswith("disk not probed (") and said.endswith("measuring now") and "\n" not in said


def test_a_probe_over_the_runs_quiet_limit_is_named_busy() -> None:
    assert busy_note(190.0, []) == ""  # a run's first probe has nothing to be judged against
    assert busy_note(30.0, [17.0, 48.0]) == ""  # within 2 x 17 us
    note = busy_note(190.0, [48.0, 17.0, 0.0])
    assert note.startswith("the disk is busier than earlier in this run: directory creation p50 190 us, 11.2x")
    assert "(17 us; quiet is within 34 us)" in note and "\n" not in note
