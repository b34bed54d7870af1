"""Compare two builds in one interleaved run: ``python -m conductor_perf.compare --a SUT --b SUT [options]``.

    python -m conductor_perf.compare --a embedded --b "embedded:--slowdown-us 10" --suites api --rounds 8
    python -m conductor_perf.compare --a /opt/old/run-agent --b ./run-agent          # two conductor-loop builds
    python -m conductor_perf.compare --a embedded --b embedded                       # A/A: the false-alarm rate
    python -m conductor_perf.compare --report results/compare-20261205-120000-4242  # the comparison again
    make compare A=embedded B="embedded:--slowdown-us 10" SUITES=api ROUNDS=8

A SUT is ``embedded`` (the reference conductor), ``embedded:<reference flags>`` (e.g.
``embedded:--slowdown-us 10``) or the path of a conductor-loop executable (started and owned like
``CONDUCTOR_BINARY``; ``CONDUCTOR_BINARY_ARGS`` / ``CONDUCTOR_BINARY_CONFIG`` apply to both sides).

It runs the chosen suites (``--suites``: suite names such as ``api`` or ``bus_http``, or tags;
default ``api``) once per side and round, in ABBA order (round 1: A then B, round 2: B then A,
...), each run a separate ``robot`` process on a fresh SUT with a fresh runs root, which the suites
seed the same way; the profile, the load generator and every other setting are the same for both.
Rounds go to ``results/compare-<id>/rounds/NN-A|B/`` (each with its ``metrics.json``). Then it
writes the comparison (``compare.json``, ``compare.md``, ``compare.svg``, ``summary.html``; see
:mod:`conductor_perf.comparison`), runs the comparison suite ``compare/compare.robot`` on it and
merges every round and the comparison into one Robot log (``log.html``: one suite per round, then
the comparison). ``results/latest-compare`` points at the folder.

Exit status: 0 when every round completed and no figure of B is slower or worse than A's (and B
met every exact target A met); 1 otherwise; 2 for bad input (one line, nothing started).
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import housekeeping
from .comparison import COMPARE_JSON, Comparison, Round, abba_order, compare_rounds
from .environment import SutIdentity, load_avg, machine_info
from .faults import UNEXPECTED_EXIT
from .records import ResultsError, RunResults, new_run_id, utc_now, write_text_atomic
from .run import CHART_TAG, PROFILES, REPO, robot_command, robot_env, split_robot_args
from .stats import u_critical

DEFAULT_SUITES = ("api",)
DEFAULT_ROUNDS = 8
DEFAULT_PROFILE = "quick"
ROUND_TIMEOUT_S = 1800.0
PLAN_FILE = "plan.json"
ROUND_FILE = "round.json"
COMPARE_SUITE = REPO / "compare" / "compare.robot"
SUITE_DIR = REPO / "suites"
NEVER = ("regression",)
"""Suites and tags never run in a comparison: the regression suite compares with the history."""
SCRUBBED_ENV = ("CONDUCTOR_URL", "CONDUCTOR_ROOT", "CONDUCTOR_API_KEY", "CONDUCTOR_BINARY", "CONDUCTOR_EMBEDDED_ARGS",
                "CONDUCTOR_PERF_ATTEMPT", "CONDUCTOR_PERF_RESULTS")  # fmt: skip
"""Environment variables that would choose another SUT or results folder for a round."""
_ROBOT_EXIT = {251: "help or version shown", 252: "invalid data or command line options", 253: "interrupted",
               255: "unexpected internal error"}  # fmt: skip


class CompareError(Exception):
    """Bad input to a comparison; the message is one line."""


# --------------------------------------------------------------------------------------------------
# SUTs


@dataclass(frozen=True)
class SutSpec:
    """One side of a comparison, as given and as the rounds start it."""

    given: str
    kind: str  # "embedded" or "binary"
    args: tuple[str, ...] = ()
    binary: str = ""

    @property
    def spec(self) -> str:
        """The canonical spelling: ``embedded``, ``embedded:--slowdown-us 10`` or the executable's absolute path."""
        if self.kind == "binary":
            return self.binary
        return "embedded" + (":" + shlex.join(self.args) if self.args else "")


