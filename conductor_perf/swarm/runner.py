"""Run a swarm: ``python -m conductor_perf.swarm [run] --scenario bus --workers 10 [-- robot options]`` (``make swarm``).

**run** (this machine is the coordinator):

1. starts the SUT once for every worker -- the embedded reference conductor by default, the
   conductor-loop executable of ``--binary``/``CONDUCTOR_BINARY`` -- or attaches to
   ``--url``/``CONDUCTOR_URL``;
2. starts a PabotLib server on its own (``python -m pabot.pabotlib "" <host> <port>``), or uses the
   one named by ``--pabotlib HOST:PORT``, and publishes the swarm run's roster there;
3. runs the scenario's coordinator test in one Robot process and its worker test in
   ``--local-workers`` pabot processes (``--pabotlibhost``/``--pabotlibport``; one pabot argument
   file per worker names it), all at once; workers on other hosts join with ``join``;
   Robot options after ``--`` go to the coordinator (e.g. ``--variable BUS_MIN_MSG_PER_S:2000``);
4. merges both logs into ``results/swarm-<run-id>/log.html`` and writes ``metrics.json`` and
   ``summary.md``; stops what it started and removes the scratch data (the runs root of the SUT
   it started, with the workers' bus files and runs) unless ``--keep-data``, saying the run
   folder's size. The exit code is non-zero when any test failed.

**join** (another host): claims ``--workers`` names of the current swarm run on ``--pabotlib``
and runs them as pabot processes against the same PabotLib server; the SUT's URL and runs root
come from the roster unless ``--url``/``--root`` are given.

Every wait is bounded: the barrier (``--barrier-timeout``), the window, the reports' grace and
a hard limit on each Robot process; nothing started here outlives the run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from .. import housekeeping
from .. import target as sut
from ..run import PROFILES, PROFILES_DIR, REPO, robot_env, split_robot_args
from .board import BoardError, PabotLibBoard, parse_uri
from .protocol import BARRIER_TIMEOUT_S, Swarm, SwarmError
from .scenarios import SCENARIOS

SWARM_DIR = REPO / "swarm"
BOARD_START_TIMEOUT_S = 20.0
RUN_LIMIT_S = 900.0
"""No coordinator or pabot process of one swarm runs longer than this (then it is stopped)."""
JOIN_WAIT_S = 120.0


def suite_file(scenario: str) -> Path:
    """``swarm/<scenario>.robot`` (``bus-http`` -> ``bus_http.robot``)."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}: use one of {', '.join(SCENARIOS)}")
    return SWARM_DIR / f"{scenario.replace('-', '_')}.robot"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m conductor_perf.swarm", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command")
    run = sub.add_parser("run", help="coordinate a swarm (the default command)")
    _run_args(run)
    join = sub.add_parser("join", help="run workers of the current swarm run on this host")
    join.add_argument("--pabotlib", required=True, metavar="HOST:PORT", help="the swarm's PabotLib server")
    join.add_argument("--workers", type=int, required=True, help="workers to run on this host")
    join.add_argument("--host-label", default="", help="this host's name in the coordinator's messages")
    join.add_argument("--url", default="", help="the SUT as this host reaches it (default: the roster's)")
    join.add_argument("--root", default="", help="the SUT's runs root on this host (file-level scenarios)")
    join.add_argument("--api-key", default=os.environ.get("CONDUCTOR_API_KEY", ""), help="the SUT's API key")
    join.add_argument("--run", default="", help="the swarm run (default: the server's current one)")
    join.add_argument("--wait", type=float, default=JOIN_WAIT_S, help="seconds to wait for a run with free names")
    join.add_argument("--results", default=str(REPO / "results"), help="results root (default: results/)")
    return p


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scenario", default=os.environ.get("SCENARIO", "bus"), help=f"one of {', '.join(SCENARIOS)}")
    p.add_argument("--workers", type=int, default=int(os.environ.get("WORKERS", "10") or 10),
                   help="workers in the swarm, on every host together (default 10)")  # fmt: skip
    p.add_argument("--local-workers", type=int, default=None,
                   help="of them, how many run here as pabot processes (default: all; the rest join)")  # fmt: skip
    p.add_argument("--profile", default=os.environ.get("PROFILE", "default"), help="default or a resources/profiles name")
    p.add_argument("--pabotlib", default="", metavar="HOST:PORT",
                   help="use this PabotLib server (started on its own) instead of starting one")  # fmt: skip
    p.add_argument("--pabotlib-host", default="127.0.0.1", help="address of the PabotLib server this run starts")
    p.add_argument("--barrier-timeout", type=float, default=BARRIER_TIMEOUT_S,
                   help=f"seconds every worker has to join the start barrier (default {BARRIER_TIMEOUT_S:g})")  # fmt: skip
    p.add_argument("--url", default=os.environ.get("CONDUCTOR_URL", ""), help="attach to this SUT")
    p.add_argument("--root", default=os.environ.get("CONDUCTOR_ROOT", ""), help="runs root of the SUT at --url")
    p.add_argument("--api-key", default=os.environ.get("CONDUCTOR_API_KEY", ""), help="API key of the SUT at --url")
    p.add_argument("--binary", default=os.environ.get("CONDUCTOR_BINARY", ""), help="start this conductor-loop build")
    p.add_argument("--results", default=str(REPO / "results"), help="results root (default: results/)")
    p.add_argument("--run-id", default="", help="name of the run folder and the swarm run")
    p.add_argument("--keep-data", action="store_true",
                   help="keep the scratch data (the runs root of the SUT this run starts) when the run ends")  # fmt: skip


