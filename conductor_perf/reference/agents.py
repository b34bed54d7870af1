"""Task loops and agent processes of the reference conductor (as conductor-loop 0.76 runs them).

A POST /api/v1/tasks starts one :class:`TaskLoop` (the real "Ralph loop"): while the task has no
``DONE`` marker it runs one job -- a new run directory (the first one preallocated by the API),
``prompt.md`` with the ``JRUN_*`` preamble, the agent CLI spawned in its own session with stdin
from ``prompt.md`` and stdout/stderr appended to ``agent-stdout.txt``/``agent-stderr.txt``,
``run-info.yaml`` written ``running`` and ``RUN_START`` posted, then on exit ``completed``/``failed``
with the real ``error_summary`` rules, ``output.md`` (codex NDJSON or a copy of stdout) and
``RUN_STOP``/``RUN_CRASH`` -- then sleeps ``restart_delay`` and tries again (at most
``max_restarts``). At the end it posts the real INFO/FACT messages and the project-bus FACT.

Differences from the real runner (improvements, same files and messages):

* ``<cli> --version`` runs once per binary (cached by path and mtime, one run shared by every loop
  that asks before it answers) instead of twice per run;
* a loop starts a few ms after its 201, once no request has arrived for :data:`LAUNCH_QUIET_S`
  (at most :data:`LAUNCH_MAX_DELAY_S` later): a burst of submissions is answered before its agents
  are spawned, instead of each launch competing with the requests still waiting;
* ``agent_env`` (``--agent-env``) picks which build's environment names the agents get
  (:mod:`conductor_perf.formats.agentenv`), and none of those names is passed on from the server's
  own environment;
* process exit is awaited through a pidfd on the event loop (no thread or poll per agent);
* on server shutdown the agents' process groups get SIGTERM (then SIGKILL after a grace period)
  instead of being left running, and no new attempt starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..formats import agentenv, bus, runs
from ..formats.bus import Link, Message, Parent, format_rfc3339nano
from ..formats.runs import RunIdGenerator, RunInfo
from .config import AgentConfig, ReferenceConfig
from .index import RunEntry, RunIndex
from .serverlog import ServerLog

RESTART_PREFIX = "Continue working on the following:\n\n"
CLI_COMMANDS = {
    "codex": ("codex", ["exec", "--dangerously-bypass-approvals-and-sandbox", "--json", "-"]),
    "claude": ("claude", ["-p", "--input-format", "text", "--output-format", "stream-json", "--verbose",
                          "--tools", "default", "--permission-mode", "bypassPermissions"]),
    "gemini": ("gemini", ["--screen-reader", "true", "--approval-mode", "yolo", "--output-format", "stream-json"]),
}  # fmt: skip
VERSION_TIMEOUT_S = 10.0
STOP_GRACE_S = 2.0
LAUNCH_QUIET_S = 0.002
"""Queued task loops start once no request has arrived for this long (request handling first) ..."""
LAUNCH_MAX_DELAY_S = 1.0
"""... or once the oldest queued loop has waited this long (so sustained load cannot hold them back).

At 0.1 s a burst of 100 submissions that the disk slowed beyond 0.1 s had its first agents start
while its last requests still waited; one such burst measured p50 47 ms but p90 221 ms."""


def classify_exit_code(code: int) -> str:
    """The real runner's one-line ``error_summary`` for a non-zero exit code."""
    return {
        1: "agent reported failure",
        2: "agent usage error",
        137: "agent killed (OOM or signal)",
        143: "agent terminated (SIGTERM)",
    }.get(code, f"agent exited with code {code}")


def go_exit(returncode: int) -> tuple[int, str]:
    """(exit code as Go's ``ProcessState.ExitCode()``, Go's ``ProcessState.String()``)."""
    if returncode >= 0:
        return returncode, f"exit status {returncode}"
    try:
        name = (signal.strsignal(-returncode) or f"signal {-returncode}").lower()
    except ValueError:
        name = f"signal {-returncode}"
    return -1, f"signal: {name}"