def parse_sut(text: str, side: str) -> SutSpec:
    """``embedded``, ``embedded:<reference flags>`` or a conductor-loop executable; :class:`CompareError`
    names the side and what is wrong (unknown spelling, bad flags, missing or non-executable file)."""
    from .binary import resolve_binary
    from .reference.__main__ import flags_problem
    from .target import TargetError

    given = str(text).strip()
    usage = "use embedded, embedded:<reference flags> or the path of a conductor-loop executable"
    if not given:
        raise CompareError(f"{side} names no SUT: {usage}")
    if given == "embedded":
        return SutSpec(given, "embedded")
    if given.startswith("embedded:"):
        try:
            words = tuple(shlex.split(given.split(":", 1)[1]))
        except ValueError as exc:
            raise CompareError(f"{side}={given!r}: the flags are not valid shell words ({exc})") from None
        problem = flags_problem(words)
        if problem:
            raise CompareError(f"{side}={given!r}: {problem} (see python -m conductor_perf.reference --help)")
        return SutSpec(given, "embedded", words)
    looks_like_path = os.sep in given or given.startswith(".") or Path(given).exists()
    if not looks_like_path and shutil.which(given) is None:
        near = difflib.get_close_matches(given.split(":", 1)[0], ["embedded"], n=1, cutoff=0.6)
        hint = f" (did you mean {near[0]}{given[len(given.split(':', 1)[0]):]}?)" if near else ""
        raise CompareError(f"unknown SUT {given!r} for {side}{hint}: {usage}")
    try:
        return SutSpec(given, "binary", binary=str(resolve_binary(given)))
    except TargetError as exc:
        raise CompareError(f"{side}: {exc}") from None


# --------------------------------------------------------------------------------------------------
# suites


def suite_names(suite_dir: Path = SUITE_DIR) -> dict[str, str]:
    """``short name -> Robot suite name`` of the suite files and folders (``api -> Api``, ``bus_http -> Bus Http``)."""
    out = {}
    for path in sorted(suite_dir.iterdir()):
        if path.name == "__init__.robot" or not (path.suffix == ".robot" or (path.is_dir() and any(path.rglob("*.robot")))):
            continue
        short = path.stem.split("__", 1)[-1]
        out[short.lower()] = short.replace("_", " ").title()
    return out


def suite_tags(suite_dir: Path = SUITE_DIR) -> set[str]:
    """Every tag the suite files use (``Test Tags`` and ``[Tags]``)."""
    tags: set[str] = set()
    for path in suite_dir.rglob("*.robot"):
        for line in path.read_text(encoding="utf-8").splitlines():
            m = re.match(r"^\s*(Test Tags|\[Tags\])\s{2,}(.*)$", line)
            if m:
                tags.update(t.strip().lower() for t in re.split(r"\s{2,}", m.group(2)) if t.strip())
    return tags


def select_suites(words: Sequence[str], suite_dir: Path = SUITE_DIR) -> list[str]:
    """Robot options choosing the suites: ``--suite Name`` per suite name, ``--include tag`` per tag.

    A word may be a suite's short name (``api``, ``bus_http``), its Robot name (``Bus Http``), its
    file name (``04__api.robot``) or a tag. :class:`CompareError` for an unknown word or the
    regression suite (it compares with the history, not A with B).
    """
    names = suite_names(suite_dir)
    by_robot = {v.lower(): v for v in names.values()}
    tags = suite_tags(suite_dir)
    out: list[str] = []
    for word in words:
        w = word.strip()
        key = Path(w).stem.split("__", 1)[-1].lower() if w.endswith(".robot") else w.lower()
        if key.replace(" ", "_") in NEVER or key in NEVER:
            raise CompareError(f"suite {w!r} cannot be compared: it compares a run with the history, not A with B")
        if key.replace(" ", "_") in names:
            out += ["--suite", names[key.replace(" ", "_")]]
        elif key in by_robot:
            out += ["--suite", by_robot[key]]
        elif key in tags:
            out += ["--include", key]
        else:
            raise CompareError(f"unknown suite or tag {w!r}: suites are {', '.join(n for n in names if n not in NEVER)}; tags are "
                               f"{', '.join(sorted(tags - set(NEVER)))}")  # fmt: skip
    if not out:
        raise CompareError("no suites chosen: give suite names or tags, e.g. --suites api")
    return out


# --------------------------------------------------------------------------------------------------
# one round


def _robot_env(results: Path) -> dict[str, str]:
    return robot_env(results, {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV})