def preflight(args: argparse.Namespace) -> str:
    """The first problem with the run options, or ``""``."""
    if args.scenario not in SCENARIOS:
        return f"unknown scenario {args.scenario!r} (SCENARIO or --scenario): use one of {', '.join(SCENARIOS)}"
    if not 1 <= args.workers <= 256:
        return f"WORKERS must be within 1..256, got {args.workers}"
    local = args.workers if args.local_workers is None else args.local_workers
    if not 0 <= local <= args.workers:
        return f"--local-workers must be within 0..{args.workers}, got {local}"
    if args.profile not in PROFILES:
        return f"unknown profile {args.profile!r}: use one of {', '.join(PROFILES)}"
    if args.url and args.binary:
        return "a URL (--url or CONDUCTOR_URL) and a binary (--binary or CONDUCTOR_BINARY) both name a SUT: choose one"
    if args.url:
        problem = url_problem(args.url)
        if problem:
            return problem
    if args.pabotlib:
        try:
            parse_uri(args.pabotlib)
        except ValueError as exc:
            return str(exc)
    if args.barrier_timeout <= 0:
        return f"--barrier-timeout must be positive, got {args.barrier_timeout}"
    return ""


def url_problem(url: str) -> str:
    """Why the swarm will not load ``url`` (not a URL, or not a loopback address), or ``""``."""
    try:
        sut.check_url(url)
    except sut.TargetError as exc:
        return str(exc)
    if not sut.is_loopback(url):
        return (f"the swarm loads loopback addresses only, not {url}: on a worker host, reach the SUT through "
                "a loopback port forward (README, 'Swarms over several hosts')")  # fmt: skip
    return ""


# --------------------------------------------------------------------------------------------
# processes
# --------------------------------------------------------------------------------------------
def start_board(host: str, *, log: Path, timeout: float = BOARD_START_TIMEOUT_S) -> tuple[subprocess.Popen, PabotLibBoard]:
    """Start ``python -m pabot.pabotlib "" host <free port>`` and wait until it answers."""
    with socket.socket() as s:
        s.bind((host, 0))
        port = s.getsockname()[1]
    with open(log, "ab") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "pabot.pabotlib", "", host, str(port)], stdout=fh,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    board = PabotLibBoard(host, port, caller="swarm-runner", timeout=5.0)
    deadline = time.monotonic() + timeout
    while True:
        try:
            board.ping()
            return proc, board
        except BoardError as exc:
            if proc.poll() is not None or time.monotonic() > deadline:
                _stop(proc)
                raise SwarmError(f"the PabotLib server on {host}:{port} did not start within {timeout:g} s "
                                 f"({exc}; see {log})") from None  # fmt: skip
            time.sleep(0.1)


