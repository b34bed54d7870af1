"""Counts in titles and messages read right: 1 agent, 50 agents."""

from __future__ import annotations

from conductor_perf.wording import plural, plural_form


def test_plural() -> None:
    assert plural(1, "agent") == "1 agent"
    assert plural(0, "agent") == "0 agents"
    assert plural(50, "agent") == "50 agents"
    assert plural(4, "process") == "4 processes"
    assert plural(2, "entry") == "2 entries"
    assert plural(2, "day") == "2 days"
    assert plural(1.0, "second") == "1 second"
    assert plural(2.5, "second") == "2.5 seconds"
    assert plural(3, "child", "children") == "3 children"
    assert plural_form("batch") == "batches"
