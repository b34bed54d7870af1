"""Keyword libraries: documented, arguments converted, verdict messages, skip reasons (no Robot run)."""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from robot.libdoc import LibraryDocumentation

LIBRARIES = Path(__file__).resolve().parent.parent / "libraries"
sys.path.insert(0, str(LIBRARIES))

import _perf_base  # noqa: E402

from conductor_perf.context import RunContext  # noqa: E402
from conductor_perf.records import load_records  # noqa: E402
from conductor_perf.target import Target  # noqa: E402

LIBRARY_FILES = sorted(LIBRARIES.glob("*Library.py"))


def test_there_are_keyword_libraries():
    assert len(LIBRARY_FILES) >= 3


@pytest.mark.parametrize("path", LIBRARY_FILES, ids=lambda p: p.stem)
def test_every_library_and_keyword_is_documented_with_an_example(path):
    doc = LibraryDocumentation(str(path))
    assert doc.doc.strip(), f"{path.stem} has no library documentation"
    assert doc.keywords, f"{path.stem} has no keywords"
    undocumented = [kw.name for kw in doc.keywords if not kw.doc.strip()]
    assert not undocumented, f"keywords without documentation in {path.stem}: {undocumented}"
    without_example = [kw.name for kw in doc.keywords if "Example" not in kw.doc]
    assert not without_example, f"keywords without an example in {path.stem}: {without_example}"


@pytest.mark.parametrize("path", LIBRARY_FILES, ids=lambda p: p.stem)
def test_keyword_names_are_title_case_phrases(path):
    for kw in LibraryDocumentation(str(path)).keywords:
        words = kw.name.split()
        assert all(w[0].isupper() or w[0].isdigit() for w in words), kw.name
        assert not kw.name.startswith(("Given", "When", "Then")), kw.name


def test_durations_arrive_as_timedelta():
    doc = LibraryDocumentation(str(LIBRARIES / "MessageBusLibrary.py"))
    (kw,) = [k for k in doc.keywords if k.name == "Measure Bus Write Throughput"]
    types = {a.name: [t.name for t in a.type.nested] if a.type and a.type.nested else (a.type.name if a.type else None)
             for a in kw.args}  # fmt: skip
    assert types["duration"] == "timedelta"
    assert types["writers"] == "int"
    assert _perf_base.seconds(timedelta(seconds=2.5)) == 2.5
    assert _perf_base.seconds("3") == 3.0


@pytest.fixture
def session(tmp_path, monkeypatch):
    """A run context of its own, as ConductorLibrary would hold it (no Robot run needed)."""
    ctx = RunContext(results_dir=tmp_path, profile="quick", attempt=2)
    monkeypatch.setattr(_perf_base, "find_run_context", lambda: ctx)
    return ctx


def test_figure_records_passes_and_fails_with_figure_target_and_unit(session, tmp_path):
    assert _perf_base.figure("bus write throughput", 1234.5, "msg/s", ">", 1000) == 1234.5
    with pytest.raises(AssertionError) as err:
        _perf_base.figure("sse log delivery latency p95", 250, "ms", "<", 200)
    assert str(err.value) == "sse log delivery latency p95: 250 ms (target < 200 ms): FAIL"
    assert err.value.ROBOT_CONTINUE_ON_FAILURE  # the test goes on to its other figures
    _perf_base.figure("runs seeded", 10, "runs")
    records = load_records(tmp_path)
    assert [r["verdict"] for r in records] == ["pass", "fail", "info"]
    assert {(r["profile"], r["attempt"]) for r in records} == {("quick", 2)}  # from the run context
    assert records[0]["target"] == "> 1000 msg/s"
    assert records[1]["message"].endswith("FAIL")
    assert (
        json.loads((tmp_path / "metrics.d").glob("*.jsonl").__next__().read_text().splitlines()[0])["unit"]
        == "msg/s"
    )


def test_keywords_without_a_sut_fail_with_one_line(session):
    with pytest.raises(AssertionError, match="no conductor: call 'Start Or Attach Conductor'"):
        _perf_base.require_target()