def round_command(plan: dict[str, Any], spec: SutSpec, out: Path, *, name: str, doc: str,
                  dryrun: bool = False) -> list[str]:  # fmt: skip
    """The robot command line of one round (or of the dry run that checks the options first)."""
    ns = argparse.Namespace(processes=1, profile=plan["profile"], include=[], exclude=list(NEVER), url="", root="",
                            api_key="", binary=spec.binary, binary_arg=[], binary_config=[],
                            embedded_arg=list(spec.args), suites=[plan["suite_dir"]])  # fmt: skip
    extra = [*plan["selection"], "--name", name, "--doc", doc, "--metadata", f"SUT spec:``{spec.spec}``",  # robot reads a bare path's file
             "--log", "NONE", "--report", "NONE", "--xunit", "NONE", *plan["robot_args"]]  # fmt: skip
    if dryrun:
        extra += ["--dryrun", "--output", "NONE"]
    # the environment without CONDUCTOR_BINARY / CONDUCTOR_EMBEDDED_ARGS: only this side's SUT is named
    return robot_command(ns, out, extra, environ=_robot_env(out))


def _first_failure(output_xml: Path) -> str:
    """The first FAIL message of a robot output.xml (a suite setup's fatal error, say), or ``""``."""
    try:
        for _, elem in ET.iterparse(output_xml, events=("end",)):
            if elem.tag == "status" and elem.get("status") == "FAIL" and (elem.text or "").strip():
                return " ".join(elem.text.split())[:300]
    except (OSError, ET.ParseError):
        return ""
    return ""


def _console_tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " / ".join(line.strip() for line in text[-lines:] if line.strip())


def run_round(plan: dict[str, Any], spec: SutSpec, rnd: Round, out_root: Path, *, timeout: float) -> Round:
    """Run one round (one robot process on a fresh SUT), write its metrics.json, and judge whether it completed."""
    from .report import finalize
    from .target import stop_process_tree

    out = out_root / rnd.directory
    out.mkdir(parents=True, exist_ok=True)
    cmd = round_command(plan, spec, out, name=f"Round {rnd.number} {rnd.side}",
                        doc=f"Side {rnd.side} ({spec.spec}), run {rnd.position} of {2 * plan['rounds']} in ABBA order")  # fmt: skip
    write_text_atomic(out / ROUND_FILE, json.dumps({**rnd.to_dict(), "spec": spec.spec, "profile": plan["profile"],
                      "suites": plan["suites"], "robot_args": plan["robot_args"], "command": cmd}, indent=1) + "\n")  # fmt: skip
    console = out / "robot-console.txt"
    rnd.started = utc_now()
    began = time.monotonic()
    timed_out = False
    with open(console, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=_robot_env(out), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        try:
            rnd.exit_code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            stop_process_tree(proc.pid, timeout=60)  # robot stops gracefully on SIGTERM; then the rest is killed
            rnd.exit_code = proc.wait(timeout=30)
        except BaseException:
            stop_process_tree(proc.pid, timeout=30)
            proc.wait(timeout=30)
            raise
    rnd.duration_s = round(time.monotonic() - began, 1)
    rnd.finished = utc_now()
    rnd.load_avg = load_avg()
    try:
        if (out / "metrics.d").is_dir():
            finalize(out, profile=plan["profile"], message_bus=out / "MESSAGE-BUS.md", history=None)
        rnd.run = RunResults.load(out)
    except (ResultsError, OSError, ValueError) as exc:
        rnd.run = None
        rnd.fail(f"no results were written ({exc}); robot: {_console_tail(console) or 'no output'}")
    judge_round(rnd, out, timed_out=timed_out, timeout=timeout)
    write_text_atomic(out / ROUND_FILE, json.dumps({**rnd.to_dict(), "spec": spec.spec, "profile": plan["profile"],
                      "suites": plan["suites"], "robot_args": plan["robot_args"], "command": cmd}, indent=1) + "\n")  # fmt: skip
    return rnd


def judge_round(rnd: Round, out: Path, *, timed_out: bool = False, timeout: float = ROUND_TIMEOUT_S) -> Round:
    """Mark a round failed when it was stopped, robot could not run, or its SUT did not start or died."""
    if timed_out:
        rnd.fail(f"did not finish within {timeout:g} s and was stopped")
    code = rnd.exit_code
    if code is not None and (code >= 250 or code < 0):
        what = _ROBOT_EXIT.get(code, "killed" if code < 0 else "robot error")
        rnd.fail(f"robot exited with status {code} ({what}): {_console_tail(out / 'robot-console.txt')}")
    run = rnd.run
    if run is None:
        return rnd
    crashes = [r for r in run.metrics if r.metric == UNEXPECTED_EXIT]
    if crashes:
        rnd.fail(f"its SUT died during the round: {crashes[0].message}")
    if not run.sut.get("kind"):
        reason = _first_failure(out / "output.xml") or _console_tail(out / "robot-console.txt") or "no reason given"
        rnd.fail(f"its SUT did not start: {reason}")
    elif not any(r.value is not None and r.verdict != "skipped" for r in run.metrics):
        rnd.fail("it measured no figure" + (f": {_first_failure(out / 'output.xml')}" if (out / "output.xml").exists()
                                             else ""))  # fmt: skip
    return rnd


# --------------------------------------------------------------------------------------------------
# the whole comparison


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m conductor_perf.compare", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Compare two builds in one interleaved (ABBA) run: the ratio B/A of every figure with its "
                    "95 % interval.",
        epilog="examples:\n" + __doc__.split("\n\n")[1] + "\n\nA SUT is 'embedded', 'embedded:<reference flags>' "
               "(e.g. 'embedded:--slowdown-us 10') or the path of a conductor-loop executable.\nSee docs/comparing-builds.md.")  # fmt: skip
    p.add_argument("--a", default="", metavar="SUT", help="side A")
    p.add_argument("--b", default="", metavar="SUT", help="side B")
    p.add_argument("--suites", default="", help=f"suite names or tags, space-separated (default: {' '.join(DEFAULT_SUITES)})")
    p.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help=f"rounds, each one run of A and one of B (default {DEFAULT_ROUNDS})")
    p.add_argument("--profile", default=DEFAULT_PROFILE, help=f"one of {', '.join(PROFILES)} (default {DEFAULT_PROFILE})")
    p.add_argument("--results", default=str(REPO / "results"), help="results root (default: results/)")
    p.add_argument("--id", default="", help="name of the comparison folder (default: compare-<sortable id>)")
    p.add_argument("--round-timeout", type=float, default=ROUND_TIMEOUT_S, metavar="SECONDS",
                   help=f"stop a round that runs longer (default {ROUND_TIMEOUT_S:g})")
    p.add_argument("--report", default="", metavar="DIR",
                   help="write the comparison of an earlier run's rounds again (no round is run)")
    p.add_argument("--keep-data", action="store_true",
                   help="keep each round's scratch data (SUT runs roots, bus files) after the comparison")
    p.add_argument("--suite-dir", default=str(SUITE_DIR), help=argparse.SUPPRESS)  # tests: their own suites
    return p  # fmt: skip


