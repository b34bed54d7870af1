"""Run the suites and collect the results: ``python -m conductor_perf.run [options] [-- robot args]``.

Creates ``results/<run-id>/``, points ``results/latest`` at it, runs ``robot`` (or ``pabot`` with
``--processes N``) on ``suites/`` with the chosen profile, then merges the per-process metric files
into ``metrics.json``, appends the run to ``results/history.jsonl`` and writes the FACT lines to
``MESSAGE-BUS.md``. Last, when nothing measures any more, it removes the run's scratch data (the SUT's
runs root, the benchmarks' files; see :mod:`conductor_perf.housekeeping`) and compresses large
logs, unless ``--keep-data``. The exit code is robot's (0 when every test passed).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from .formats.agentenv import STYLES

REPO = Path(__file__).resolve().parent.parent
PROFILES_DIR = REPO / "resources" / "profiles"
PROFILES = ("default", *sorted(p.stem for p in PROFILES_DIR.glob("*.yaml")))
TARGETS = REPO / "resources" / "targets.resource"
CHART_TAG = "chart"
"""Keyword tag of the keywords that log charts (``libraries/_perf_base.CHART_TAG``): log.html opens them."""
RERUN_SETTLE_S = 60.0
"""Pause before the second attempt of failed tests, so that it does not meet the same noisy moment
as the first (a neighbour's burst, the first attempt's own agents still ending)."""
RERUN_QUIET_DISK_S = 240.0
"""After the pause, how long the second attempt waits at most for a quiet disk. On ext4 without a
journal (the CI machine's), creating files is slow for minutes after many files were deleted (the
kernel skips recently freed inodes one by one, seen with ``perf`` in ``recently_deleted``), in
waves that began ~50 s after the deletion: a fixed pause of 60 s put the second attempt in the
first wave. The runner probes the disk beside the run until it is as quiet as the run's quietest
probe (:func:`conductor_perf.measure.fsprobe.wait_until_quiet`), and says what it saw."""
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_DURATION = re.compile(
    r"^\s*(\d+(\.\d+)?\s*(ms|millis|milliseconds?|s|secs?|seconds?|m|mins?|minutes?|h|hours?|d|days?)?\s*)+$",
    re.IGNORECASE,
)
_DEFINITION = re.compile(r"^\$\{(\w+)\}\s{2,}(\S.*?)\s*$")
_ENV_DEFAULT = re.compile(r"^%\{(\w+)=(.*)\}$")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m conductor_perf.run", description=__doc__.splitlines()[0])
    p.add_argument("--profile", default=os.environ.get("PROFILE", "default"),
                   help=f"one of {', '.join(PROFILES)} (default: PROFILE or default)")  # fmt: skip
    p.add_argument("--processes", type=int, default=1, help="> 1 runs the suites with pabot")
    p.add_argument("--results", default=str(REPO / "results"), help="results root (default: results/)")
    p.add_argument("--run-id", default="", help="name of the run folder (default: a new sortable id)")
    p.add_argument("--binary", default="", metavar="PATH",
                   help="start and own this conductor-loop executable (run-agent) as the SUT "
                        "(default: the environment's CONDUCTOR_BINARY)")  # fmt: skip
    p.add_argument("--binary-arg", action="append", default=[], metavar="ARG",
                   help="one more argument of the binary's serve command line (repeatable; added to "
                        "CONDUCTOR_BINARY_ARGS; write --binary-arg=--flag for one that starts with a dash)")  # fmt: skip
    p.add_argument("--binary-config", action="append", default=[], metavar="KEY=VALUE",
                   help="a config key of the binary, e.g. api.sse.max_clients_per_run=500 (repeatable; "
                        "added to CONDUCTOR_BINARY_CONFIG)")  # fmt: skip
    p.add_argument("--embedded-arg", action="append", default=[], metavar="ARG",
                   help="one more flag of the embedded reference conductor, e.g. --embedded-arg=--slowdown-us "
                        "--embedded-arg 20 (repeatable; added to CONDUCTOR_EMBEDDED_ARGS)")  # fmt: skip
    p.add_argument("--url", default="", help="attach to this conductor instead of the embedded one")
    p.add_argument("--root", default="", help="runs root of the conductor at --url")
    p.add_argument("--api-key", default="", help="API key of the conductor at --url")
    p.add_argument("--agent-env", choices=STYLES, default="",
                   help="the reference conductor (embedded, or its run-agent wrapper as --binary) plays this "
                        "conductor-loop build's agent environment: current (JRUN_* names, default), legacy "
                        "(TASK_FOLDER, RUN_FOLDER, MESSAGE_BUS, RUNS_DIR, CONDUCTOR_URL) or early (no task "
                        "folder); sets CONDUCTOR_AGENT_ENV")  # fmt: skip
    p.add_argument("--include", action="append", default=[], help="only tests with this tag (repeatable)")
    p.add_argument("--exclude", action="append", default=[], help="skip tests with this tag (repeatable)")
    p.add_argument(
        "--message-bus", default="", help="MESSAGE-BUS.md for the FACT lines (default: in the run dir)"
    )
    p.add_argument("--rerun-failed", action="store_true",
                   help="measure failed tests once more and merge (a miss must repeat to fail; CI uses it)")
    p.add_argument("--rerun-settle", type=float, default=RERUN_SETTLE_S, metavar="SECONDS",
                   help=f"pause before measuring failed tests again (default {RERUN_SETTLE_S:g})")
    p.add_argument("--rerun-quiet-disk", type=float, default=RERUN_QUIET_DISK_S, metavar="SECONDS",
                   help="after that pause, wait at most this long for the disk beside the run to be as quiet as "
                        f"the run's quietest file-system probe; 0: do not wait (default {RERUN_QUIET_DISK_S:g})")
    p.add_argument("--keep-data", action="store_true",
                   help="keep the scratch data of the SUT and the benchmarks (runs roots, bus files) after the run")  # fmt: skip
    p.add_argument("suites", nargs="*", help="suite files or folders (default: suites/)")
    return p


ACCEPTANCE_SUITE = "Suites.Acceptance"
"""The acceptance suites (``suites/98__acceptance``) as pabot names them when it runs ``suites/``."""


def suite_name(path: Path) -> str:
    """The name Robot gives a suite file or folder: the ``NN__`` prefix dropped, ``_`` as spaces, a
    lower-case name title-cased (``02__bus_http.robot`` -> ``Bus Http``)."""
    name = path.stem if path.suffix == ".robot" else path.name
    if "__" in name:
        name = name.split("__", 1)[1]
    name = name.replace("_", " ").strip()
    return name.title() if name.islower() else name


def pabot_ordering(out: Path, suites: Path = REPO / "suites") -> Path:
    """A pabot ordering file: every other top-level suite, ``#WAIT``, then the acceptance suites alone.

    The acceptance tests take no measurement lock and leave tasks in the SUT: under plain robot they
    run after the perf suites by their ``98__`` prefix; under pabot this keeps them from sharing the
    CPU with a measurement (or adding to a history one measures).
    """
    names = [suite_name(p) for p in sorted(suites.iterdir())
             if not p.name.startswith(("_", ".")) and (p.is_dir() or p.suffix == ".robot")]  # fmt: skip
    lines = [f"--suite Suites.{n}" for n in names if f"Suites.{n}" != ACCEPTANCE_SUITE]
    path = out / "pabot-ordering.txt"
    path.write_text("\n".join([*lines, "#WAIT", f"--suite {ACCEPTANCE_SUITE}"]) + "\n", encoding="utf-8")
    return path


def robot_command(args: argparse.Namespace, out: Path, extra: list[str], environ: dict[str, str] | None = None) -> list[str]:
    """The robot/pabot command line for these options (``environ``: the environment whose
    ``CONDUCTOR_BINARY*`` / ``CONDUCTOR_EMBEDDED_ARGS`` add to them; default this process's)."""
    if args.processes > 1:
        cmd = [sys.executable, "-m", "pabot.pabot", "--processes", str(args.processes), "--pabotlib",
               "--pabotlibport", "0"]  # fmt: skip
        if not args.suites:
            cmd += ["--ordering", str(pabot_ordering(out))]
    else:
        cmd = [sys.executable, "-m", "robot"]
    cmd += ["--outputdir", str(out), "--xunit", "xunit.xml", "--pythonpath", str(REPO / "libraries"),
            "--expandkeywords", f"tag:{CHART_TAG}",
            "--variable", f"RESULTS_DIR:{out}", "--variable", f"PROFILE:{args.profile}"]  # fmt: skip
    if "soak" not in args.include:  # long soak tests only when asked for (an exclude would beat the include)
        cmd += ["--exclude", "soak"]
    if args.profile != "default":
        cmd += ["--variablefile", str(PROFILES_DIR / f"{args.profile}.yaml")]
    for name, value in (
        ("CONDUCTOR_URL", args.url),
        ("CONDUCTOR_ROOT", args.root),
        ("CONDUCTOR_API_KEY", args.api_key),
        *binary_variables(args, environ),
        *embedded_variables(args, environ),
    ):
        if value:
            cmd += ["--variable", f"{name}:{value}"]
    for tag in args.include:
        cmd += ["--include", tag]
    for tag in args.exclude:
        cmd += ["--exclude", tag]
    return cmd + extra + (args.suites or [str(REPO / "suites")])


def binary_variables(args: argparse.Namespace, environ: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """``CONDUCTOR_BINARY*`` Robot variables of the options: the binary's absolute path, its extra
    arguments and config keys (the environment's first, then the options'), each as shell words."""
    env = os.environ if environ is None else environ
    binary = args.binary or env.get("CONDUCTOR_BINARY", "")
    if not binary:
        return []
    if os.sep in binary or Path(binary).exists():
        binary = os.path.normpath(Path(binary).expanduser().absolute())  # robot runs in the repository, not here
    extra = shlex.split(env.get("CONDUCTOR_BINARY_ARGS", "")) + list(args.binary_arg)
    config = shlex.split(env.get("CONDUCTOR_BINARY_CONFIG", "")) + list(args.binary_config)
    return [("CONDUCTOR_BINARY", binary), ("CONDUCTOR_BINARY_ARGS", shlex.join(extra)),
            ("CONDUCTOR_BINARY_CONFIG", shlex.join(config))]  # fmt: skip


def embedded_variables(args: argparse.Namespace, environ: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """``CONDUCTOR_EMBEDDED_ARGS``: the environment's reference flags, then the options' (shell words)."""
    env = os.environ if environ is None else environ
    words = shlex.split(env.get("CONDUCTOR_EMBEDDED_ARGS", "")) + list(getattr(args, "embedded_arg", []))
    return [("CONDUCTOR_EMBEDDED_ARGS", shlex.join(words))] if words else []


def _kind(value: str) -> str:
    if _NUMBER.match(value):
        return "number"
    if _DURATION.match(value):
        return "duration"
    return ""


def _target_kinds() -> dict[str, tuple[str, str, str]]:
    """``NAME -> (kind, default, environment variable or "")`` of the numeric/duration targets."""
    kinds: dict[str, tuple[str, str, str]] = {}
    try:
        lines = TARGETS.read_text(encoding="utf-8").splitlines()
    except OSError:
        return kinds
    for line in lines:
        match = _DEFINITION.match(line)
        if not match:
            continue
        name, value = match.groups()
        env = ""
        env_match = _ENV_DEFAULT.match(value)
        if env_match:
            env, value = env_match.groups()
        kind = _kind(value)
        if kind:
            kinds[name] = (kind, value, env)
    return kinds


def _overrides(extra: list[str]) -> list[tuple[str, str]]:
    """``(NAME, value)`` of every ``--variable NAME:value`` / ``-v NAME:value`` in robot's arguments."""
    out, i = [], 0
    while i < len(extra):
        arg = extra[i]
        text = None
        if arg in ("--variable", "-v") and i + 1 < len(extra):
            text, i = extra[i + 1], i + 1
        elif arg.startswith("--variable="):
            text = arg.split("=", 1)[1]
        if text is not None and ":" in text:
            out.append(tuple(text.split(":", 1)))  # type: ignore[arg-type]
        i += 1
    return out


def preflight(args: argparse.Namespace, extra: list[str], environ: dict[str, str] | None = None) -> str:
    """The first problem with the options that would only surface inside robot, or ``""``.

    Checked: the profile (also from ``PROFILE``), ``--url`` and ``--root``, and every override of
    a numeric or duration target of ``targets.resource`` (``--variable NAME:value`` after ``--``,
    or the environment variable the target reads, e.g. ``PERF_SSE_LATENCY_MS``).
    """
    environ = dict(os.environ if environ is None else environ)
    if args.profile not in PROFILES:
        return f"unknown profile {args.profile!r} (PROFILE or --profile): use one of {', '.join(PROFILES)}"
    if args.url:
        from .target import TargetError, check_url

        try:
            check_url(args.url)
        except TargetError as exc:
            return str(exc).replace("CONDUCTOR_URL", "--url")
    if getattr(args, "agent_env", "") and args.url:
        return "--agent-env sets what the embedded conductor plays; with --url the server's own build decides"
    if args.root and not Path(args.root).expanduser().is_dir():
        return f"--root {args.root!r} is not a directory (the runs root must exist)"
    if args.binary or environ.get("CONDUCTOR_BINARY") or args.binary_arg or args.binary_config:
        problem = _binary_problem(args, environ)
        if problem:
            return problem
    if args.embedded_arg or environ.get("CONDUCTOR_EMBEDDED_ARGS"):
        problem = _embedded_problem(args, environ)
        if problem:
            return problem
    kinds = _target_kinds()
    checks = [(name, value, "--variable") for name, value in _overrides(extra)]
    checks += [(name, environ[env], f"environment {env}") for name, (_, _, env) in kinds.items()
               if env and environ.get(env, "") != ""]  # fmt: skip
    for name, value, source in checks:
        if name not in kinds:
            continue
        kind, default, _ = kinds[name]
        got = _kind(value.strip())
        if not (got == "number" if kind == "number" else got in ("number", "duration")):
            what = "a number" if kind == "number" else "a duration like '10 s'"
            return f"{name} must be {what} (default {default}), got {value!r} from {source}"
    return ""


def _embedded_problem(args: argparse.Namespace, environ: dict[str, str]) -> str:
    """The first problem of the embedded conductor's extra flags, or ``""``."""
    from .reference.__main__ import flags_problem

    if args.url or environ.get("CONDUCTOR_URL") or args.binary or environ.get("CONDUCTOR_BINARY"):
        return ("--embedded-arg / CONDUCTOR_EMBEDDED_ARGS are flags of the embedded conductor, but the SUT is "
                + ("a URL" if args.url or environ.get("CONDUCTOR_URL") else "a binary"))  # fmt: skip
    try:
        words = shlex.split(environ.get("CONDUCTOR_EMBEDDED_ARGS", "")) + list(args.embedded_arg)
    except ValueError as exc:
        return f"CONDUCTOR_EMBEDDED_ARGS is not valid shell words ({exc}): {environ.get('CONDUCTOR_EMBEDDED_ARGS')!r}"
    problem = flags_problem(words)
    return f"embedded conductor flags {shlex.join(words)!r}: {problem}" if problem else ""


def _binary_problem(args: argparse.Namespace, environ: dict[str, str]) -> str:
    """The first problem of the binary options (path, shell words, config keys), or ``""``."""
    from .binary import parse_config_overrides, resolve_binary
    from .target import TargetError

    binary = args.binary or environ.get("CONDUCTOR_BINARY", "")
    if not binary:
        return "--binary-arg and --binary-config need a binary: --binary PATH or CONDUCTOR_BINARY"
    if args.url or environ.get("CONDUCTOR_URL"):
        return "a URL (--url or CONDUCTOR_URL) and a binary (--binary or CONDUCTOR_BINARY) both name a SUT: choose one"
    try:
        resolve_binary(binary)
        for name in ("CONDUCTOR_BINARY_ARGS", "CONDUCTOR_BINARY_CONFIG"):
            try:
                shlex.split(environ.get(name, ""))
            except ValueError as exc:
                return f"{name} is not valid shell words ({exc}): {environ.get(name)!r}"
        parse_config_overrides(shlex.split(environ.get("CONDUCTOR_BINARY_CONFIG", "")) + list(args.binary_config))
    except TargetError as exc:
        return str(exc)
    return ""


def split_robot_args(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """A runner's command line split at its first ``--``: (the runner's options, robot's options after it)."""
    words = list(argv)
    if "--" not in words:
        return words, []
    i = words.index("--")
    return words[:i], words[i + 1 :]


def robot_env(results: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a run's Robot processes: ``base`` (default: this one's) with the run's results
    folder, the report left to the runner, and this interpreter's scripts (the venv) first on PATH:
    pabot starts ``robot`` by name."""
    env = dict(os.environ if base is None else base)
    env.update(CONDUCTOR_PERF_RESULTS=str(results), CONDUCTOR_PERF_FINALIZE="runner")
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env


def main(argv: list[str] | None = None) -> int:
    argv, extra = split_robot_args(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    problem = preflight(args, extra)
    if problem:
        print(f"conductor-perf: {problem}", file=sys.stderr)
        return 2
    from .housekeeping import finish, link_latest
    from .records import new_run_id
    from .report import finalize

    results_root = Path(args.results).resolve()
    run_id = args.run_id or new_run_id()
    out = results_root / run_id
    out.mkdir(parents=True, exist_ok=True)
    link_latest(results_root, run_id)
    env = robot_env(out)
    if args.agent_env:
        env["CONDUCTOR_AGENT_ENV"] = args.agent_env  # read by the reference conductor (a real build ignores it)
    cmd = robot_command(args, out, extra)
    print(f"results: {out}", flush=True)
    print(" ".join(cmd), flush=True)
    try:
        rc = subprocess.call(cmd, env=env, cwd=REPO)
        if args.rerun_failed and 0 < rc < 250 and (out / "output.xml").exists():
            rc = _rerun_failed(args, out, extra, env)
    except KeyboardInterrupt:
        rc = 253
    from .report import add_messages_to_xunit

    add_messages_to_xunit(out)  # passing tests' figures into xunit too (robot writes only failures')
    try:
        summary = finalize(out, profile=args.profile, message_bus=args.message_bus or None,
                           history=results_root / "history.jsonl")  # fmt: skip
        print(summary, flush=True)
    except Exception as exc:  # noqa: BLE001 - one clear line, keep robot's exit code
        print(f"conductor-perf: could not write the run report: {exc}", file=sys.stderr)
        rc = rc or 1
    print(finish(out, keep=args.keep_data), flush=True)  # the last measurement is over
    return rc


def root_suite_name(output_xml: Path) -> str:
    """The name of the top suite in a Robot ``output.xml`` (``""`` when it cannot be read)."""
    import xml.etree.ElementTree as ET

    try:
        for _, elem in ET.iterparse(output_xml, events=("start",)):
            if elem.tag == "suite":
                return elem.get("name", "")
    except (OSError, ET.ParseError):
        return ""
    return ""


def wait_for_quiet_disk(out: Path, timeout: float) -> str:
    """Probe the disk beside run directory ``out`` until it is quiet or ``timeout`` s; returns what it saw.

    Quiet is judged against the quietest ``file system directory creation p50`` the run recorded
    (or the quietest probe of the wait). The probe's folders are the run's scratch data.
    """
    from .housekeeping import note_scratch
    from .measure import fsprobe
    from .records import ResultsError, load_records

    try:
        records = load_records(out)
    except (OSError, ResultsError):
        records = []
    probes = fsprobe.recorded_probes(records)
    try:
        note_scratch(out, out / f"{fsprobe.PROBE_PREFIX}*")
        return fsprobe.wait_until_quiet(out, timeout=timeout, baseline_us=min(probes, default=None)).summary()
    except OSError as exc:
        return f"disk not probed ({exc.strerror or exc}): measuring now"


def _rerun_failed(args: argparse.Namespace, out: Path, extra: list[str], env: dict[str, str]) -> int:
    """Measure the failed tests once more (plain robot) and merge; returns the merged exit code.

    On a shared machine one noisy moment can push a figure over its target; a miss that repeats is
    a miss. The second attempt waits ``--rerun-settle`` seconds first (see :data:`RERUN_SETTLE_S`),
    then up to ``--rerun-quiet-disk`` seconds for a quiet disk (:data:`RERUN_QUIET_DISK_S`).
    Both attempts stay visible: the merged log marks re-executed tests, and the metrics of the
    first attempt are kept in metrics.json under ``extra.superseded_attempts``.
    """
    first = out / "first-attempt.xml"
    os.replace(out / "output.xml", first)
    settle = max(0.0, args.rerun_settle)
    print(f"conductor-perf: measuring the failed tests once more, after {settle:g} s to let the machine settle",
          flush=True)  # fmt: skip
    time.sleep(settle)
    if args.rerun_quiet_disk > 0:
        print(f"conductor-perf: {wait_for_quiet_disk(out, args.rerun_quiet_disk)}", flush=True)
    again = argparse.Namespace(**{**vars(args), "processes": 1})
    # the second attempt runs only the suites that failed: with several suite files its top suite
    # would get another name ("Load Test" instead of "Load Test & Agents"), and rebot merges only
    # outputs with the same top suite. Not robot's --rerunfailed: it matches test names as written,
    # and test names take their numbers from variables (libraries/RerunFailed.py matches both)
    name = root_suite_name(first)
    rerun = f"{REPO / 'libraries' / 'RerunFailed.py'}:{first}"
    cmd = robot_command(again, out, [*extra, "--prerunmodifier", rerun, "--output", "rerun.xml",
                                     "--log", "NONE", "--report", "NONE", "--xunit", "NONE",
                                     *(["--name", name] if name else [])])  # fmt: skip
    subprocess.call(cmd, env={**env, "CONDUCTOR_PERF_ATTEMPT": "2"}, cwd=REPO)
    if not (out / "rerun.xml").exists():
        os.replace(first, out / "output.xml")
        return 1
    merge = [sys.executable, "-m", "robot.rebot", "--merge", "--outputdir", str(out), "--output", "output.xml",
             "--xunit", "xunit.xml", "--expandkeywords", f"tag:{CHART_TAG}", str(first), str(out / "rerun.xml")]  # fmt: skip
    return subprocess.call(merge, env=env, cwd=REPO)


if __name__ == "__main__":
    sys.exit(main())
