"""Linux perf hot spots: parsing captured reports, source locations, the Markdown table, capability checks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conductor_perf.bench import native_hotspots
from conductor_perf.measure import linuxperf
from conductor_perf.measure.linuxperf import NativeHotspot

FIXTURES = Path(__file__).parent / "fixtures" / "perf"
MODULE = "github.com/jonnyzzz/conductor-loop"


def _text(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def test_a_no_children_report_gives_self_shares_and_samples_in_order() -> None:
    rows, header = linuxperf.parse_report(_text("report-self.txt"))
    assert header.event == "cpu-clock:ppp" and header.samples == "1K" and header.lost_samples == 0
    assert len(rows) == 39
    first = rows[0]
    assert (first.dso, first.symbol, first.kernel) == ("run-agent", "runtime.tryDeferToSpanScan", False)
    assert (first.self_percent, first.total_percent, first.samples) == (4.77, None, 93)
    kernel = rows[1]
    assert kernel.kernel and kernel.dso == "[kernel.kallsyms]" and kernel.symbol == "finish_task_switch.isra.0"
    assert [r.self_percent for r in rows] == sorted((r.self_percent for r in rows), reverse=True)


def test_a_children_report_gives_total_and_self_and_go_names_are_unescaped() -> None:
    rows, _ = linuxperf.parse_report(_text("report-children.txt"))
    by_name = {r.symbol: r for r in rows}
    handler = by_name[f"{MODULE}/internal/api.(*Server).handleTaskList"]
    assert (handler.total_percent, handler.self_percent) == (21.24, 0.0)
    # the linker writes gopkg.in/yaml.v3 as gopkg.in/yaml%2ev3
    assert by_name["gopkg.in/yaml.v3.unmarshal"].total_percent == 52.08
    assert not any("%2e" in r.symbol for r in rows)


def test_text_that_is_not_a_report_is_refused() -> None:
    with pytest.raises(ValueError, match="no column header"):
        linuxperf.parse_report("    12.00%  something\n")
    with pytest.raises(ValueError, match="not a percentage"):
        linuxperf.parse_report("# Overhead\tShared Object\tSymbol\n 12.00 \trun-agent\t[.] main.main\n")


def test_merged_reports_hold_self_and_total_per_function() -> None:
    self_rows, _ = linuxperf.parse_report(_text("report-self.txt"))
    total_rows, _ = linuxperf.parse_report(_text("report-children.txt"))
    spots = linuxperf.merge_reports(self_rows, total_rows)
    by_name = {h.function: h for h in spots}
    scalar = by_name["gopkg.in/yaml.v3.yaml_parser_scan_plain_scalar"]
    assert scalar.self_percent == 3.34 and scalar.samples == 65
    assert scalar.total_percent >= scalar.self_percent
    handler = by_name[f"{MODULE}/internal/api.(*Server).handleTaskList"]
    assert (handler.self_percent, handler.total_percent, handler.samples) == (0.0, 21.24, 0)
    assert spots[0].function == "runtime.tryDeferToSpanScan"
    assert all(h.total_percent >= h.self_percent for h in spots)


def test_function_entries_resolve_to_their_source_lines() -> None:
    names = ["runtime.tryDeferToSpanScan", "gopkg.in/yaml.v3.yaml_parser_scan_plain_scalar",
             f"{MODULE}/internal/api.(*Server).handleTaskList", "not.in.the.binary"]  # fmt: skip
    addrs = linuxperf.parse_nm(_text("nm.txt"), names)
    assert addrs["gopkg.in/yaml.v3.yaml_parser_scan_plain_scalar"] == 0x58CC60
    assert "not.in.the.binary" not in addrs
    lines = linuxperf.parse_decodedline(_text("decodedline.txt"), addrs.values())
    file, line = lines[addrs[f"{MODULE}/internal/api.(*Server).handleTaskList"]]
    assert file.endswith("/src/internal/api/handlers.go") and line == 739
    assert linuxperf.short_path(file) == "internal/api/handlers.go"
    assert linuxperf.short_path(lines[0x58CC60][0]) == "vendor/gopkg.in/yaml.v3/scannerc.go"
    assert linuxperf.short_path("/x/go/pkg/mod/github.com/a/b@v1/c.go") == "github.com/a/b@v1/c.go"


def test_the_markdown_table_ranks_by_self_and_lists_own_functions_by_total() -> None:
    spots = [NativeHotspot("runtime.mallocgc", "run-agent", False, 5.0, 9.0, 50, "runtime/malloc.go", 1067),
             NativeHotspot("finish_task_switch", "[kernel.kallsyms]", True, 4.0, 4.0, 40),
             NativeHotspot(f"{MODULE}/internal/api.list|Runs", "run-agent", False, 0.0, 30.0, 0,
                           "internal/api/handlers.go", 12)]  # fmt: skip
    own = [h for h in spots if linuxperf.in_module(h, MODULE)]
    text = linuxperf.native_hotspots_markdown(spots, 2, title="CPU hot spots of run-agent", own=own,
                                              header=linuxperf.ReportHeader("cpu-clock", "90", 3))  # fmt: skip
    assert text.startswith("# CPU hot spots of run-agent\n")
    assert "90 samples of `cpu-clock`, 3 lost." in text
    assert "| 1 | `runtime/malloc.go:1067` | runtime.mallocgc | 5.0 | 9.0 | 50 |" in text
    assert "| 2 | `?` | [k] finish_task_switch | 4.0 | 4.0 | 40 |" in text
    assert "## The server's own functions by total share" in text
    assert f"| 1 | `internal/api/handlers.go:12` | {MODULE}/internal/api.list\\|Runs | 0.0 | 30.0 | 0 |" in text
    assert "(no samples)" in linuxperf.native_hotspots_markdown([], 5)


def test_own_functions_are_those_of_the_main_module_with_self_samples() -> None:
    mk = lambda fn, self_pct, kernel=False: NativeHotspot(fn, "run-agent", kernel, self_pct, self_pct)  # noqa: E731
    assert linuxperf.is_own(mk(f"{MODULE}/internal/api.listTaskRuns", 1.0), MODULE)
    assert linuxperf.is_own(mk("main.main", 0.5), None)
    assert not linuxperf.is_own(mk(f"{MODULE}/internal/api.listTaskRuns", 0.0), MODULE)
    assert not linuxperf.is_own(mk("gopkg.in/yaml.v3.unmarshal", 3.0), MODULE)
    assert not linuxperf.is_own(mk(f"{MODULE}/x", 3.0, kernel=True), MODULE)
    assert not linuxperf.is_own(mk(f"{MODULE}-fork/x.y", 3.0), MODULE)


def test_the_main_module_is_read_from_go_build_info(tmp_path: Path) -> None:
    exe = tmp_path / "server"
    exe.write_bytes(b"\x00ELF...\xff Go buildinf:path\texample.com/srv/cmd/srv\nmod\texample.com/srv\t(devel)\t\n"
                    b"dep\tgopkg.in/yaml.v3\tv3.0.1\t\n")  # fmt: skip
    assert linuxperf.go_main_module(exe) == "example.com/srv"
    (tmp_path / "plain").write_bytes(b"#!/bin/sh\n")
    assert linuxperf.go_main_module(tmp_path / "plain") is None
    assert linuxperf.go_main_module(tmp_path / "missing") is None


def test_write_native_hotspots_turns_two_reports_into_hotspots_md(tmp_path: Path) -> None:
    md = tmp_path / "out" / "hotspots.md"
    spots, header, text = native_hotspots.write_native_hotspots(
        _text("report-self.txt"), _text("report-children.txt"), md, top=5, title="T", notes=("Load: x.",))
    assert md.read_text(encoding="utf-8") == text
    assert header.samples == str(sum(r.samples for r in linuxperf.parse_report(_text("report-self.txt"))[0]))
    assert spots[0].function == "runtime.tryDeferToSpanScan"
    assert text.count("\n| ") == 1 + 5  # header row + 5 rows, no own table without a binary
    assert text.rstrip().endswith("Load: x.")


def test_capability_reasons_name_what_the_machine_lacks(tmp_path: Path) -> None:
    assert "not installed" in linuxperf.perf_unavailable_reason(perf="no-such-perf-tool-xyz")
    level = tmp_path / "paranoid"
    level.write_text("3\n")
    fake_perf = tmp_path / "perf"
    fake_perf.write_text("#!/bin/sh\n")
    fake_perf.chmod(0o755)
    reason = linuxperf.perf_unavailable_reason(perf=str(fake_perf), paranoid_path=level, euid=1000)
    assert "perf_event_paranoid is 3" in reason
    assert linuxperf.perf_unavailable_reason(perf=str(fake_perf), paranoid_path=level, euid=0) is None
    level.write_text("2\n")
    assert linuxperf.perf_unavailable_reason(perf=str(fake_perf), paranoid_path=level, euid=1000) is None
    assert "not readable" in linuxperf.perf_unavailable_reason(perf=str(fake_perf), paranoid_path=tmp_path / "none")


def test_commands_are_the_documented_ones() -> None:
    assert linuxperf.record_command(42, "/r/p.data", hz=99, seconds=3) == [
        "perf", "record", "-F", "99", "-g", "-p", "42", "-o", "/r/p.data", "--", "sleep", "3"]  # fmt: skip
    cmd = linuxperf.report_command("/r/p.data", children=True)
    assert cmd[:5] == ["perf", "report", "-i", "/r/p.data", "--stdio"] and "--children" in cmd
    assert "--no-children" in linuxperf.report_command("/r/p.data", children=False)
    with pytest.raises(ValueError):
        linuxperf.record_command(1, "x", hz=0)


def test_a_failing_perf_record_is_one_line_naming_its_status(tmp_path: Path) -> None:
    fake = tmp_path / "perf"
    fake.write_text("#!/bin/sh\necho 'Error:' >&2\necho 'No permission to enable cpu-clock event.' >&2\nexit 255\n")
    fake.chmod(0o755)
    log = tmp_path / "perf.log"
    proc = linuxperf.start_record(os.getpid(), tmp_path / "p.data", seconds=1, perf=str(fake), stderr_path=log)
    with pytest.raises(linuxperf.PerfError, match=r"status 255: No permission to enable cpu-clock event\.$"):
        linuxperf.wait_record(proc, tmp_path / "p.data", timeout=10, stderr_path=log)


@pytest.mark.timeout(120)
def test_perf_names_the_real_servers_go_functions_under_load(start_real_server, tmp_path: Path) -> None:
    reason = linuxperf.perf_unavailable_reason()
    if reason:
        pytest.skip(reason)
    target = start_real_server()
    report = native_hotspots.profile_native(target, tmp_path / "out", duration_s=3, agents=2)
    text = report.markdown_path.read_text(encoding="utf-8")
    assert report.module == MODULE
    # every request runs through the server's own handlers: they are on the sampled stacks (whether
    # they also get self samples in 3 s depends on the machine, so that is not asserted)
    assert any(linuxperf.in_module(h, MODULE) and h.total_percent > 0 for h in report.hotspots)
    assert all(h.function.startswith(MODULE + "/") or h.function.startswith("main.") for h in report.own_hotspots)
    assert "## The server's own functions by total share" in text and f"{MODULE}/internal/api." in text
    assert any(h.file and h.line > 0 for h in report.hotspots[:10] if not h.kernel)
    assert report.data_path.is_file() and (tmp_path / "out" / native_hotspots.SELF_NAME).is_file()
    assert report.load["requests"] > 0 and not report.errors
