"""Where a run's time goes: output.xml attributed to measurement windows, set-ups and the rest."""

from __future__ import annotations

from pathlib import Path

import pytest

from conductor_perf import report_cli, timing

OUTPUT = """<?xml version="1.0" encoding="UTF-8"?>
<robot generator="Robot 7.5" generated="2026-12-05T10:00:00" rpa="false" schemaversion="5">
<suite id="s1" name="Suites" source="/x/suites">
<kw name="Start Suite Run" type="SETUP"><status status="PASS" start="2026-12-05T10:00:00" elapsed="1.0"/></kw>
<suite id="s1-s1" name="Bus" source="/x/suites/01__bus.robot">
<kw name="Prepare" type="SETUP"><status status="PASS" start="2026-12-05T10:00:01" elapsed="2.0"/></kw>
<test id="s1-s1-t1" name="Bus Is Fast">
<kw name="Acquire Measurement Lock" type="SETUP"><status status="PASS" start="2026-12-05T10:00:03" elapsed="0.5"/></kw>
<kw name="Measure Bus Write Throughput" owner="MessageBusLibrary">
<arg>writers=${BUS_WRITERS}</arg><arg>duration=${BUS_DURATION}</arg>
<status status="PASS" start="2026-12-05T10:00:03.5" elapsed="14.0"/></kw>
<kw name="Get Bus Write Throughput" owner="MessageBusLibrary"><arg>&gt;</arg><arg>1000</arg>
<status status="PASS" start="2026-12-05T10:00:17.5" elapsed="0.5"/></kw>
<status status="PASS" start="2026-12-05T10:00:03" elapsed="15.5"/>
</test>
<test id="s1-s1-t2" name="Idle">
<kw name="Endpoint Template" owner="x">
<kw name="Measure Idle Stream Cpu" owner="ResourceLibrary"><arg>${IDLE_WINDOW}</arg>
<status status="PASS" start="2026-12-05T10:00:18.5" elapsed="6.0"/></kw>
<kw name="Run Concurrent Agents" owner="AgentLibrary"><arg>50</arg>
<status status="PASS" start="2026-12-05T10:00:24.5" elapsed="3.0"/></kw>
<status status="PASS" start="2026-12-05T10:00:18.5" elapsed="10.0"/></kw>
<status status="PASS" start="2026-12-05T10:00:18.5" elapsed="10.0"/>
</test>
<status status="PASS" start="2026-12-05T10:00:01" elapsed="28.0"/>
</suite>
<status status="PASS" start="2026-12-05T10:00:00" elapsed="30.0"/>
</suite>
</robot>
"""


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    (tmp_path / "output.xml").write_text(OUTPUT, encoding="utf-8")
    return tmp_path


def test_durations_in_robot_syntax() -> None:
    assert timing.duration_seconds("10 s") == 10
    assert timing.duration_seconds("0.5 s") == 0.5
    assert timing.duration_seconds("2 min") == 120
    assert timing.duration_seconds("250 ms") == 0.25
    assert timing.duration_seconds("3") == 3
    assert timing.duration_seconds("soon") is None


def test_windows_come_from_the_targets_resource_and_the_profile() -> None:
    default = timing.target_values("default")
    quick = timing.target_values("quick")
    assert timing.duration_seconds(default["BUS_DURATION"]) == 10
    assert timing.duration_seconds(quick["BUS_DURATION"]) == 2
    assert default["BUS_MIN_MSG_PER_S"] == "1000"  # the environment default of %{PERF_MESSAGEBUS_TARGET=1000}


def test_every_second_is_attributed(run_dir: Path) -> None:
    report = timing.analyse(run_dir, profile="default")
    assert report.tests == 2
    assert report.total_s == 30.0
    kinds = report.by_kind()
    assert kinds["suite setup"] == 3.0
    assert kinds["test setup"] == 0.5
    assert kinds["measuring"] == pytest.approx(14.0 + 6.0 + 3.0)
    # the template keyword is opened: its own time around the measurements is "other"
    assert kinds["other"] == pytest.approx(0.5 + 1.0)
    bus = next(i for i in report.items if i.keyword == "Measure Bus Write Throughput")
    assert bus.window_s == 10.0 and bus.outside_s == pytest.approx(4.0)
    idle = next(i for i in report.items if i.keyword == "Measure Idle Stream Cpu")
    assert idle.window_s == 5.0
    agents = next(i for i in report.items if i.keyword == "Run Concurrent Agents")
    assert agents.window_s is None and agents.outside_s == 0  # a counted workload is measurement
    assert report.windows_s == 15.0
    assert report.measuring_unwindowed_s == 3.0
    assert report.outside_s == pytest.approx(12.0)
    assert report.top(1)[0].keyword == "Measure Bus Write Throughput"


def test_quick_profile_windows(run_dir: Path) -> None:
    assert timing.analyse(run_dir / "output.xml", profile="quick").windows_s == 2.0 + 3.0


def test_render_and_cli(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert report_cli.main(["timing", str(run_dir), "--profile", "default"]) == 0
    out = capsys.readouterr().out
    assert "measurement windows" in out and "15.0 s" in out
    assert "Measure Bus Write Throughput (window 10 s of 14.0 s)" in out


def test_not_robot_output_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "output.xml").write_text("<html/>", encoding="utf-8")
    assert report_cli.main(["timing", str(tmp_path)]) == 2
    assert "not Robot output" in capsys.readouterr().err
    assert report_cli.main(["timing", str(tmp_path / "none")]) == 2