def build_prompt(*, task_dir: str, run_dir: str, project_id: str, task_id: str, run_id: str, parent_run_id: str,
                 bus_path: str, conductor_url: str, repo_root: str, prompt: str,
                 agent_env: str = agentenv.CURRENT) -> str:  # fmt: skip
    """``prompt.md``: the real preamble (JRUN_* lines, instructions, DONE path), ``---``, the prompt.

    ``agent_env`` names the folder, bus and URL lines as that build did (``TASK_FOLDER=`` before
    the JRUN_ prefix).
    """
    names = agentenv.PROMPT_NAMES[agent_env]
    out = [
        f"{names['task_folder']}={task_dir}\n",
        f"{names['run_folder']}={run_dir}\n",
        f"JRUN_PROJECT_ID={project_id}\n",
        f"JRUN_TASK_ID={task_id}\n",
        f"JRUN_ID={run_id}\n",
    ]
    if parent_run_id.strip():
        out.append(f"JRUN_PARENT_ID={parent_run_id}\n")
    if bus_path:
        out.append(f"{names['message_bus']}={bus_path}\n")
    if conductor_url:
        out.append(f"{names['conductor_url']}={conductor_url}\n")
    out.append(f"Write output.md to {os.path.join(run_dir, runs.OUTPUT)}\n")
    out.append(
        "\n## Message Bus\n"
        "Report progress using:\n"
        '  run-agent bus post --type PROGRESS --body "your message"\n'
        '  run-agent bus post --type FACT --body "key result"\n'
        '  run-agent bus post --type ERROR --body "what failed"\n'
        '  run-agent bus post --type DECISION --body "what was decided"\n'
        "Types: FACT, PROGRESS, DECISION, ERROR, QUESTION, INFO\n"
        f"The {names['message_bus']} env var is set; run-agent bus post uses it automatically.\n"
        "\n## Sub-Agent Spawning (RLM Pattern)\n"
        "For complex tasks, decompose using run-agent:\n"
        "  run-agent job --project $JRUN_PROJECT_ID --task $JRUN_TASK_ID \\\n"
        '    --parent-run-id $JRUN_ID --agent claude --prompt "sub-task description"\n'
        "Run multiple sub-agents in PARALLEL for independent sub-tasks.\n"
        "Use RLM (Recursive Language Model) decomposition:\n"
        "  1. ASSESS context size and task complexity\n"
        "  2. DECOMPOSE into independent sub-tasks at natural boundaries\n"
        "  3. EXECUTE sub-agents in parallel\n"
        "  4. SYNTHESIZE results\n"
    )
    if repo_root:
        methodology = os.path.join(repo_root, "docs", "workflow", "THE_PROMPT_v5_conductor.md")
        if os.path.exists(methodology):
            out.append(f"\n## Methodology\nRead {methodology} for the full orchestration methodology.\n")
        agents_md = os.path.join(repo_root, "AGENTS.md")
        if os.path.exists(agents_md):
            out.append(f"Read {agents_md} for project conventions.\n")
    out.append(f"\n## Completion\nWhen done, create: {task_dir}/DONE\n"
               "This signals the conductor loop to stop restarting this task.\n")  # fmt: skip
    out.append("\n---\n\n")
    text = prompt.strip()
    if text:
        out.append(text + "\n")
    return "".join(out)


# --------------------------------------------------------------------------- codex NDJSON -> output.md


def _text_field(raw: object) -> str:
    if isinstance(raw, str):
        return raw.strip()
    if isinstance(raw, dict):
        for key in ("text", "content", "result", "message", "output", "output_text"):
            text = _text_field(raw.get(key))
            if text:
                return text
        return ""
    if isinstance(raw, list):
        return "\n".join(t for t in (_text_field(item) for item in raw) if t).strip()
    return ""


def parse_codex_stream(data: bytes) -> str:
    """Assistant text from codex ``--json`` output (the real parser's rules); ``""`` when none."""
    out: list[str] = []
    emitted = ""
    for raw in data.splitlines():
        line = raw.strip()
        if not line.startswith(b"{"):
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if not isinstance(event, dict):
            continue
        texts = []
        if event.get("type") in ("result", "response.completed", "turn.completed", "message"):
            for key in ("result", "output_text", "text", "content", "message"):
                text = _text_field(event.get(key))
                if text:
                    texts.append(text)
                    break
        item = event.get("item")
        if isinstance(item, dict):
            item_type = str(item.get("type") or "").strip()
            if not item_type or item_type in ("agent_message", "message"):
                for value in (item.get("text"), item.get("output_text")):
                    if isinstance(value, str) and value.strip():
                        texts.append(value.strip())
                        break
                else:
                    text = _text_field(item.get("content")) or _text_field(item.get("message"))
                    if text:
                        texts.append(text)
        for text in texts:
            if emitted.startswith(text):
                continue
            if text.startswith(emitted) and emitted:
                out.append(text[len(emitted):])
                emitted += text[len(emitted):]
                continue
            if out and not out[-1].endswith("\n"):
                out.append("\n")
            out.append(text)
            emitted += text
    return "".join(out).strip()


def tail_lines(path: str, max_lines: int = 50) -> str:
    """The last lines of a file (``""`` when missing or empty), as the real RUN_CRASH excerpt."""
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - 256 * 1024))
            data = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    if not data:
        return ""
    lines = data.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines[-max_lines:])


# --------------------------------------------------------------------------- model


@dataclass(eq=False)
class LiveRun:
    """An agent process this server started and still waits for."""

    entry: RunEntry
    proc: subprocess.Popen
    pgid: int
    loop: TaskLoop


@dataclass(eq=False)
class TaskLoop:
    """One task loop (the real "Ralph loop") of one POST /api/v1/tasks."""

    project_id: str
    task_id: str
    task_dir: str
    prompt: str
    agent: AgentConfig
    environment: dict[str, str]
    working_dir: str
    first_run: RunEntry
    resume: bool = False
    depends_on: list[str] = field(default_factory=list)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task | None = None


