"""Robot pre-run modifier: run again only the tests that failed in an earlier ``output.xml``.

Robot's own ``--rerunfailed`` selects tests by their names as they were run, but test names that
state a target take it from a variable (``Bus Sustains Over ${BUS_MIN_MSG_PER_S} Messages``), and
Robot matches ``--test`` and ``--rerunfailed`` against the name as written, so it would find none
of them. This modifier matches each test's name as written (every ``${...}`` standing for any
text; of several matches the one with the most literal text) against the failed tests' names as
run, suite by suite. The runner uses it for
``--rerun-failed``; with plain robot::

    robot --prerunmodifier libraries/RerunFailed.py:results/latest/output.xml --pythonpath libraries suites
"""

from __future__ import annotations

import re

from robot.api import ExecutionResult, SuiteVisitor

_VARIABLE = re.compile(r"[$@&%]\{[^{}]*\}")


def name_pattern(name_as_written: str) -> re.Pattern[str]:
    """A pattern of the names a test name as written can run as: every ``${...}`` is any text."""
    parts = _VARIABLE.split(name_as_written)
    return re.compile(".+?".join(re.escape(p) for p in parts), re.IGNORECASE | re.DOTALL)


class RerunFailed(SuiteVisitor):
    """Keep the tests that failed in ``output`` (an ``output.xml`` of the same suites)."""

    def __init__(self, output: str) -> None:
        self.failed: dict[str, set[str]] = {}
        result = ExecutionResult(output)
        result.suite.visit(_Collect(self.failed))

    def start_suite(self, suite) -> None:  # noqa: ANN001 - robot.running.TestSuite
        keep: set[int] = set()
        for failed in self.failed.get(_below_top(suite.full_name), set()):
            matches = [t for t in suite.tests if name_pattern(t.name).fullmatch(failed)]
            if matches:  # "Over ${N} Other Things" ran as "Over 5 Other Things", not "Over ${N} Things"
                best = max(_literal_length(t.name) for t in matches)
                keep |= {id(t) for t in matches if _literal_length(t.name) == best}
        suite.tests = [t for t in suite.tests if id(t) in keep]

    def end_suite(self, suite) -> None:  # noqa: ANN001
        suite.suites = [s for s in suite.suites if s.test_count > 0]

    def visit_test(self, test) -> None:  # noqa: ANN001 - nothing to do inside a test
        pass


def _below_top(full_name: str) -> str:
    """A suite's full name without the top suite's: ``--name`` renames the top suite only after
    pre-run modifiers ran, and the first attempt may have run under another top name."""
    return full_name.split(".", 1)[1] if "." in full_name else ""


def _literal_length(name_as_written: str) -> int:
    return len(_VARIABLE.sub("", name_as_written))


class _Collect(SuiteVisitor):
    def __init__(self, into: dict[str, set[str]]) -> None:
        self.into = into

    def visit_test(self, test) -> None:  # noqa: ANN001 - robot.result.TestCase
        if test.failed:
            self.into.setdefault(_below_top(test.parent.full_name), set()).add(test.name)
