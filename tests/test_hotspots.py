"""Hot spots: hotspots.md from a recorded scalene profile, the log table, and one real short profile."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conductor_perf.bench import hotspots
from conductor_perf.measure.profile import parse_scalene, scalene_unavailable_reason

PKG = hotspots.PACKAGE_DIR


def _line(lineno: int, code: str, py: float, native: float, sys_: float = 0.0, peak: float = 0.0,
          start: int = 0) -> dict:  # fmt: skip
    return {"lineno": lineno, "line": code + "\n", "n_cpu_percent_python": py, "n_cpu_percent_c": native,
            "n_sys_percent": sys_, "n_peak_mb": peak, "n_malloc_mb": peak, "start_function_line": start}  # fmt: skip


# The shape of the profile scalene 2.4 wrote for the embedded conductor (trimmed; paths made local).
RECORDED = {
    "elapsed_time_sec": 9.4,
    "max_footprint_mb": 11.0,
    "memory": True,
    "program": str(PKG / "reference" / "__main__.py"),
    "args": ["--root", "/tmp/root", "--port", "0"],
    "files": {
        str(PKG / "reference" / "gojson.py"): {
            "functions": [{"line": "marshal", "lineno": 27}],
            "lines": [_line(27, "def marshal(value: Any) -> str:", 1.9, 1.6, 0.5, start=27),
                      _line(29, "    return _escape(_encode(value))", 8.1, 4.8, 1.5, start=27)],  # fmt: skip
        },
        str(PKG / "formats" / "bus.py"): {
            "functions": [{"line": "format_rfc3339nano", "lineno": 116}],
            "lines": [_line(121, '    return f"{iso}.{frac:09d}".rstrip("0") + "Z"', 1.6, 0.0, 0.2, start=116),
                      _line(122, "    pass", 0.0, 0.0)],  # fmt: skip
        },
        "/usr/lib/python3.11/asyncio/base_events.py": {
            "functions": [],
            "lines": [_line(1922, "event_list = self._selector.select(timeout)", 0.5, 3.0, 40.0)],
        },
        str(PKG / "reference" / "__main__.py"): {
            "functions": [],
            "lines": [_line(29, "from aiohttp import web", 0.0, 0.0, 0.0, peak=8.0)],
        },
    },
}


@pytest.fixture
def recorded(tmp_path: Path) -> Path:
    path = tmp_path / "hotspots.scalene.json"
    path.write_text(json.dumps(RECORDED), encoding="utf-8")
    return path


def test_write_hotspots_writes_the_ranked_table(recorded: Path, tmp_path: Path) -> None:
    md = tmp_path / "out" / "hotspots.md"
    spots, text = hotspots.write_hotspots(recorded, md, top=3, notes=["Load: a test.", "", "JSON: beside it."])
    assert md.read_text(encoding="utf-8") == text
    assert text.startswith("# CPU hot spots of the embedded reference conductor\n")
    assert "over 9.4 s (max footprint 11.0 MB)" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(rows) == 3
    assert rows[0].startswith("| 1 | `conductor_perf/reference/gojson.py:29` | marshal | 12.9 |")
    assert "`/usr/lib/python3.11/asyncio/base_events.py:1922`" in rows[1]  # 3.5 % CPU: second
    assert "conductor_perf/reference/gojson.py:27" in rows[2]
    assert text.rstrip().endswith("JSON: beside it.")
    assert [s.location for s in spots] == [s.location for s in parse_scalene(recorded)]


def test_own_hot_spots_are_conductor_perf_lines_with_cpu(recorded: Path) -> None:
    spots = parse_scalene(recorded)
    own = [s for s in spots if hotspots.is_own(s)]
    assert [Path(s.file).name + f":{s.line}" for s in own] == ["gojson.py:29", "gojson.py:27", "bus.py:121"]
    # the import line has memory but no CPU; asyncio is not our code
    assert all(s.line != 1922 for s in own)


def test_hotspots_html_escapes_and_limits_rows(recorded: Path) -> None:
    html = hotspots.hotspots_html(parse_scalene(recorded), top=2)
    assert html.count("<tr>") == 3  # header + 2 rows
    assert "<code>conductor_perf/reference/gojson.py:29</code>" in html
    bus_html = hotspots.hotspots_html(parse_scalene(recorded)[3:4], top=1)
    assert "rstrip(&quot;0&quot;)" in bus_html
    assert "no samples" in hotspots.hotspots_html([], top=5)


def test_write_hotspots_rejects_a_file_that_is_not_a_profile(tmp_path: Path) -> None:
    bad = tmp_path / "x.json"
    bad.write_text('{"hello": 1}', encoding="utf-8")
    with pytest.raises(ValueError, match="not a scalene profile"):
        hotspots.write_hotspots(bad, tmp_path / "h.md")


def test_write_hotspots_of_a_profile_without_samples_says_so(tmp_path: Path) -> None:
    empty = tmp_path / "hotspots.scalene.json"
    empty.write_text("{}", encoding="utf-8")  # scalene's profile when it took no samples
    spots, text = hotspots.write_hotspots(empty, tmp_path / "h.md")
    assert spots == []
    assert "scalene took no samples" in text and "(no samples)" in (tmp_path / "h.md").read_text(encoding="utf-8")


@pytest.mark.timeout(90)
@pytest.mark.skipif(scalene_unavailable_reason() is not None, reason=str(scalene_unavailable_reason()))
def test_a_short_real_profile_of_the_reference_conductor(tmp_path: Path) -> None:
    report = hotspots.profile_reference(tmp_path, duration_s=2.0, agents=1, workers=2, cpu_only=True, top=5)
    assert report.json_path == tmp_path / hotspots.JSON_NAME and report.json_path.is_file()
    assert report.markdown_path.read_text(encoding="utf-8").startswith("# CPU hot spots")
    assert report.load["requests"] > 0 and report.load["agents_completed"] == 1
    assert report.own_hotspots, "no CPU time in conductor_perf code"
    assert all(hotspots.is_own(h) for h in report.own_hotspots)
    assert report.to_dict(top=5)["top"]