def plan_comparison(args: argparse.Namespace, robot_args: list[str]) -> tuple[dict[str, Any], SutSpec, SutSpec]:
    """Check every option (one-line :class:`CompareError`) and return the plan and both sides."""
    if args.profile not in PROFILES:
        raise CompareError(f"unknown profile {args.profile!r}: use one of {', '.join(PROFILES)}")
    if args.rounds < 1:
        raise CompareError(f"--rounds must be at least 1, got {args.rounds}")
    a = parse_sut(args.a, "A")
    b = parse_sut(args.b, "B")
    suite_dir = Path(args.suite_dir).resolve()
    try:
        words = shlex.split(args.suites) if args.suites.strip() else list(DEFAULT_SUITES)
    except ValueError as exc:
        raise CompareError(f"--suites is not valid shell words ({exc}): {args.suites!r}") from None
    selection = select_suites(words, suite_dir)
    plan = {"a": a.spec, "b": b.spec, "a_given": a.given, "b_given": b.given, "profile": args.profile,
            "suites": words, "selection": selection, "suite_dir": str(suite_dir), "robot_args": robot_args,
            "rounds": args.rounds, "confidence": 0.95,
            "order": [f"{n}{side}" for n, side in abba_order(args.rounds)]}  # fmt: skip
    return plan, a, b


def dry_run(plan: dict[str, Any], spec: SutSpec, out: Path) -> None:
    """Let robot check the options and the suite selection without running anything; CompareError if it refuses."""
    cmd = round_command(plan, spec, out, name="Dry run", doc="options check", dryrun=True)
    proc = subprocess.run(cmd, cwd=REPO, env=_robot_env(out), capture_output=True, text=True, timeout=300)
    if proc.returncode >= 250:
        lines = [x for x in (proc.stderr + proc.stdout).splitlines() if x.strip() and not x.startswith("Try --help")]
        raise CompareError(f"robot refuses the options: {lines[0] if lines else f'exit status {proc.returncode}'}")


