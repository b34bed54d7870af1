"""The file-system probe times directory creations and leaves them in place."""

from __future__ import annotations

import pytest

from conductor_perf.measure.fsprobe import PROBE_PREFIX, directory_creation_cost


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