def wait_for_board(board: PabotLibBoard, timeout: float) -> None:
    """Wait until a PabotLib server started on its own answers (it may still be starting)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            board.ping()
            return
        except BoardError as exc:
            if time.monotonic() > deadline:
                raise BoardError(f"{exc} (waited {timeout:g} s)") from None
            time.sleep(0.2)


def stop_board(proc: subprocess.Popen | None, board: PabotLibBoard | None) -> None:
    """Stop a PabotLib server this run started (politely, then by signal)."""
    if proc is None:
        return
    if board is not None:
        with contextlib.suppress(BoardError):
            board.call("stop_remote_server")
    _stop(proc)


def _stop(proc: subprocess.Popen, grace: float = 5.0) -> None:
    try:
        proc.wait(timeout=grace)
        return
    except subprocess.TimeoutExpired:
        pass
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def argument_files(folder: Path, names: list[str], *, board: str, run: str, scenario: str, host: str) -> list[Path]:
    """One pabot argument file per worker: its name, the swarm run, the PabotLib server, its suite name.

    ``PABOTLIBURI`` is set here because pabot 5.2.2 hands its processes ``127.0.0.1:8270`` when
    it is given ``--pabotlibhost``/``--pabotlibport`` instead of starting a server itself.
    """
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for name in names:
        path = folder / f"{name}.args"
        path.write_text("\n".join([f"--variable SWARM_WORKER:{name}", f"--variable SWARM_RUN:{run}",
                                   f"--variable PABOTLIBURI:{board}", f"--variable SWARM_HOST:{host}",
                                   f"--name {scenario.title()} Worker {name}"]) + "\n", encoding="utf-8")  # fmt: skip
        files.append(path)
    return files


def pabot_command(suite: Path, out: Path, argfiles: list[Path], *, board: str, variables: dict[str, str],
                  timeout_s: float) -> list[str]:  # fmt: skip
    """pabot running the worker test once per argument file, all at once, on the given PabotLib server."""
    host, port = parse_uri(board)
    cmd = [sys.executable, "-m", "pabot.pabot", "--processes", str(len(argfiles)), "--pabotlibhost", host,
           "--pabotlibport", str(port), "--processtimeout", str(int(timeout_s))]  # fmt: skip
    for i, path in enumerate(argfiles, 1):
        cmd += [f"--argumentfile{i}", str(path)]
    cmd += ["--outputdir", str(out), "--pythonpath", str(REPO / "libraries"), "--include", "swarm-worker",
            "--consolewidth", "100"]  # fmt: skip
    for name, value in variables.items():
        if value:
            cmd += ["--variable", f"{name}:{value}"]
    return [*cmd, str(suite)]


def coordinator_command(suite: Path, out: Path, *, profile: str, variables: dict[str, str],
                        extra: list[str] | None = None) -> list[str]:  # fmt: skip
    """robot running the coordinator test (``extra``: more robot options, e.g. ``--variable NAME:value``)."""
    cmd = [sys.executable, "-m", "robot", "--outputdir", str(out), "--pythonpath", str(REPO / "libraries"),
           "--include", "swarm-coordinator", "--log", "NONE", "--report", "NONE", "--consolewidth", "100"]  # fmt: skip
    if profile != "default":
        cmd += ["--variablefile", str(PROFILES_DIR / f"{profile}.yaml")]
    for name, value in variables.items():
        if value:
            cmd += ["--variable", f"{name}:{value}"]
    return [*cmd, *(extra or []), str(suite)]


def _wait_all(procs: dict[str, subprocess.Popen], limit_s: float) -> dict[str, int]:
    """Wait for every process up to ``limit_s``; a process still running then is stopped (exit 253)."""
    deadline = time.monotonic() + limit_s
    codes: dict[str, int] = {}
    while len(codes) < len(procs):
        for name, proc in procs.items():
            if name not in codes and proc.poll() is not None:
                codes[name] = proc.returncode
        if len(codes) < len(procs):
            if time.monotonic() > deadline:
                for name, proc in procs.items():
                    if name not in codes:
                        print(f"conductor-perf swarm: {name} still running after {limit_s:g} s: stopping it",
                              file=sys.stderr, flush=True)  # fmt: skip
                        with contextlib.suppress(ProcessLookupError, PermissionError):
                            os.killpg(proc.pid, signal.SIGTERM)
                        _stop(proc)
                        codes[name] = 253
                break
            time.sleep(0.2)
    return codes


# --------------------------------------------------------------------------------------------
# run
# --------------------------------------------------------------------------------------------
def _start_sut(args: argparse.Namespace, out: Path) -> sut.Target:
    if args.url:
        return sut.attach(args.url, root=args.root or None, api_key=args.api_key)
    sut_dir = out / f"sut-{os.getpid()}"
    housekeeping.note_scratch(out, sut_dir / "root")  # the workers' bus files and runs; the SUT's log stays
    if args.binary:
        from ..binary import start_binary

        return start_binary(args.binary, sut_dir=sut_dir, api_key=args.api_key)
    return sut.start_embedded(root=sut_dir / "root", log_dir=sut_dir, api_key=args.api_key)


def run(args: argparse.Namespace) -> int:
    """Coordinate one swarm (see the module docs); returns the exit code."""
    from ..records import new_run_id
    from ..report import finalize

    run_id = args.run_id or new_run_id()
    out = (Path(args.results) / f"swarm-{run_id}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    housekeeping.link_latest(out.parent, out.name, "swarm-latest")
    local = args.workers if args.local_workers is None else args.local_workers
    suite = suite_file(args.scenario)
    print(f"results: {out}", flush=True)
    target: sut.Target | None = None
    board_proc: subprocess.Popen | None = None
    board: PabotLibBoard | None = None
    codes: dict[str, int] = {}
    try:
        target = _start_sut(args, out)
        print(f"SUT: {target.name} {target.version} at {target.url} (root {target.root})", flush=True)
        if args.pabotlib:
            board = PabotLibBoard.from_uri(args.pabotlib, caller="swarm-runner")
            wait_for_board(board, BOARD_START_TIMEOUT_S)
        else:
            board_proc, board = start_board(args.pabotlib_host, log=out / "pabotlib.log")
        board_uri = f"{board.host}:{board.port}"
        swarm = Swarm.create(board, args.scenario, args.workers, url=target.url,
                             root=str(target.root) if target.root else "", run=run_id, current=False)  # fmt: skip
        host = socket.gethostname().split(".")[0]
        names = swarm.claim(local, host) if local else []
        swarm.make_current()  # other hosts see the run once this host's names are claimed
        print(f"swarm run {run_id}: {args.scenario}, {args.workers} workers ({local} here), PabotLib at {board_uri}",
              flush=True)  # fmt: skip
        if local < args.workers:
            print(f"  other hosts join with: python -m conductor_perf.swarm join --pabotlib {board_uri} "
                  f"--workers <n>   ({args.workers - local} names free)", flush=True)  # fmt: skip
        common = {"CONDUCTOR_URL": target.url, "CONDUCTOR_ROOT": str(target.root) if target.root else "",
                  "CONDUCTOR_API_KEY": args.api_key, "PROFILE": args.profile, "SWARM_WORKERS": str(args.workers)}  # fmt: skip
        env = robot_env(out)
        limit = RUN_LIMIT_S
        coord_cmd = coordinator_command(suite, out / "coordinator", profile=args.profile, variables={
            **common, "PABOTLIBURI": board_uri, "SWARM_RUN": run_id,
            "RESULTS_DIR": str(out), "SWARM_BARRIER_TIMEOUT": f"{args.barrier_timeout:g} s"},
            extra=getattr(args, "robot_args", []))  # fmt: skip
        procs = {"coordinator": subprocess.Popen(coord_cmd, env=env, cwd=REPO, start_new_session=True)}
        if local:
            files = argument_files(out / "argfiles", names, board=board_uri, run=run_id, scenario=args.scenario,
                                   host=host)  # fmt: skip
            cmd = pabot_command(suite, out / "workers", files, board=board_uri, variables=common, timeout_s=limit)
            (out / "workers").mkdir(exist_ok=True)
            with open(out / "workers" / "pabot-console.txt", "wb") as console:
                procs["pabot workers"] = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=console,
                                                          stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        codes = _wait_all(procs, limit)
    except (sut.TargetError, BoardError, SwarmError) as exc:
        print(f"conductor-perf swarm: {exc}", file=sys.stderr, flush=True)
        codes = {"set-up": 2}
    finally:
        stop_board(board_proc, board)
        if target is not None and target.owned:
            target.stop()
    rc = _merge_logs(out, args.scenario, args.workers)
    with contextlib.suppress(Exception):
        summary = finalize(out, profile=args.profile, sut=target.describe() if target else None)
        print(summary, flush=True)
    print(housekeeping.finish(out, keep=args.keep_data), flush=True)  # every worker has finished
    bad = {k: v for k, v in codes.items() if v}
    if bad:
        print("conductor-perf swarm: " + ", ".join(f"{k} exited with {v}" for k, v in bad.items())
              + f" (logs: {out}/log.html)", file=sys.stderr, flush=True)  # fmt: skip
    return max([*codes.values(), rc, 0]) and 1


def _merge_logs(out: Path, scenario: str, workers: int) -> int:
    """One log.html/report.html/output.xml/xunit.xml of the coordinator and the workers."""
    parts = [p for p in (out / "coordinator" / "output.xml", out / "workers" / "output.xml") if p.exists()]
    if not parts:
        return 1
    cmd = [sys.executable, "-m", "robot.rebot", "--name", f"Swarm {scenario} {workers} workers", "--outputdir",
           str(out), "--output", "output.xml", "--xunit", "xunit.xml", "--expandkeywords", "tag:swarm-coordinator",
           *map(str, parts)]  # fmt: skip
    rc = subprocess.call(cmd, cwd=REPO, stdout=subprocess.DEVNULL)
    print(f"log: {out / 'log.html'}", flush=True)
    return 0 if rc < 250 else 1


# --------------------------------------------------------------------------------------------
# join
# --------------------------------------------------------------------------------------------
def join(args: argparse.Namespace) -> int:
    """Run ``--workers`` workers of the current swarm run here (see the module docs)."""
    try:
        board = PabotLibBoard.from_uri(args.pabotlib, caller=f"swarm-join-{os.getpid()}")
    except ValueError as exc:
        print(f"conductor-perf swarm join: {exc}", file=sys.stderr)
        return 2
    host = args.host_label or socket.gethostname().split(".")[0]
    deadline = time.monotonic() + args.wait
    while True:
        try:
            swarm = Swarm(board, args.run) if args.run else Swarm.current(board)
            roster = swarm.roster()
            free = len(roster.names) - len(swarm.claims())
            if free >= args.workers:
                names = swarm.claim(args.workers, host)
                break
            why = f"swarm run {roster.run} has {free} unclaimed of {len(roster.names)} names, {args.workers} asked for"
        except (BoardError, SwarmError) as exc:
            why = str(exc)
        if time.monotonic() > deadline:
            print(f"conductor-perf swarm join: {why} (waited {args.wait:g} s)", file=sys.stderr)
            return 2
        time.sleep(0.5)
    url = args.url or roster.url
    problem = url_problem(url)
    if problem:
        print(f"conductor-perf swarm join: {problem}", file=sys.stderr)
        return 2
    board_uri = f"{board.host}:{board.port}"
    out = (Path(args.results) / f"swarm-{roster.run}-join-{host}").resolve()
    files = argument_files(out / "argfiles", names, board=board_uri, run=roster.run, scenario=roster.scenario,
                           host=host)  # fmt: skip
    variables = {"CONDUCTOR_URL": url, "CONDUCTOR_ROOT": args.root or roster.root, "CONDUCTOR_API_KEY": args.api_key,
                 "SWARM_WORKERS": str(roster.workers)}  # fmt: skip
    cmd = pabot_command(suite_file(roster.scenario), out, files, board=board_uri, variables=variables,
                        timeout_s=RUN_LIMIT_S)  # fmt: skip
    print(f"joining swarm run {roster.run} ({roster.scenario}) on {board_uri} as {host}: {', '.join(names)}",
          flush=True)  # fmt: skip
    print(" ".join(shlex.quote(c) for c in cmd), flush=True)
    proc = subprocess.Popen(cmd, env=robot_env(out), cwd=REPO, start_new_session=True)
    code = _wait_all({"pabot workers": proc}, RUN_LIMIT_S)["pabot workers"]
    print(f"log: {out / 'log.html'}", flush=True)
    return code


def main(argv: list[str] | None = None) -> int:
    argv, extra = split_robot_args(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("run", "join", "-h", "--help"):
        argv = ["run", *argv]
    args = _parser().parse_args(argv)
    args.robot_args = extra
    if args.command == "join":
        if args.workers < 1:
            print("conductor-perf swarm join: --workers must be at least 1", file=sys.stderr)
            return 2
        return join(args)
    problem = preflight(args)
    if problem:
        print(f"conductor-perf swarm: {problem}", file=sys.stderr)
        return 2
    return run(args)


__all__ = ["argument_files", "coordinator_command", "main", "pabot_command", "preflight", "run", "join", "suite_file"]