def test_file_level_keyword_skips_when_external_sut_has_no_root(session, monkeypatch):
    session.target = Target(kind="external", url="http://127.0.0.1:1/")
    reasons = []

    class Skipped(Exception):
        pass

    def fake_skip(reason):
        reasons.append(reason)
        raise Skipped(reason)

    monkeypatch.setattr(_perf_base, "skip", fake_skip)
    with pytest.raises(Skipped):
        _perf_base.require_root()
    assert reasons == ["file-level test needs the SUT's runs root: set CONDUCTOR_ROOT"]


def test_without_a_run_context_keywords_fail_with_one_line(monkeypatch):
    monkeypatch.setattr(_perf_base, "find_run_context", lambda: None)
    with pytest.raises(AssertionError, match="no conductor: call 'Start Or Attach Conductor'"):
        _perf_base.figure("bus write throughput", 1.0, "msg/s")


def test_run_context_reads_the_runners_environment(tmp_path):
    ctx = RunContext.from_environment(environ={"CONDUCTOR_PERF_RESULTS": str(tmp_path / "run"),
                                               "CONDUCTOR_PERF_ATTEMPT": "2"})  # fmt: skip
    assert ctx.results_dir == (tmp_path / "run").resolve() and ctx.results_dir.is_dir()
    assert (ctx.attempt, ctx.profile, ctx.target, ctx.last_fault) == (2, "default", None, None)
    fault = ctx.note_fault("kill", 123.5, pid=42)
    assert ctx.last_fault == fault and (fault.kind, fault.at, fault.pid) == ("kill", 123.5, 42)
    other = RunContext.from_environment(results_dir=tmp_path / "other", profile="quick", environ={})
    other.record(metric="m", value=1.0)
    assert other.records and not ctx.records  # two contexts share nothing
    assert load_records(tmp_path / "other")[0]["profile"] == "quick"


CHART_CALLS = ("chart_series", "chart_percentiles", "log_chart", "_log_leak_charts", "hotspots_html", "_native_html")


@pytest.mark.parametrize("path", LIBRARY_FILES, ids=lambda p: p.stem)
def test_every_keyword_that_logs_a_chart_is_tagged_to_open_in_the_log(path):
    import ast

    source = path.read_text(encoding="utf-8")
    bodies = {node.name: ast.get_source_segment(source, node) or ""
              for node in ast.walk(ast.parse(source)) if isinstance(node, ast.FunctionDef)}  # fmt: skip
    # a function charts when it calls a chart helper, or a private helper of its own that does
    charting_fns = {name for name, body in bodies.items() if any(call in body for call in CHART_CALLS)}
    grown = True
    while grown:
        more = {name for name, body in bodies.items() if name not in charting_fns
                and any(f"self.{helper}(" in body for helper in charting_fns if helper.startswith("_"))}  # fmt: skip
        charting_fns |= more
        grown = bool(more)
    charting = {name.replace("_", " ").title().replace(" ", "") for name in charting_fns}
    for kw in LibraryDocumentation(str(path)).keywords:
        tagged = _perf_base.CHART_TAG in kw.tags
        assert tagged == (kw.name.replace(" ", "").replace("-", "") in {c.replace("-", "") for c in charting}), (
            f"{path.stem}.{kw.name}: logs a chart but lacks the tag {_perf_base.CHART_TAG!r}, or has it without one"
        )


def test_the_runner_opens_the_chart_keywords_in_the_log(tmp_path):
    from conductor_perf import run

    assert run.CHART_TAG == _perf_base.CHART_TAG
    args = run._parser().parse_args([])
    cmd = run.robot_command(args, tmp_path, [])
    assert cmd[cmd.index("--expandkeywords") + 1] == f"tag:{_perf_base.CHART_TAG}"


class _FakeBuiltIn:
    messages: list[str] = []

    def get_variable_value(self, name, default=None):
        return default

    def get_library_instance(self, name):
        raise RuntimeError(f"no library {name}")

    def set_test_message(self, message):
        if self.in_suite_setup:
            raise RuntimeError("'Set Test Message' keyword cannot be used in suite setup or teardown.")
        self.messages.append(message)

    in_suite_setup = False


