"""conductor-loop's load test (100 concurrent task submissions, docs/targets.md) without Robot: ``python -m conductor_perf.loadtest URL``.

Sends ``--tasks`` (default 100) concurrent ``POST /api/v1/tasks`` with valid bodies for the stub
agent, prints the status counts and per-request latency of the burst, then waits (bounded) until
every run finished and prints the completion figures. Exit 0 only when every request got 201 and
every run completed. Tasks that cannot finish (their agent never marks them done, runs that never
start) are stopped and reported within about a minute (exit 1). Loopback URLs only.
"""

from __future__ import annotations

import argparse
import sys
import time

from .bench import agent_tasks, agents_bench
from .target import TargetError, attach


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m conductor_perf.loadtest", description=__doc__.splitlines()[0])
    p.add_argument("url", help="base URL of the conductor, e.g. http://127.0.0.1:14355/")
    p.add_argument("--tasks", type=int, default=100)
    p.add_argument("--root", default="", help="runs root (optional; completion is then read from files)")
    p.add_argument("--api-key", default="")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for all runs")
    p.add_argument("--sleep-ms", type=int, default=10, help="how long each stub agent works")
    args = p.parse_args(argv)
    if not 1 <= args.tasks <= 10_000:
        print("load-test: --tasks must be between 1 and 10000", file=sys.stderr)
        return 2
    try:
        target = attach(args.url, root=args.root or None, api_key=args.api_key, timeout=5)
        t0 = time.time_ns()
        subs = agents_bench.submit_tasks(target, args.tasks, project="perf-load", slug="load",
                                         config=agents_bench.stub_config(sleep_ms=args.sleep_ms))  # fmt: skip
    except (TargetError, ValueError) as exc:
        print(f"load-test: {exc}", file=sys.stderr)
        return 2
    lat = agents_bench.summarize(args.tasks, subs, [], [], t0, time.time_ns())
    print(f"POST /api/v1/tasks x {args.tasks}: statuses {lat.statuses}")
    print("  latency ms: " + "  ".join(f"{k} {v}" for k, v in lat.submit_latency.items() if k != "count"))
    for err in lat.errors:
        print(f"  error: {err}")
    try:
        done, pending = agents_bench.wait_for_runs(target, subs, timeout=args.timeout,
                                                   stall_timeout=agents_bench.stall_bound(args.sleep_ms),
                                                   on_progress=lambda e, n, r: print(f"  {e:5.1f} s: {n} runs finished"))  # fmt: skip
    except agent_tasks.AgentTaskError as exc:
        print(f"load test: FAIL: {exc}")
        return 1
    end = max((o.end_ns for o in done), default=time.time_ns()) if not pending else time.time_ns()
    result = agents_bench.summarize(args.tasks, subs, done, pending, t0, end)
    print(f"runs: {result.completed} completed, {result.failed} failed, {result.unfinished} unfinished; "
          f"all done {result.wall_s:.2f} s after the first request; per-run median {result.median_run_s:.3f} s")  # fmt: skip
    ok = result.statuses.get(201, 0) == args.tasks and result.completed == args.tasks
    print("load test: PASS" if ok else "load test: FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