PostFn = Callable[[str, Message], Awaitable[str]]


class RunSlots:
    """``defaults.max_concurrent_runs`` (0 = unlimited), with the count of waiting runs."""

    def __init__(self, limit: int, on_wait: Callable[[int], None]) -> None:
        self.limit = limit
        self._sem = asyncio.Semaphore(limit) if limit > 0 else None
        self._on_wait = on_wait

    async def acquire(self) -> None:
        """Wait for a slot."""
        if self._sem is None:
            return
        self._on_wait(1)
        try:
            await self._sem.acquire()
        finally:
            self._on_wait(-1)

    def release(self) -> None:
        """Give a slot back."""
        if self._sem is not None:
            self._sem.release()


class AgentManager:
    """Starts task loops, tracks agent processes, stops them on request and at shutdown."""

    def __init__(self, cfg: ReferenceConfig, index: RunIndex, log: ServerLog, *, executor: Executor,
                 post: PostFn, metrics: object, conductor_url: Callable[[], str],
                 on_run_changed: Callable[[RunEntry, bool], None],
                 busy: Callable[[float], bool] | None = None) -> None:  # fmt: skip
        """``busy(quiet_s)`` tells whether a request arrived within the last ``quiet_s`` seconds."""
        self.cfg = cfg
        self.index = index
        self.log = log
        self.executor = executor
        self.post = post
        self.metrics = metrics
        self.conductor_url = conductor_url
        self.on_run_changed = on_run_changed
        self.run_ids = RunIdGenerator(os.getpid())
        self.loops: set[TaskLoop] = set()
        self.live: dict[str, LiveRun] = {}
        self.closing = False
        self._versions: dict[tuple[str, int], asyncio.Future[str]] = {}
        self._slots: RunSlots | None = None
        self.search_path = cfg.agent_search_path()
        self._busy = busy or (lambda _quiet: False)
        self._queued_loops: list[TaskLoop] = []
        self._queued_since = 0.0
        self._launcher: asyncio.TimerHandle | None = None

    @property
    def slots(self) -> RunSlots:
        """The run-slot semaphore (created on first use, inside the event loop)."""
        if self._slots is None:
            self._slots = RunSlots(self.cfg.max_concurrent_runs, self._queued)
        return self._slots

    def _queued(self, delta: int) -> None:
        self.metrics.queued_runs += delta

    # ------------------------------------------------------------------ allocation (API side)

    def allocate_run_dir(self, runs_dir: str) -> tuple[str, str]:
        """Create ``runs/<run_id>`` (or ``<run_id>-<digits>`` when taken) and return (id, path)."""
        run_id = runs.allocate_run_dir(runs_dir, self.run_ids.next())
        return run_id, os.path.join(runs_dir, run_id)

    def select_agent(self, name: str) -> AgentConfig | None:
        """Exact agent name, else the first agent whose type matches (the real selection)."""
        agent = self.cfg.agents.get(name)
        if agent is not None:
            return agent
        low = name.strip().lower()
        for candidate in self.cfg.agents.values():
            if candidate.type == low:
                return candidate
        return None

    def start(self, loop_spec: TaskLoop) -> None:
        """Run a task loop in the background, a few ms later.

        The loop is queued and started once no request has arrived for :data:`LAUNCH_QUIET_S` (at
        most :data:`LAUNCH_MAX_DELAY_S` after it was queued): a burst of task submissions is answered
        first and its agents start right after, instead of every launch (process spawns, file
        writes, bus appends) competing with the requests still waiting for their 201.
        """
        self.loops.add(loop_spec)
        self.metrics.active_runs += 1
        self._queued_loops.append(loop_spec)
        if self._launcher is None:
            self._queued_since = time.monotonic()
            self._launcher = asyncio.get_running_loop().call_later(LAUNCH_QUIET_S, self._launch_queued)

    def _launch_queued(self) -> None:
        self._launcher = None
        if not self._queued_loops:
            return
        loop = asyncio.get_running_loop()
        if self._busy(LAUNCH_QUIET_S) and time.monotonic() - self._queued_since < LAUNCH_MAX_DELAY_S:
            self._launcher = loop.call_later(LAUNCH_QUIET_S, self._launch_queued)
            return
        queued, self._queued_loops = self._queued_loops, []
        for tl in queued:
            tl.task = loop.create_task(self._run_loop(tl))

    def _drop_queued(self) -> None:
        """At shutdown: loops that never started end as failed (as a started loop would)."""
        if self._launcher is not None:
            self._launcher.cancel()
            self._launcher = None
        queued, self._queued_loops = self._queued_loops, []
        for tl in queued:
            self.loops.discard(tl)
            self.metrics.active_runs -= 1
            self.metrics.failed_runs += 1

    # ------------------------------------------------------------------ the task loop

    async def _run_loop(self, tl: TaskLoop) -> None:
        ok = False
        try:
            ok = await self._task_body(tl)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a loop failure is logged, never crashes the server
            self.log.event("ERROR", "api", "task_run_failed", project_id=tl.project_id, task_id=tl.task_id,
                           run_id=tl.first_run.run_id, agent_type=tl.agent.name, error=repr(exc))  # fmt: skip
        finally:
            self.metrics.active_runs -= 1
            if ok:
                self.metrics.completed_runs += 1
            else:
                self.metrics.failed_runs += 1
            self.loops.discard(tl)

    async def _task_body(self, tl: TaskLoop) -> bool:
        command, _ = CLI_COMMANDS.get(tl.agent.type, ("", []))
        path = shutil.which(command, path=self.search_path) if command else None
        if not path:
            self.log.event("ERROR", "api", "task_run_failed", project_id=tl.project_id, task_id=tl.task_id,
                           run_id=tl.first_run.run_id, agent_type=tl.agent.name,
                           error=f'validate agent: agent cli "{command or tl.agent.type}" not found in PATH')  # fmt: skip
            return False
        version = await self.agent_version(path)
        bus_path = os.path.join(tl.task_dir, bus.TASK_BUS)
        if tl.depends_on and not await self._wait_dependencies(tl, bus_path):
            return False
        restarts = 0
        previous = ""
        while True:
            if self.closing:
                return False
            if runs.is_done(Path(tl.task_dir)):
                break
            if restarts >= self.cfg.max_restarts:
                await self._info(tl, bus_path, "ERROR", f"task failed: max restarts ({self.cfg.max_restarts}) exceeded")
                return False
            await self._info(tl, bus_path, "INFO", f"starting root agent (restart #{restarts})")
            prompt = tl.prompt.strip()
            if restarts > 0 or tl.resume:
                prompt = RESTART_PREFIX + prompt
            entry = tl.first_run if restarts == 0 else None
            run_id, err = await self._run_job(tl, entry, path, version, prompt, previous, bus_path)
            if run_id:
                previous = run_id
            if err:
                await self._info(tl, bus_path, "WARNING", f"root agent failed on restart #{restarts}: {err}")
            restarts += 1
            if runs.is_done(Path(tl.task_dir)):
                break
            if self.closing:
                return False
            tl.wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(tl.wake.wait(), self.cfg.restart_delay_s)
        await self._info(tl, bus_path, "INFO", "task completed (DONE marker present, no active children)")
        await self._propagate(tl, bus_path)
        return True

    async def _wait_dependencies(self, tl: TaskLoop, bus_path: str) -> bool:
        project_dir = os.path.dirname(tl.task_dir)
        last = ""
        while not self.closing:
            if runs.is_done(Path(tl.task_dir)):
                return True
            blocked = [d for d in tl.depends_on if not os.path.exists(os.path.join(project_dir, d, runs.DONE))]
            if not blocked:
                if last:
                    await self._info(tl, bus_path, "FACT", "dependencies satisfied; starting task")
                return True
            current = ",".join(blocked)
            if current != last:
                await self._info(tl, bus_path, "PROGRESS", f"task blocked by dependencies: {', '.join(blocked)}")
                last = current
            tl.wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(tl.wake.wait(), 2.0)
        return False

    async def _info(self, tl: TaskLoop, bus_path: str, msg_type: str, body: str, run_id: str = "") -> str:
        try:
            return await self.post(bus_path, Message(type=msg_type, project_id=tl.project_id, task_id=tl.task_id,
                                                     run_id=run_id, body=body))  # fmt: skip
        except bus.BusError as exc:
            self.log.event("ERROR", "runner", "run_event_post_failed", project_id=tl.project_id,
                           task_id=tl.task_id, run_id=run_id, message_type=msg_type, error=str(exc))  # fmt: skip
            return ""

    async def agent_version(self, path: str) -> str:
        """``<cli> --version`` output, cached per binary (path + mtime)."""
        try:
            key = (path, os.stat(path).st_mtime_ns)
        except OSError:
            return ""
        cached = self._versions.get(key)
        if cached is None or (cached.done() and (cached.cancelled() or cached.exception() is not None)):
            cached = self._versions[key] = asyncio.ensure_future(self._run_version(path))
        # every loop waiting for the same binary shares one ``--version`` run (a burst of tasks
        # would otherwise start one each before the first answer is cached)
        return await asyncio.shield(cached)

    async def _run_version(self, path: str) -> str:
        loop = asyncio.get_running_loop()

        def run() -> str:
            try:
                done = subprocess.run([path, "--version"], stdin=subprocess.DEVNULL, capture_output=True,
                                      timeout=VERSION_TIMEOUT_S, check=False)  # fmt: skip
            except (OSError, subprocess.SubprocessError):
                return ""
            if done.returncode != 0:
                return ""
            text = done.stdout.decode("utf-8", "replace").strip()
            return text or done.stderr.decode("utf-8", "replace").strip()

        return await loop.run_in_executor(self.executor, run)

    # ------------------------------------------------------------------ one job

    async def _run_job(self, tl: TaskLoop, entry: RunEntry | None, cli_path: str, version: str, prompt: str,
                       previous: str, bus_path: str) -> tuple[str, str]:  # fmt: skip
        """Run one attempt; returns (run id or "", error text or "")."""
        loop = asyncio.get_running_loop()
        runs_dir = os.path.join(tl.task_dir, runs.RUNS_DIR)
        if entry is None:
            try:
                os.makedirs(runs_dir, exist_ok=True)
                run_id, _ = self.allocate_run_dir(runs_dir)
            except OSError as exc:
                return "", f"create run directory: {exc.strerror or exc}"
            entry = self.index.add_run_dir(tl.project_id, tl.task_id, run_id, managed=True)
        run_dir = entry.dir
        run_id = entry.run_id
        await self.slots.acquire()
        try:
            return run_id, await self._execute(tl, entry, run_dir, cli_path, version, prompt, previous, bus_path,
                                               loop)  # fmt: skip
        finally:
            self.slots.release()

    async def _execute(self, tl: TaskLoop, entry: RunEntry, run_dir: str, cli_path: str, version: str, prompt: str,
                       previous: str, bus_path: str, loop: asyncio.AbstractEventLoop) -> str:  # fmt: skip
        run_id = entry.run_id
        conductor_url = self.conductor_url()
        prompt_path = os.path.join(run_dir, runs.PROMPT)
        stdout_path = os.path.join(run_dir, runs.STDOUT)
        stderr_path = os.path.join(run_dir, runs.STDERR)
        output_path = os.path.join(run_dir, runs.OUTPUT)
        content = build_prompt(task_dir=tl.task_dir, run_dir=run_dir, project_id=tl.project_id, task_id=tl.task_id,
                               run_id=run_id, parent_run_id="", bus_path=bus_path, conductor_url=conductor_url,
                               repo_root=os.path.dirname(self.cfg.root.as_posix()), prompt=prompt,
                               agent_env=self.cfg.agent_env)  # fmt: skip
        command, args = CLI_COMMANDS[tl.agent.type]
        env = dict(os.environ)
        env.pop("CLAUDECODE", None)
        for name in agentenv.all_location_names():
            env.pop(name, None)  # only the played build's names, none inherited from the server's own environment
        env.update(agentenv.agent_environment(
            self.cfg.agent_env, project_id=tl.project_id, task_id=tl.task_id, run_id=run_id, task_dir=tl.task_dir,
            run_dir=run_dir, runs_dir=os.path.join(tl.task_dir, runs.RUNS_DIR), bus_path=bus_path,
            conductor_url=conductor_url))  # fmt: skip
        env["PATH"] = self.search_path
        for key, value in tl.environment.items():
            if key.strip():
                env[key] = value
        info = RunInfo(version=1, run_id=run_id, previous_run_id=previous, project_id=tl.project_id,
                       task_id=tl.task_id, agent=tl.agent.type, process_ownership="managed", agent_version=version,
                       start_time_ns=time.time_ns(), exit_code=-1, status=runs.STATUS_RUNNING, cwd=tl.working_dir,
                       prompt_path=prompt_path, output_path=output_path, stdout_path=stdout_path,
                       stderr_path=stderr_path)  # fmt: skip

        def spawn() -> subprocess.Popen:
            with open(prompt_path, "w", encoding="utf-8") as fh:
                fh.write(content)
            with open(prompt_path, "rb") as stdin, open(stdout_path, "ab") as out, open(stderr_path, "ab") as err:
                return subprocess.Popen([cli_path, *args], stdin=stdin, stdout=out, stderr=err, cwd=tl.working_dir,
                                        env=env, start_new_session=True, close_fds=True)  # fmt: skip

        try:
            proc = await loop.run_in_executor(self.executor, spawn)
        except OSError as exc:
            info.pid = info.pgid = os.getpid()
            info.end_time_ns = time.time_ns()
            info.status = runs.STATUS_FAILED
            await loop.run_in_executor(self.executor, runs.write_run_info, entry.info_path, info)
            self.index.put_info(entry, info)
            self.on_run_changed(entry, True)
            return f"spawn agent: start process: {exc.strerror or exc}"
        live = LiveRun(entry=entry, proc=proc, pgid=proc.pid, loop=tl)
        self.live[run_id] = live
        try:
            info.pid = info.pgid = proc.pid
            info.commandline = f"{command} {' '.join(args)} < {prompt_path}"
            await loop.run_in_executor(self.executor, runs.write_run_info, entry.info_path, info)
            self.index.put_info(entry, info)
            self.on_run_changed(entry, True)
            await self._info(tl, bus_path, bus.RUN_START,
                             f"run started\nrun_dir: {run_dir}\nprompt: {prompt_path}\nstdout: {stdout_path}\n"
                             f"stderr: {stderr_path}\noutput: {output_path}", run_id)  # fmt: skip
            returncode = await self._wait_exit(proc, loop)
        finally:
            self.live.pop(run_id, None)
        exit_code, state = go_exit(returncode)
        end = time.time_ns()
        failed = exit_code != 0 or returncode != 0
        status = runs.STATUS_FAILED if failed else runs.STATUS_COMPLETED
        summary = classify_exit_code(exit_code) if failed else ""
        agent_type = tl.agent.type

        def finish() -> RunInfo:
            if agent_type == "codex" and not os.path.exists(output_path):
                try:
                    with open(stdout_path, "rb") as fh:
                        text = parse_codex_stream(fh.read())
                    if text:
                        with open(output_path, "w", encoding="utf-8") as fh:
                            fh.write(text)
                except OSError:
                    pass

            def change(update: RunInfo) -> None:
                update.exit_code = exit_code
                update.end_time_ns = end
                update.status = status
                update.error_summary = summary

            updated = runs.update_run_info(entry.info_path, change)
            if not os.path.exists(output_path):
                try:
                    shutil.copyfile(stdout_path, output_path)
                except OSError:
                    pass
            return updated

        try:
            updated = await loop.run_in_executor(self.executor, finish)
        except (runs.StorageError, OSError) as exc:
            self.log.event("ERROR", "runner", "run_info_update_failed", run_id=run_id, error=str(exc))
            info.exit_code, info.end_time_ns, info.status, info.error_summary = exit_code, end, status, summary
            updated = info
        self.index.put_info(entry, updated)
        self.on_run_changed(entry, False)
        body = f"run stopped with code {exit_code}\nrun_dir: {run_dir}\noutput: {output_path}"
        if failed:
            excerpt = await loop.run_in_executor(self.executor, tail_lines, stderr_path, 50)
            if excerpt:
                body += "\n\n## stderr (last 50 lines)\n" + excerpt
        await self._info(tl, bus_path, bus.RUN_CRASH if exit_code != 0 else bus.RUN_STOP, body, run_id)
        if failed:
            return f"agent execution failed: wait process: {state}"
        return ""

    async def _wait_exit(self, proc: subprocess.Popen, loop: asyncio.AbstractEventLoop) -> int:
        """Wait for the child without a thread: a pidfd becomes readable when it exits."""
        try:
            pidfd = os.pidfd_open(proc.pid)
        except (AttributeError, OSError):
            return await loop.run_in_executor(None, proc.wait)
        done = loop.create_future()

        def ready() -> None:
            if not done.done():
                done.set_result(None)

        loop.add_reader(pidfd, ready)
        try:
            if proc.poll() is None:
                await done
        finally:
            loop.remove_reader(pidfd)
            os.close(pidfd)
        return proc.wait()

    # ------------------------------------------------------------------ completion propagation

    async def _propagate(self, tl: TaskLoop, task_bus: str) -> None:
        loop = asyncio.get_running_loop()
        project_dir = os.path.dirname(tl.task_dir)
        project_bus = os.path.join(project_dir, bus.PROJECT_BUS)
        state_path = os.path.join(tl.task_dir, "TASK-COMPLETE-FACT-PROPAGATION.yaml")
        lock_path = os.path.join(tl.task_dir, "TASK-COMPLETE-FACT-PROPAGATION.lock")
        try:
            msg, key, previous_key, previous_id = await loop.run_in_executor(
                self.executor, _completion_message, tl.project_id, tl.task_id, tl.task_dir, task_bus, state_path,
                lock_path)  # fmt: skip
        except (OSError, bus.BusError, runs.StorageError, ValueError) as exc:
            await self._info(tl, task_bus, "ERROR", f"task completion fact propagation failed: {exc}")
            return
        if msg is None:
            await self._info(tl, task_bus, "INFO", f"task completion facts already propagated (key={key})")
            return
        try:
            msg_id = await self.post(project_bus, msg)
        except bus.BusError as exc:
            await self._info(tl, task_bus, "ERROR", f"task completion fact propagation failed: append project FACT: {exc}")
            return
        state = {"version": 1, "last_propagation_key": key, "last_project_message_id": msg_id,
                 "last_propagated_at": format_rfc3339nano(msg.ts_ns)}  # fmt: skip
        await loop.run_in_executor(self.executor, runs.atomic_write, state_path,
                                   yaml.safe_dump(state, sort_keys=False))  # fmt: skip
        del previous_key, previous_id
        await self._info(tl, task_bus, "FACT",
                         f"task completion facts propagated to project bus (msg_id={msg_id} key={key})")

    # ------------------------------------------------------------------ stopping

    def stop_task(self, project_id: str, task_id: str) -> int:
        """SIGTERM the process group of every unfinished run of a task; returns how many were signalled."""
        stopped = 0
        signalled: set[int] = set()
        for live in list(self.live.values()):
            if live.entry.project_id == project_id and live.entry.task_id == task_id:
                if _killpg(live.pgid, signal.SIGTERM):
                    stopped += 1
                    signalled.add(live.pgid)
        project = self.index.projects.get(project_id)
        task = project.tasks.get(task_id) if project else None
        if task is not None:
            for entry in task.runs.values():
                info = entry.info
                if (entry.run_id in self.live or info is None or info.end_time_ns or info.pgid <= 0
                        or info.pgid in signalled or info.process_ownership.strip().lower() == "external"):
                    continue
                if _killpg(info.pgid, signal.SIGTERM):
                    stopped += 1
        for tl in list(self.loops):
            if tl.project_id == project_id and tl.task_id == task_id:
                tl.wake.set()
        return stopped

    async def shutdown(self, grace: float = STOP_GRACE_S) -> None:
        """Stop starting attempts, SIGTERM every agent group, SIGKILL what is left after ``grace``."""
        self.closing = True
        self._drop_queued()
        for tl in list(self.loops):
            tl.wake.set()
        for live in list(self.live.values()):
            _killpg(live.pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while self.live and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for live in list(self.live.values()):
            _killpg(live.pgid, signal.SIGKILL)
        tasks = [tl.task for tl in list(self.loops) if tl.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)


def _killpg(pgid: int, sig: int) -> bool:
    if pgid <= 0:
        return False
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


# --------------------------------------------------------------------------- project FACT


def _completion_message(project_id: str, task_id: str, task_dir: str, task_bus: str, state_path: str,
                        lock_path: str) -> tuple[Message | None, str, str, str]:  # fmt: skip
    """Build the project-bus FACT of a finished task (None when this state was already propagated)."""
    done_path = os.path.join(task_dir, runs.DONE)
    done_mtime = os.stat(done_path).st_mtime_ns
    runs_dir = os.path.join(task_dir, runs.RUNS_DIR)
    try:
        run_ids = sorted(e.name for e in os.scandir(runs_dir) if e.is_dir())
    except FileNotFoundError:
        run_ids = []
    infos: list[RunInfo] = []
    missing: list[str] = []
    counts = {"completed": 0, "failed": 0, "running": 0}
    latest: RunInfo | None = None
    latest_dir = ""
    for rid in run_ids:
        try:
            info = runs.read_run_info(os.path.join(runs_dir, rid, runs.RUN_INFO))
        except runs.StorageError:
            missing.append(rid)
            continue
        info.run_id = info.run_id or rid
        infos.append(info)
        if info.status in counts:
            counts[info.status] += 1
        latest, latest_dir = info, rid
    latest_info_path = os.path.join(runs_dir, latest_dir, runs.RUN_INFO) if latest else ""
    latest_output = (latest.output_path or os.path.join(runs_dir, latest_dir, runs.OUTPUT)) if latest else ""
    messages = bus.read(task_bus)
    facts = [m for m in messages if m.type.strip().upper() == "FACT"]
    latest_event = None
    if latest is not None:
        for m in messages:
            if m.run_id.strip() == latest.run_id and m.type.strip().upper() in (bus.RUN_STOP, bus.RUN_CRASH):
                latest_event = m
    key_parts = [format_rfc3339nano(done_mtime), f"|fact_count={len(facts)}"]
    key_parts += [f"|run_id={rid}" for rid in run_ids]
    key_parts += [f"|missing_run_info={rid}" for rid in missing]
    for info in infos:
        key_parts.append(f"|run={info.run_id},status={info.status},exit={info.exit_code},"
                         f"start={format_rfc3339nano(info.start_time_ns) if info.start_time_ns else ''},"
                         f"end={format_rfc3339nano(info.end_time_ns) if info.end_time_ns else ''}")  # fmt: skip
    key = hashlib.sha256("".join(key_parts).encode()).hexdigest()
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    os.close(fd)
    previous_key = previous_id = ""
    try:
        with open(state_path, encoding="utf-8") as fh:
            state = yaml.safe_load(fh) or {}
        previous_key = str(state.get("last_propagation_key") or "")
        previous_id = str(state.get("last_project_message_id") or "")
    except (OSError, yaml.YAMLError, AttributeError):
        pass
    if previous_key == key:
        return None, key, previous_key, previous_id
    now = time.time_ns()
    meta = {
        "kind": "task_completion_propagation", "propagation_key": key, "source_project_id": project_id,
        "source_task_id": task_id, "source_task_dir": task_dir, "source_task_bus_path": task_bus,
        "source_done_path": done_path, "source_done_mtime": format_rfc3339nano(done_mtime),
        "propagated_at": format_rfc3339nano(now), "run_count": str(len(run_ids)),
        "completed_run_count": str(counts["completed"]), "failed_run_count": str(counts["failed"]),
        "running_run_count": str(counts["running"]), "task_fact_count": str(len(facts)),
        "source_run_ids": ",".join(run_ids), "missing_run_info_ids": ",".join(missing),
        "source_latest_run_id": "", "source_latest_status": "", "source_output_path": "",
        "source_run_info_path": "", "latest_run_event_id": "", "latest_run_event_type": "",
    }  # fmt: skip
    run_id = ""
    if latest is not None:
        run_id = latest.run_id
        meta["source_latest_run_id"] = run_id
        meta["source_latest_status"] = latest.status
        meta["source_latest_exit_code"] = str(latest.exit_code)
        if latest.start_time_ns:
            meta["source_latest_start_time"] = format_rfc3339nano(latest.start_time_ns)
        if latest.end_time_ns:
            meta["source_latest_end_time"] = format_rfc3339nano(latest.end_time_ns)
        meta["source_output_path"] = latest_output
        meta["source_run_info_path"] = latest_info_path
    if latest_event is not None:
        meta["latest_run_event_id"] = latest_event.msg_id
        meta["latest_run_event_type"] = latest_event.type.strip()
        if latest_event.ts_ns:
            meta["latest_run_event_ts"] = format_rfc3339nano(latest_event.ts_ns)
    links = [Link(url=task_bus, label="task message bus", kind="task_bus"),
             Link(url=done_path, label="task DONE marker", kind="task_done")]  # fmt: skip
    if latest_info_path:
        links.append(Link(url=latest_info_path, label="latest run-info.yaml", kind="run_info"))
    if latest_output:
        links.append(Link(url=latest_output, label="latest output.md", kind="output"))
    parents: list[Parent] = []
    seen: set[str] = set()
    if latest_event is not None:
        parents.append(Parent(msg_id=latest_event.msg_id, kind="source_run_event"))
        seen.add(latest_event.msg_id)
    for fact in facts[-20:]:
        if fact.msg_id and fact.msg_id not in seen:
            seen.add(fact.msg_id)
            parents.append(Parent(msg_id=fact.msg_id, kind="source_fact"))
    body = _completion_body(project_id, task_id, task_dir, task_bus, done_path, done_mtime, now, key, run_ids, missing,
                            counts, latest, latest_info_path, latest_output, latest_event, facts)  # fmt: skip
    msg = Message(type="FACT", project_id=project_id, task_id=task_id, run_id=run_id, parents=parents, links=links,
                  meta=meta, body=body, ts_ns=now)  # fmt: skip
    return msg, key, previous_key, previous_id


def _completion_body(project_id: str, task_id: str, task_dir: str, task_bus: str, done_path: str, done_mtime: int,
                     now: int, key: str, run_ids: list[str], missing: list[str], counts: dict[str, int],
                     latest: RunInfo | None, latest_info_path: str, latest_output: str, latest_event: Message | None,
                     facts: list[Message]) -> str:  # fmt: skip
    out = ["task completion propagated to project scope\n\n",
           f"source_project_id: {project_id}\n", f"source_task_id: {task_id}\n", f"source_task_dir: {task_dir}\n",
           f"source_task_bus: {task_bus}\n", f"source_done_file: {done_path}\n",
           f"source_done_mtime: {format_rfc3339nano(done_mtime)}\n", f"propagated_at: {format_rfc3339nano(now)}\n",
           f"propagation_key: {key}\n", "\nrun_outcome_summary:\n", f"- run_count: {len(run_ids)}\n",
           f"- completed_runs: {counts['completed']}\n", f"- failed_runs: {counts['failed']}\n",
           f"- running_runs: {counts['running']}\n",
           f"- run_ids: {', '.join(run_ids)}\n" if run_ids else "- run_ids: (none)\n"]  # fmt: skip
    if missing:
        out.append(f"- missing_run_info_ids: {', '.join(missing)}\n")
    if latest is not None:
        out.append(f"- latest_run_id: {latest.run_id}\n- latest_status: {latest.status}\n"
                   f"- latest_exit_code: {latest.exit_code}\n")  # fmt: skip
        if latest.start_time_ns:
            out.append(f"- latest_start_time: {format_rfc3339nano(latest.start_time_ns)}\n")
        if latest.end_time_ns:
            out.append(f"- latest_end_time: {format_rfc3339nano(latest.end_time_ns)}\n")
    if latest_info_path:
        out.append(f"- latest_run_info_path: {latest_info_path}\n")
    if latest_output:
        out.append(f"- latest_output_path: {latest_output}\n")
    if latest_event is not None:
        out.append(f"- latest_run_event_msg_id: {latest_event.msg_id}\n- latest_run_event_type: {latest_event.type}\n")
        if latest_event.ts_ns:
            out.append(f"- latest_run_event_ts: {format_rfc3339nano(latest_event.ts_ns)}\n")
    out.append(f"\ntask_fact_signals:\n- count: {len(facts)}\n")
    if not facts:
        out.append("- sample: (none)\n")
        return "".join(out)
    last = facts[-1]
    out.append(f"- latest_fact_msg_id: {last.msg_id}\n")
    if last.ts_ns:
        out.append(f"- latest_fact_ts: {format_rfc3339nano(last.ts_ns)}\n")
    out.append("- sample:\n")
    for fact in facts[-5:]:
        first = " ".join((fact.body.replace("\r\n", "\n").split("\n")[0]).split())
        if not first:
            first = "(empty)"
        elif len(first) > 160:
            first = first[:157] + "..."
        ts = format_rfc3339nano(fact.ts_ns) if fact.ts_ns else ""
        out.append(f"  - [{ts}] {fact.msg_id} {first}\n")
    return "".join(out)