def test_every_figure_of_a_test_shows_in_its_message(session, monkeypatch):
    fake = _FakeBuiltIn()
    fake.messages = []
    monkeypatch.setattr(_perf_base, "BuiltIn", lambda: fake)
    monkeypatch.setattr(_perf_base, "context", lambda: ("Bus", "Bus Is Fast"))
    _perf_base.figure("file system directory creation p50", 12.5, "us", headline_figure=False)
    _perf_base.figure("bus write throughput", 54718.7, "msg/s", ">", 1000)
    _perf_base.figure("bus messages lost", 0, "messages", "==", 0)
    _perf_base.figure("bus append latency p50", 0.0123, "ms")
    with pytest.raises(AssertionError):
        _perf_base.figure("bus append latency p95", 2, "ms", "<", 1)
    assert fake.messages[-1] == (
        "bus write throughput 54718.7 msg/s (target > 1000 msg/s); bus messages lost 0 messages (target == 0 "
        "messages); bus append latency p50 0.0123 ms; bus append latency p95 2 ms (target < 1 ms) FAIL"
    )
    monkeypatch.setattr(_perf_base, "context", lambda: ("Bus", "Another Test"))
    _perf_base.figure("bus read-all latency p95", 10.3, "ms", "<", 50, invalid_reason="load generator saturated")
    assert fake.messages[-1] == "bus read-all latency p95 10.30 ms (target < 50 ms)"  # each test its own message
    monkeypatch.setattr(_perf_base, "context", lambda: ("Api", ""))  # a suite setup: no test message
    _perf_base.figure("task history", 100, "tasks")
    fake.in_suite_setup = True
    monkeypatch.setattr(_perf_base, "context", lambda: ("Api", "Teardown Of A Suite"))
    _perf_base.figure("task history", 100, "tasks")  # Robot refuses: the figure is still recorded
    assert len(fake.messages) == 5


def test_figures_are_keyed_by_the_test_name_as_written(session, monkeypatch):
    class Holder:
        test_as_written = ("Bus Over ${BUS_MIN_MSG_PER_S} Messages", "Bus Over 2000 Messages")

    class Fake:
        def get_library_instance(self, name):
            assert name == _perf_base.CONTEXT_HOLDER
            return Holder()

        def set_test_message(self, message):
            pass

    names = {"${SUITE NAME}": "Suites.Bus", "${TEST NAME}": "Bus Over 2000 Messages"}
    monkeypatch.setattr(_perf_base, "robot_var", lambda name, default=None: names.get(name, default))
    monkeypatch.setattr(_perf_base, "BuiltIn", lambda: Fake())
    assert _perf_base.context() == ("Bus", "Bus Over ${BUS_MIN_MSG_PER_S} Messages")
    _perf_base.figure("bus write throughput", 2500, "msg/s", ">", 2000)
    rec = session.records[-1]
    assert rec["test"] == "Bus Over ${BUS_MIN_MSG_PER_S} Messages"  # the key: the same whatever the override
    assert rec["title"] == "Bus Over 2000 Messages"  # the name as run, for the summaries
    names["${TEST NAME}"] = "Another Test"  # the listener's name is of another test: the name as run
    assert _perf_base.context() == ("Bus", "Another Test")


def test_a_figure_in_the_teardown_of_a_failed_test_keeps_the_failure_message(session, monkeypatch):
    fake = _FakeBuiltIn()
    fake.messages = []
    monkeypatch.setattr(_perf_base, "BuiltIn", lambda: fake)
    monkeypatch.setattr(_perf_base, "context", lambda: ("Reliability", "A Fault Test"))
    monkeypatch.setattr(_perf_base, "robot_var", lambda name, default=None: "FAIL" if name == "${TEST STATUS}" else default)
    _perf_base.figure("conductor restarted", 1, "restarts")
    assert fake.messages == []  # Robot would replace the failure message with it
    assert session.records[-1]["metric"] == "conductor restarted"  # still recorded
