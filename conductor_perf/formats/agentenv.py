"""The environment conductor-loop gives an agent, per build, and what the stub agent reports about it.

conductor-loop tells a CLI agent where it works through environment variables (its runner's
``runJob``). Their names changed over the project's history, so a suite that serves many builds must know
each set (``git log -S TASK_FOLDER`` in conductor-loop):

* ``current`` -- builds from 2026-02-26 on (commit d897e54 "rename internal env vars to JRUN_
  prefix"), e.g. 0.76.0-SNAPSHOT-ce73c6a: ``JRUN_TASK_FOLDER``, ``JRUN_RUN_FOLDER``,
  ``JRUN_MESSAGE_BUS``, ``JRUN_RUNS_DIR``, ``JRUN_CONDUCTOR_URL``;
* ``legacy`` -- builds of 2026-02-20 to 02-26, early 0.76.NN ones among them (3965e92 added
  ``TASK_FOLDER``/``RUN_FOLDER``, a905938 ``CONDUCTOR_URL``): ``TASK_FOLDER``, ``RUN_FOLDER``,
  ``MESSAGE_BUS``, ``RUNS_DIR``, ``CONDUCTOR_URL``;
* ``early`` -- builds before 2026-02-20: only ``MESSAGE_BUS`` and ``RUNS_DIR``; the task folder
  is named in the prompt text alone, so an agent that reads the environment cannot mark its task
  done.

Every style also sets ``JRUN_PROJECT_ID``, ``JRUN_TASK_ID``, ``JRUN_ID`` and ``JRUN_PARENT_ID``.
The reference conductor builds its agents' environment with :func:`agent_environment`
(``--agent-env``), so it can play each kind of build.

The stub agent (``conductor_perf/reference/stub/codex``) takes each location from the first of
:data:`STUB_LOOKUP` that is set and writes what it used as its first stderr lines (the run's
``agent-stderr.txt``)::

    conductor-perf stub env: task_folder=TASK_FOLDER run_folder=RUN_FOLDER message_bus=MESSAGE_BUS runs_dir=RUNS_DIR conductor_url=CONDUCTOR_URL
    conductor-perf stub done: will create /root/proj/task-.../DONE

``none`` stands for a location the server did not give; the ``done`` line is ``not created: <why>``
when the stub will not create ``DONE`` (``STUB_SKIP_DONE=1``, or no task folder).
:func:`parse_stub_report` reads those lines back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

CURRENT, LEGACY, EARLY = "current", "legacy", "early"
STYLES = (CURRENT, LEGACY, EARLY)
"""The agent environments of the conductor-loop builds we know, newest first."""

LOCATIONS = ("task_folder", "run_folder", "message_bus", "runs_dir", "conductor_url")
"""What the environment tells an agent, in report order."""

NAMES: dict[str, dict[str, str]] = {
    CURRENT: {"task_folder": "JRUN_TASK_FOLDER", "run_folder": "JRUN_RUN_FOLDER", "message_bus": "JRUN_MESSAGE_BUS",
              "runs_dir": "JRUN_RUNS_DIR", "conductor_url": "JRUN_CONDUCTOR_URL"},
    LEGACY: {"task_folder": "TASK_FOLDER", "run_folder": "RUN_FOLDER", "message_bus": "MESSAGE_BUS",
             "runs_dir": "RUNS_DIR", "conductor_url": "CONDUCTOR_URL"},
    EARLY: {"message_bus": "MESSAGE_BUS", "runs_dir": "RUNS_DIR"},
}  # fmt: skip
"""Per style, the variable name of each location the build sets (a missing key: not set at all)."""

PROMPT_NAMES: dict[str, dict[str, str]] = {CURRENT: NAMES[CURRENT], LEGACY: NAMES[LEGACY], EARLY: NAMES[LEGACY]}
"""Per style, the names of the ``NAME=value`` lines that open ``prompt.md`` (early builds already
named the task and run folders there, under the unprefixed names)."""

DESCRIPTIONS = {
    CURRENT: "JRUN_ names, conductor-loop builds from 2026-02-26",
    LEGACY: "the names before the JRUN_ prefix, conductor-loop builds of 2026-02-20 to 02-26",
    EARLY: "no task or run folder in the environment, conductor-loop builds before 2026-02-20",
}

STUB_LOOKUP: dict[str, tuple[str, ...]] = {
    loc: tuple(NAMES[s][loc] for s in (CURRENT, LEGACY) if loc in NAMES[s]) for loc in LOCATIONS
}
"""The names the stub tries for each location, in order (the current name first)."""

ID_NAMES = ("JRUN_PROJECT_ID", "JRUN_TASK_ID", "JRUN_ID", "JRUN_PARENT_ID")
"""Set by every style."""

REPORT_PREFIX = "conductor-perf stub "
_ENV_LINE = re.compile(r"^conductor-perf stub env: (.*)$", re.MULTILINE)
_DONE_LINE = re.compile(r"^conductor-perf stub done: (.*)$", re.MULTILINE)
NONE = "none"


class AgentEnvError(ValueError):
    """An unknown agent environment style."""


def check_style(style: str) -> str:
    """``style`` if it is one of :data:`STYLES`, else :class:`AgentEnvError` naming them."""
    if style not in STYLES:
        raise AgentEnvError(f"unknown agent environment {style!r}: use one of {', '.join(STYLES)}")
    return style


def agent_environment(style: str, *, project_id: str, task_id: str, run_id: str, parent_run_id: str = "",
                      task_dir: str, run_dir: str, runs_dir: str, bus_path: str,
                      conductor_url: str = "") -> dict[str, str]:  # fmt: skip
    """The variables a build of ``style`` adds to its agent's environment.

    Example::

        agent_environment("legacy", project_id="p", task_id="t", run_id="r", task_dir="/R/p/t",
                          run_dir="/R/p/t/runs/r", runs_dir="/R/p/t/runs", bus_path="/R/p/t/TASK-MESSAGE-BUS.md")
        # {"JRUN_PROJECT_ID": "p", ..., "TASK_FOLDER": "/R/p/t", "RUN_FOLDER": "/R/p/t/runs/r", ...}
    """
    names = NAMES[check_style(style)]
    values = {"task_folder": task_dir, "run_folder": run_dir, "message_bus": bus_path, "runs_dir": runs_dir,
              "conductor_url": conductor_url}  # fmt: skip
    env = {"JRUN_PROJECT_ID": project_id, "JRUN_TASK_ID": task_id, "JRUN_ID": run_id, "JRUN_PARENT_ID": parent_run_id}
    for loc, name in names.items():
        if loc == "conductor_url" and not conductor_url:
            continue  # the real runner sets it only when it knows its URL
        env[name] = values[loc]
    return env


def all_location_names() -> set[str]:
    """Every name of every style (what a server in one style must not set from another)."""
    return {name for names in NAMES.values() for name in names.values()}


@dataclass(frozen=True)
class StubReport:
    """What the stub agent said about its environment (its first stderr lines).

    Attributes:
        used: location -> the variable name it was taken from (``none`` when no name was set).
        done: what the stub does about ``DONE``: ``will create <path>`` or ``not created: <why>``.
        source: where the report was read (a file path), for messages.
    """

    used: dict[str, str] = field(default_factory=dict)
    done: str = ""
    source: str = ""

    @property
    def has_task_folder(self) -> bool:
        """Whether the server gave the agent a task folder (so it can mark the task done)."""
        return self.used.get("task_folder", NONE) != NONE

    @property
    def marks_done(self) -> bool:
        """Whether the stub said it creates ``DONE``."""
        return self.done.startswith("will create")

    @property
    def names(self) -> list[str]:
        """The variable names the stub used, in :data:`LOCATIONS` order."""
        return [n for loc in LOCATIONS if (n := self.used.get(loc, NONE)) != NONE]

    @property
    def style(self) -> str:
        """The :data:`STYLES` entry whose names match what was used, else ``mixed``."""
        for style in STYLES:
            expected = {loc: NAMES[style].get(loc, NONE) for loc in LOCATIONS}
            if all(self.used.get(loc, NONE) == expected[loc] for loc in LOCATIONS if loc != "conductor_url"):
                return style
        return "mixed"

    def describe(self) -> str:
        """One line for the log's metadata, e.g. ``TASK_FOLDER, RUN_FOLDER, ... (the names before the JRUN_ prefix, ...)``."""
        names = ", ".join(self.names) or "none of the known names"
        what = DESCRIPTIONS.get(self.style, "a mix of names")
        text = f"{names} ({what})"
        if not self.has_task_folder:
            text += f"; no task folder: {missing_task_folder()}, so agents cannot mark a task done"
        elif self.done.startswith("not created: "):
            text += f"; the stub does not create DONE: {self.done.removeprefix('not created: ')}"
        return text

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly form."""
        return {"used": dict(self.used), "done": self.done, "style": self.style, "names": self.names,
                "source": self.source}  # fmt: skip


def missing_task_folder() -> str:
    """``the server set neither JRUN_TASK_FOLDER nor TASK_FOLDER`` (the names the stub tries)."""
    return "the server set neither " + " nor ".join(STUB_LOOKUP["task_folder"])


def not_done_reason(report: StubReport | None) -> str:
    """Why an agent left its task without ``DONE``, from the stub's report (``""`` when it says nothing).

    Example::

        not_done_reason(report)   # "the server gave the agent neither JRUN_TASK_FOLDER nor TASK_FOLDER"
    """
    if report is None:
        return ""
    if not report.has_task_folder:
        return "the server gave the agent neither " + " nor ".join(STUB_LOOKUP["task_folder"])
    if report.done.startswith("not created: "):
        return f"the stub did not create DONE: {report.done.removeprefix('not created: ')}"
    if report.marks_done:
        return f"the stub said it {report.done}, yet the task was not done"
    return ""


def parse_stub_report(text: str, source: str = "") -> StubReport | None:
    """The stub's report in ``text`` (an ``agent-stderr.txt``), or ``None`` when it holds none.

    Example::

        parse_stub_report("conductor-perf stub env: task_folder=none run_folder=none ...\\n")
    """
    env = _ENV_LINE.search(text)
    if env is None:
        return None
    used: dict[str, str] = {}
    for item in env.group(1).split():
        key, sep, value = item.partition("=")
        if sep and key in LOCATIONS:
            used[key] = value or NONE
    done = _DONE_LINE.search(text)
    return StubReport(used=used, done=done.group(1).strip() if done else "", source=source)