def _sides(rounds: Sequence[Round], plan: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    out = []
    for side in ("A", "B"):
        runs = [r.run for r in rounds if r.side == side and r.ok and r.run is not None]
        sut = SutIdentity.of(runs[0].sut).to_dict() if runs else {}
        if runs and runs[0].sut.get("binary"):
            sut["binary"] = runs[0].sut["binary"]
        out.append({"spec": plan[side.lower()], "given": plan.get(f"{side.lower()}_given", plan[side.lower()]),
                    "sut": sut})  # fmt: skip
    return out[0], out[1]


def build_comparison(plan: dict[str, Any], rounds: list[Round], compare_id: str) -> Comparison:
    """The comparison of the rounds (rounds whose runs are loaded)."""
    a, b = _sides(rounds, plan)
    m = machine_info()
    return compare_rounds(rounds, compare_id=compare_id, a=a, b=b, profile=plan["profile"], suites=plan["suites"],
                          confidence=plan.get("confidence", 0.95), robot_args=plan["robot_args"], created=utc_now(),
                          machine={"logical_cores": m.get("logical_cores"), "cpu_model": m.get("cpu_model"),
                                   "hostname": m.get("hostname")})  # fmt: skip


def load_rounds(directory: Path) -> tuple[dict[str, Any], list[Round]]:
    """The plan and rounds of an earlier comparison folder (for ``--report``).

    Every round must have run with the plan's profile, suites and robot options and its side's SUT:
    a comparison needs one profile and one suite selection for A and B (:class:`CompareError` otherwise).
    """
    try:
        plan = json.loads((directory / PLAN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CompareError(f"{directory}: not a comparison folder ({PLAN_FILE}: {exc})") from None
    rounds = []
    for n, side in abba_order(int(plan["rounds"])):
        rdir = f"rounds/{n:02d}-{side}"
        path = directory / rdir / ROUND_FILE
        if not path.exists():
            rnd = Round(n, side, len(rounds) + 1, rdir)
            rnd.fail("it was not run (the comparison was stopped before it)")
            rounds.append(rnd)
            continue
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise CompareError(f"{path}: unreadable ({exc})") from None
        for key, what in (("profile", "profile"), ("suites", "suites"), ("robot_args", "robot options")):
            if info.get(key) != plan[key]:
                raise CompareError(f"round {n} {side} ran {what} {info.get(key)!r} but the comparison {plan[key]!r}: "
                                   "A and B must run the same profile and suites with the same options")  # fmt: skip
        if info.get("spec") != plan[side.lower()]:
            raise CompareError(f"round {n} {side} ran {info.get('spec')!r}, not side {side}'s {plan[side.lower()]!r}")
        rnd = Round.from_dict(info)
        try:
            rnd.run = RunResults.load(directory / rdir)
        except ResultsError as exc:
            rnd.fail(f"no results were written ({exc})")
        judge_round(rnd, directory / rdir)
        rounds.append(rnd)
    return plan, rounds


def finish(directory: Path, comparison: Comparison, plan: dict[str, Any]) -> int:
    """Write the comparison, run the comparison suite, merge every round and it into one log; the exit status."""
    comparison.write(directory)
    env = _robot_env(directory)
    env["CONDUCTOR_PERF_COMPARE"] = str(directory)
    suite = [sys.executable, "-m", "robot", "--name", "Comparison", "--outputdir", str(directory),
             "--output", "comparison-output.xml", "--log", "NONE", "--report", "NONE", "--xunit", "NONE",
             "--pythonpath", str(REPO / "libraries"), "--variable", f"COMPARE_DIR:{directory}", str(COMPARE_SUITE)]  # fmt: skip
    with open(directory / "comparison-console.txt", "wb") as log:
        rc = subprocess.call(suite, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=300)
    outputs = [str(directory / r.directory / "output.xml") for r in sorted(comparison.rounds, key=lambda r: r.position)
               if (directory / r.directory / "output.xml").exists()]  # fmt: skip
    if (directory / "comparison-output.xml").exists():
        outputs.append(str(directory / "comparison-output.xml"))
    title = f"{comparison.mode} comparison: B {plan['b_given']} against A {plan['a_given']}"
    merge = [sys.executable, "-m", "robot.rebot", "--name", title, "--outputdir", str(directory),
             "--output", "output.xml", "--log", "log.html", "--report", "report.html", "--xunit", "xunit.xml",
             "--doc", comparison.result_line(), "--expandkeywords", f"tag:{CHART_TAG}", *outputs]  # fmt: skip
    subprocess.call(merge, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, timeout=600)
    if rc >= 250:
        print(f"conductor-perf compare: the comparison suite could not run (robot exit {rc}); see "
              f"{directory / 'comparison-console.txt'}", file=sys.stderr)  # fmt: skip
        return 1
    return 0 if comparison.passed else 1


def main(argv: Sequence[str] | None = None) -> int:
    argv, robot_args = split_robot_args(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    try:
        if args.report:
            directory = Path(args.report).resolve()
            plan, rounds = load_rounds(directory)
            comparison = build_comparison(plan, rounds, directory.name)
            rc = finish(directory, comparison, plan)
            _print_result(directory, comparison)
            return rc
        plan, a, b = plan_comparison(args, robot_args)
        results = Path(args.results).resolve()
        compare_id = args.id or f"compare-{new_run_id()}"
        directory = results / compare_id
        if directory.exists():
            raise CompareError(f"{directory} already exists: choose another --id")
        scratch = Path(tempfile.mkdtemp(prefix="conductor-compare-dry-run-"))
        try:
            dry_run(plan, a, scratch)
            if b.spec != a.spec:
                dry_run(plan, b, scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    except CompareError as exc:
        print(f"conductor-perf compare: {exc}", file=sys.stderr)
        return 2
    directory.mkdir(parents=True)
    plan["created"] = utc_now()
    write_text_atomic(directory / PLAN_FILE, json.dumps(plan, indent=1) + "\n")
    housekeeping.link_latest(results, compare_id, "latest-compare")
    print(f"comparison: {directory}", flush=True)
    k, _ = u_critical(plan["rounds"], plan["rounds"], plan["confidence"])
    if not k:
        print(f"warning: {plan['rounds']} rounds per side cannot give a {plan['confidence']:.0%} interval (4 is the "
              "least): every figure will read 'no detectable change'", flush=True)  # fmt: skip
    print(f"A = {a.spec}\nB = {b.spec}\n{plan['rounds']} rounds in ABBA order ({' '.join(plan['order'])}), profile "
          f"{plan['profile']}, suites {' '.join(plan['suites'])}", flush=True)  # fmt: skip
    rounds: list[Round] = []
    order = abba_order(plan["rounds"])
    interrupted = False
    for position, (n, side) in enumerate(order, start=1):
        rnd = Round(n, side, position, f"rounds/{n:02d}-{side}")
        if interrupted:
            rnd.fail("it was not run (the comparison was interrupted)")
            rounds.append(rnd)
            continue
        spec = a if side == "A" else b
        print(f"[{position}/{len(order)}] round {n} {side} ({spec.spec}) ...", end="", flush=True)
        try:
            run_round(plan, spec, rnd, directory, timeout=args.round_timeout)
        except KeyboardInterrupt:
            interrupted = True
            rnd.fail("interrupted")
        rounds.append(rnd)
        print(f" {rnd.duration_s or 0:.0f} s, {'completed' if rnd.ok else 'FAILED: ' + rnd.reason}", flush=True)
    comparison = build_comparison(plan, rounds, compare_id)
    rc = finish(directory, comparison, plan)
    _print_result(directory, comparison)
    # every round's scratch data, once the last round has measured (never between rounds: a deletion
    # would slow the next round's file creation on some file systems)
    print(housekeeping.finish(directory, keep=args.keep_data, runs=[directory / r.directory for r in rounds],
                              label="comparison folder"), flush=True)  # fmt: skip
    return 253 if interrupted else rc


def _print_result(directory: Path, comparison: Comparison) -> None:
    for r in comparison.failed_rounds:
        print(f"failed: {r.name}: {r.reason}")
    print(comparison.result_line())
    print(f"compare.md: {directory / 'compare.md'}\nlog: {directory / 'log.html'}\nsummary: "
          f"{directory / 'summary.html'}\ndata: {directory / COMPARE_JSON}")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
