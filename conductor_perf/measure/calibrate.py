"""Calibration benchmark: this project's load generator against ``wrk`` on the same endpoint, in one run.

Two comparisons, on the same machine, same endpoint, one after the other:

1. **Throughput.** ``wrk -t T -c C -d D`` and :func:`~conductor_perf.measure.load.run_closed` with
   ``workers=C`` for the same duration, in alternating rounds (a noisy neighbour then hits both
   alike): median requests/s of each and the ratio ours/wrk (goal: >= 0.5); and, since on a
   machine shared with the server and others the rate also depends on who gets a core, each
   tool's requests per CPU second it used (wrk's from its process's rusage, ours from the load
   thread's CPU clock) and their ratio: what one core of each can drive.
2. **Latency at a fixed rate below saturation.** The rate is ``rate_fraction`` (default 50 %) of
   our closed-loop maximum. wrk 4 has no constant-rate mode (wrk2 is not packaged for Debian), so
   wrk is paced with a Lua ``delay()`` hook (whole milliseconds per connection) over as many
   connections as that rate needs; its achieved rate is read back, and our open loop then runs at
   exactly that rate with the same connection count. wrk is closed-loop and measures from the
   actual send, like our *uncorrected* latency; our *corrected* latency (from the intended send
   time) is shown too. Compare at low concurrency: with many paced connections wrk's millisecond
   timers release requests in bursts, which queue briefly in the server and raise wrk's own
   figures; ``--latency-connections 1`` gives the cleanest like-for-like row (at a lower rate).
   Each percentile wrk prints (50/75/90/99) should agree within 10 % or 1 ms, whichever is larger.

Usage::

    python -m conductor_perf.measure.calibrate http://127.0.0.1:8080           # GET /api/v1/health
    python -m conductor_perf.measure.calibrate --hello                         # a bare aiohttp app
    python -m conductor_perf.measure.calibrate --reference                     # the reference conductor
    python -m conductor_perf.measure.calibrate --binary /path/to/run-agent       # a conductor-loop build, started as the suites do
    python -m conductor_perf.measure.calibrate --reference --throughput-only --other-generator ../main-worktree
                                                  # two generators (this one, another checkout's) against wrk in one run
    python -m conductor_perf.measure.calibrate URL --connections 10 --duration 5 --rounds 3 --json out.json

wrk is the Debian package ``wrk`` (``apt-get install wrk``). Exit status: 0 both goals met, 1 a
goal missed, 2 the benchmark could not run (e.g. wrk missing).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import selectors
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from conductor_perf.measure.load import parse_loopback_url, run_closed, run_open
from conductor_perf.measure.rawhttp import Request

DEFAULT_PATH = "/api/v1/health"
WRK_PERCENTILES = (50.0, 75.0, 90.0, 99.0)
THROUGHPUT_GOAL_RATIO = 0.5
AGREEMENT_RELATIVE = 0.10
AGREEMENT_ABSOLUTE_MS = 1.0
WRK_INSTALL_HINT = "wrk is not installed: install the Debian package with `apt-get install wrk`"


class WrkNotFound(RuntimeError):
    """``wrk`` is not on PATH."""


# --------------------------------------------------------------------------------------------
# wrk
# --------------------------------------------------------------------------------------------
_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _to_ms(number: str, unit: str) -> float:
    return float(number) * _UNITS_MS[unit]


def parse_wrk_output(text: str) -> dict[str, Any]:
    """Parse ``wrk --latency`` output.

    Returns:
        ``{"rps", "requests", "duration_s", "latency_ms": {"avg", "stdev", "max"},
        "percentiles_ms": {50.0: .., 75.0: .., 90.0: .., 99.0: ..}, "non_2xx", "socket_errors"}``.

    Raises:
        ValueError: when the output has no ``Requests/sec`` line.
    """
    m = re.search(r"Requests/sec:\s+([0-9.]+)", text)
    if not m:
        raise ValueError(f"wrk output has no Requests/sec line:\n{text[-2000:]}")
    out: dict[str, Any] = {"rps": float(m.group(1))}
    m = re.search(r"(\d+) requests in ([0-9.]+)(us|ms|s|m|h)", text)
    if m:
        out["requests"] = int(m.group(1))
        out["duration_s"] = _to_ms(m.group(2), m.group(3)) / 1000.0
    m = re.search(r"Latency\s+([0-9.]+)(us|ms|s|m|h)\s+([0-9.]+)(us|ms|s|m|h)\s+([0-9.]+)(us|ms|s|m|h)", text)
    if m:
        out["latency_ms"] = {
            "avg": _to_ms(m.group(1), m.group(2)),
            "stdev": _to_ms(m.group(3), m.group(4)),
            "max": _to_ms(m.group(5), m.group(6)),
        }
    pct = {}
    for pm in re.finditer(r"^\s*([0-9.]+)%\s+([0-9.]+)(us|ms|s|m|h)\s*$", text, re.MULTILINE):
        pct[float(pm.group(1))] = _to_ms(pm.group(2), pm.group(3))
    out["percentiles_ms"] = pct
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    out["non_2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    out["socket_errors"] = sum(int(g) for g in m.groups()) if m else 0
    return out


def find_wrk() -> str:
    """Path of ``wrk``; raises :class:`WrkNotFound` with the install command when absent."""
    path = shutil.which("wrk")
    if not path:
        raise WrkNotFound(WRK_INSTALL_HINT)
    return path


def wrk_version(wrk: str) -> str:
    """First line of ``wrk -v`` (it exits non-zero after printing its usage)."""
    try:
        proc = subprocess.run([wrk, "-v"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    first = (proc.stdout or proc.stderr).strip().splitlines()
    return first[0].split(" Copyright")[0].strip() if first else "unknown"


def run_wrk(
    url: str,
    *,
    connections: int,
    duration_s: float,
    threads: int = 1,
    delay_ms: int | None = None,
    timeout_s: float = 10.0,
    wrk: str | None = None,
) -> dict[str, Any]:
    """Run ``wrk --latency`` (paced by a Lua ``delay()`` when ``delay_ms`` is given) and parse it.

    The result has the parsed figures plus ``"command"`` (the command line as text).
    """
    parse_loopback_url(url)
    wrk = wrk or find_wrk()
    threads = max(1, min(threads, connections))
    cmd = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        "--latency",
        f"--timeout={max(1, round(timeout_s))}s",
    ]
    with tempfile.TemporaryDirectory(prefix="calibrate-") as tmp:
        if delay_ms is not None:
            script = os.path.join(tmp, "pace.lua")
            with open(script, "w") as fh:
                fh.write(
                    f"-- pace each connection: wait {int(delay_ms)} ms after every response\n"
                    f"function delay()\n  return {int(delay_ms)}\nend\n"
                )
            cmd += ["-s", script]
        cmd.append(url)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + 60)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    result = parse_wrk_output(proc.stdout)
    result["cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    shown = [c if not c.endswith(".lua") else "pace.lua" for c in cmd]
    shown[0] = "wrk"
    result["command"] = " ".join(shown)
    result["output"] = proc.stdout
    return result


# --------------------------------------------------------------------------------------------
# the benchmark
# --------------------------------------------------------------------------------------------
def pace_for_rate(
    rate: float, *, connections: int | None = None, per_request_ms: float = 0.3
) -> tuple[int, int]:
    """Connections and per-connection wrk ``delay()`` (whole ms) that approximate ``rate`` req/s.

    A paced connection cycles in about ``delay + per_request_ms`` ms (plus wrk's millisecond
    timer slop). Without ``connections``: 1 ms delay and as many connections as needed, or one
    connection with a longer delay for low rates. With ``connections``: the delay that brings
    that many connections closest to ``rate`` (at least 1 ms, so the rate may fall short).
    """
    if rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    if connections is not None:
        if connections < 1:
            raise ValueError(f"connections must be at least 1, got {connections}")
        return connections, max(1, round(connections * 1000.0 / rate - per_request_ms))
    per_conn_at_1ms = 1000.0 / (1.0 + per_request_ms)
    if rate >= per_conn_at_1ms:
        return max(1, round(rate / per_conn_at_1ms)), 1
    return 1, max(1, round(1000.0 / rate - per_request_ms))


def agreement(wrk_ms: float, ours_ms: float) -> tuple[bool, float]:
    """Whether ``ours`` is within 10 % of ``wrk`` or 1 ms, whichever is larger; returns (ok, tolerance)."""
    tol = max(AGREEMENT_RELATIVE * wrk_ms, AGREEMENT_ABSOLUTE_MS)
    return abs(ours_ms - wrk_ms) <= tol, tol


def calibrate(
    url: str,
    *,
    path: str = DEFAULT_PATH,
    connections: int = 10,
    duration: float = 10.0,
    wrk_threads: int = 1,
    processes: int = 1,
    rate_fraction: float = 0.5,
    latency_connections: int | None = None,
    rounds: int = 1,
    wrk: str | None = None,
    log: Any = None,
    latency: bool = True,
    other_generator: str | None = None,
) -> dict[str, Any]:
    """Run both comparisons against ``url + path`` (loopback only) and return all figures.

    Args:
        url: base URL of the server (``http://127.0.0.1:PORT``).
        path: endpoint to load (GET).
        connections: connections for the throughput comparison (wrk ``-c``, our ``workers``).
        duration: seconds of each run (``2 * rounds + 2`` runs).
        wrk_threads: wrk ``-t``; processes: our generator processes.
        rate_fraction: the fixed rate as a fraction of our closed-loop maximum.
        latency_connections: connections for the fixed-rate comparison (default: as many as
            wrk's 1 ms pacing needs for the rate; 1 gives the lowest concurrency, and a lower
            rate where one connection cannot reach it).
        rounds: throughput rounds (wrk then ours, alternating); medians are compared.
        wrk: path of wrk (default: found on PATH).
        log: optional ``print``-like callable for progress lines.
        latency: run the fixed-rate latency comparison too (``False``: throughput only).
        other_generator: a checkout of this project (e.g. a worktree of an earlier commit) whose
            closed loop also runs in every throughput round, to compare two generators in one run.

    Returns:
        ``{"url", "machine", "wrk_version", "throughput": {...}, "latency": {...}}`` (see the CLI table).
    """
    say = log or (lambda *_: None)
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    wrk = wrk or find_wrk()
    base = url.rstrip("/")
    target = base + path
    parse_loopback_url(target)
    out: dict[str, Any] = {
        "url": target,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "wrk_version": wrk_version(wrk),
        "load_average_start": _load_average(),
    }

    # 1. throughput, same connections and duration; rounds alternate wrk and ours so that a noisy
    #    neighbour hits both alike, and the medians are compared
    rounds_out = []
    w: dict[str, Any] = {}
    ours = None
    for i in range(rounds):
        say(f"throughput {i + 1}/{rounds}: wrk -t{wrk_threads} -c{connections} -d{duration:g}s ...")
        w = run_wrk(target, connections=connections, duration_s=duration, threads=wrk_threads, wrk=wrk)
        say(
            f"throughput {i + 1}/{rounds}: our closed loop, {connections} workers, {processes} process(es) ..."
        )
        ours = run_closed(
            target, Request("GET", path), workers=connections, duration=duration, processes=processes
        )
        ours_cpu = sum(r.cpu_s for r in ours.reports)
        wrk_per_core = w.get("requests", 0) / w["cpu_s"] if w.get("cpu_s") else 0.0
        ours_per_core = ours.requests / ours_cpu if ours_cpu else 0.0
        other: dict[str, Any] = {}
        if other_generator:
            say(f"throughput {i + 1}/{rounds}: the closed loop of {other_generator} ...")
            other = run_other_generator(other_generator, target, path, connections=connections, duration=duration)
            other["per_core"] = round(other["requests"] / other["cpu_s"], 1) if other["cpu_s"] else 0.0
            other["per_core_ratio"] = round(other["per_core"] / wrk_per_core, 3) if wrk_per_core else 0.0
            other["ratio"] = round(other["rps"] / w["rps"], 3) if w["rps"] else 0.0
        rounds_out.append(
            {
                **({"other": other} if other else {}),
                "wrk_rps": round(w["rps"], 1),
                "ours_rps": round(ours.rate, 1),
                "ratio": round(ours.rate / w["rps"], 3) if w["rps"] else 0.0,
                "wrk_cpu_s": round(w.get("cpu_s", 0.0), 3),
                "ours_cpu_s": round(ours_cpu, 3),
                "wrk_per_core": round(wrk_per_core, 1),
                "ours_per_core": round(ours_per_core, 1),
                "per_core_ratio": round(ours_per_core / wrk_per_core, 3) if wrk_per_core else 0.0,
                "wrk_errors": w["non_2xx"] + w["socket_errors"],
                "ours_errors": ours.errors,
                "ours_cpu_percent": round(ours.cpu_percent, 1),
                "ours_saturated": ours.saturated,
            }
        )
    assert ours is not None
    wrk_rps = statistics.median(r["wrk_rps"] for r in rounds_out)
    ours_rps = statistics.median(r["ours_rps"] for r in rounds_out)
    ratio = ours_rps / wrk_rps if wrk_rps else 0.0
    out["throughput"] = {
        "connections": connections,
        "duration_s": duration,
        "rounds": rounds,
        "wrk_threads": wrk_threads,
        "processes": processes,
        "wrk_rps": round(wrk_rps, 1),
        "ours_rps": round(ours_rps, 1),
        "ratio": round(ratio, 3),
        "wrk_per_core": statistics.median(r["wrk_per_core"] for r in rounds_out),
        "ours_per_core": statistics.median(r["ours_per_core"] for r in rounds_out),
        "per_core_ratio": statistics.median(r["per_core_ratio"] for r in rounds_out),
        "goal_ratio": THROUGHPUT_GOAL_RATIO,
        "goal_met": ratio >= THROUGHPUT_GOAL_RATIO,
        "wrk_errors": sum(r["wrk_errors"] for r in rounds_out),
        "ours_errors": sum(r["ours_errors"] for r in rounds_out),
        "ours_cpu_percent": max(r["ours_cpu_percent"] for r in rounds_out),
        "ours_saturated": any(r["ours_saturated"] for r in rounds_out),
        "ours_saturation_reason": ours.saturation_reason,
        "per_round": rounds_out,
        "wrk_command": w["command"],
        "ours_call": f"run_closed({target!r}, workers={connections}, duration={duration:g}, processes={processes})",
    }
    if other_generator:
        others = [r["other"] for r in rounds_out]
        out["throughput"]["other"] = {
            "tree": other_generator,
            "rps": statistics.median(o["rps"] for o in others),
            "ratio": statistics.median(o["ratio"] for o in others),
            "per_core": statistics.median(o["per_core"] for o in others),
            "per_core_ratio": statistics.median(o["per_core_ratio"] for o in others),
        }
    out["load_average_end"] = _load_average()
    if not latency:
        return out

    # 2. latency at a fixed rate below saturation: alternating rounds again, the median of each
    #    percentile over the rounds is compared
    rate_target = max(1.0, rate_fraction * ours_rps)
    conns, delay = pace_for_rate(rate_target, connections=latency_connections)
    qs = list(WRK_PERCENTILES)
    lat_rounds = []
    wl: dict[str, Any] = {}
    ol = None
    rate = rate_target
    for i in range(rounds):
        say(
            f"latency {i + 1}/{rounds}: wrk paced at ~{rate_target:.0f}/s ({conns} connection(s), delay {delay} ms) ..."
        )
        wl = run_wrk(target, connections=conns, duration_s=duration, threads=1, delay_ms=delay, wrk=wrk)
        rate = max(1.0, wl["rps"])
        say(f"latency {i + 1}/{rounds}: our open loop at {rate:.0f}/s, {conns} connection(s) ...")
        ol = run_open(target, Request("GET", path), rate=rate, duration=duration, connections=conns)
        corr = ol.histogram.percentiles_ms(qs)
        unc = ol.uncorrected.percentiles_ms(qs) if ol.uncorrected else {}
        lat_rounds.append(
            {
                "wrk_rate": round(wl["rps"], 1),
                "ours_rate": round(ol.rate, 1),
                "wrk_ms": {f"p{q:g}": wl["percentiles_ms"].get(q) for q in qs},
                "ours_uncorrected_ms": {f"p{q:g}": unc.get(q) for q in qs},
                "ours_corrected_ms": {f"p{q:g}": corr.get(q) for q in qs},
                "ours_late": ol.late,
                "ours_dropped": ol.dropped,
                "ours_saturated": ol.saturated,
                "ours_lag_p99_ms": ol.lag_p99_ms,
            }
        )
    assert ol is not None
    rows = {}
    all_unc, all_corr = True, True
    for q in qs:
        key = f"p{q:g}"
        wrk_vals = [r["wrk_ms"][key] for r in lat_rounds if r["wrk_ms"][key] is not None]
        if not wrk_vals:
            continue
        wv = statistics.median(wrk_vals)
        uv = statistics.median(r["ours_uncorrected_ms"][key] for r in lat_rounds)
        cv = statistics.median(r["ours_corrected_ms"][key] for r in lat_rounds)
        ok_u, tol = agreement(wv, uv)
        ok_c, _ = agreement(wv, cv)
        all_unc &= ok_u
        all_corr &= ok_c
        rows[key] = {
            "wrk_ms": wv,
            "ours_uncorrected_ms": uv,
            "ours_corrected_ms": cv,
            "tolerance_ms": round(tol, 3),
            "uncorrected_ok": ok_u,
            "corrected_ok": ok_c,
        }
    out["latency"] = {
        "rate_target": round(rate_target, 1),
        "wrk_rate": statistics.median(r["wrk_rate"] for r in lat_rounds),
        "ours_rate": statistics.median(r["ours_rate"] for r in lat_rounds),
        "connections": conns,
        "wrk_delay_ms": delay,
        "duration_s": duration,
        "rounds": rounds,
        "percentiles": rows,
        "goal_met_uncorrected": all_unc and bool(rows),
        "goal_met_corrected": all_corr and bool(rows),
        "ours_late": sum(r["ours_late"] for r in lat_rounds),
        "ours_dropped": sum(r["ours_dropped"] for r in lat_rounds),
        "ours_saturated": any(r["ours_saturated"] for r in lat_rounds),
        "ours_saturation_reason": ol.saturation_reason,
        "ours_lag_p99_ms": max(r["ours_lag_p99_ms"] for r in lat_rounds),
        "per_round": lat_rounds,
        "wrk_command": wl["command"],
        "ours_call": f"run_open({target!r}, rate=<wrk's rate that round, last {rate:.1f}>, duration={duration:g}, "
        f"connections={conns})",
    }
    return out


_OTHER_GENERATOR = """
import json, sys
from conductor_perf.measure.load import run_closed
from conductor_perf.measure.rawhttp import Request
r = run_closed(sys.argv[1], Request("GET", sys.argv[2]), workers=int(sys.argv[3]), duration=float(sys.argv[4]))
print(json.dumps({"rps": r.rate, "requests": r.requests, "errors": r.errors,
                  "cpu_s": sum(getattr(x, "cpu_s", 0.0) for x in getattr(r, "reports", []))}))
"""


def run_other_generator(tree: str, url: str, path: str, *, connections: int, duration: float) -> dict[str, Any]:
    """The closed loop of another checkout of this project (``PYTHONPATH=tree``) on ``url``: rate, requests, CPU s."""
    if not os.path.isdir(os.path.join(tree, "conductor_perf")):
        raise ValueError(f"{tree} is not a checkout of conductor-perf (no conductor_perf/ in it)")
    proc = subprocess.run([sys.executable, "-c", _OTHER_GENERATOR, url, path, str(connections), str(duration)],
                          capture_output=True, text=True, timeout=duration + 120, cwd=tree,
                          env={**os.environ, "PYTHONPATH": os.path.abspath(tree)})  # fmt: skip
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"the closed loop of {tree} failed: {proc.stderr.strip()[-500:]}")
    return dict(json.loads(lines[-1]))


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def format_table(result: dict[str, Any]) -> str:
    """The calibration result as a plain-text table."""
    t = result["throughput"]
    lat = result.get("latency")
    load = f"; load average {result.get('load_average_start')} -> {result.get('load_average_end')}"
    lines = [
        f"Calibration on {result['url']}  ({result['machine']['cpus']} CPUs, {result['wrk_version']}{load})",
        "",
        f"Throughput, {t['connections']} connections, {t['duration_s']:g} s, median of {t['rounds']} "
        f"alternating round(s) (wrk -t{t['wrk_threads']}, ours {t['processes']} process(es))",
        f"  {'tool':<12}{'req/s':>12}{'errors':>10}",
        f"  {'wrk':<12}{t['wrk_rps']:>12.0f}{t['wrk_errors']:>10}",
        f"  {'ours':<12}{t['ours_rps']:>12.0f}{t['ours_errors']:>10}",
        "  per round ours/wrk: "
        + ", ".join(f"{r['ours_rps']:.0f}/{r['wrk_rps']:.0f}" for r in t["per_round"]),
        f"  ratio ours/wrk = {t['ratio']:.2f}  (goal >= {t['goal_ratio']:.2f}: "
        f"{'met' if t['goal_met'] else 'NOT met'}; our generator CPU {t['ours_cpu_percent']:.0f} %"
        f"{', saturated' if t['ours_saturated'] else ''})",
        f"  per core (requests per CPU second of the generator): wrk {t['wrk_per_core']:.0f}, ours "
        f"{t['ours_per_core']:.0f}, ratio {t['per_core_ratio']:.2f} (per round "
        + ", ".join(f"{r['per_core_ratio']:.2f}" for r in t["per_round"]) + ")",
    ]
    if t.get("other"):
        o = t["other"]
        lines += [
            f"  the closed loop of {o['tree']}: {o['rps']:.0f} req/s, ratio {o['ratio']:.2f} (per round "
            + ", ".join(f"{r['other']['ratio']:.2f}" for r in t["per_round"]) + f"); per core {o['per_core']:.0f}, "
            f"ratio {o['per_core_ratio']:.2f} (per round "
            + ", ".join(f"{r['other']['per_core_ratio']:.2f}" for r in t["per_round"]) + ")",
        ]
    if lat is None:
        return "\n".join([*lines, "", "Commands:", f"  {t['wrk_command']}", f"  {t['ours_call']}"])
    lines += [
        "",
        f"Latency at a fixed rate: wrk {lat['wrk_rate']:.0f}/s (paced, {lat['connections']} conn, delay "
        f"{lat['wrk_delay_ms']} ms), ours open loop {lat['ours_rate']:.0f}/s, {lat['duration_s']:g} s, "
        f"median of {lat['rounds']} alternating round(s)",
        f"  {'pct':<8}{'wrk ms':>10}{'ours ms':>10}{'ours corr':>11}{'tol ms':>9}  agree",
        "  " + "-" * 56,
    ]
    for name, row in lat["percentiles"].items():
        agree = ("yes" if row["uncorrected_ok"] else "NO") + ("" if row["corrected_ok"] else " (corr NO)")
        lines.append(
            f"  {name:<8}{row['wrk_ms']:>10.3f}{row['ours_uncorrected_ms']:>10.3f}"
            f"{row['ours_corrected_ms']:>11.3f}{row['tolerance_ms']:>9.2f}  {agree}"
        )
    lines += [
        "  (ours = from actual send, like wrk; ours corr = from intended send time)",
        f"  agreement within 10 % or 1 ms: uncorrected {'met' if lat['goal_met_uncorrected'] else 'NOT met'}, "
        f"corrected {'met' if lat['goal_met_corrected'] else 'NOT met'}",
        "",
        "Commands:",
        f"  {t['wrk_command']}",
        f"  {t['ours_call']}",
        f"  {lat['wrk_command']}",
        f"  {lat['ours_call']}",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# servers to calibrate against
# --------------------------------------------------------------------------------------------
def serve_hello(host: str = "127.0.0.1", port: int = 0, max_seconds: float = 900.0) -> None:
    """Serve a bare aiohttp app (``GET /api/v1/health`` -> ``{"status":"ok"}``) on loopback.

    Prints ``http://host:port`` as the first stdout line, then serves until killed or
    ``max_seconds`` passed.
    """
    import asyncio

    from aiohttp import web

    if host not in ("127.0.0.1", "::1", "localhost"):
        raise ValueError("the hello server binds loopback only")

    async def health(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def main() -> None:
        app = web.Application()
        app.router.add_get(DEFAULT_PATH, health)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        sock = site._server.sockets[0]  # type: ignore[union-attr]
        real_port = sock.getsockname()[1]
        print(f"http://{host}:{real_port}", flush=True)
        try:
            await asyncio.sleep(max_seconds)
        finally:
            await runner.cleanup()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass


def start_server(cmd: list[str], *, timeout_s: float = 30.0) -> tuple[subprocess.Popen[str], str]:
    """Start a server process that prints its URL on its first stdout line; return (process, url)."""
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True
    )
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        if not sel.select(timeout_s):
            stop_server(proc)
            raise RuntimeError(f"server did not print its URL within {timeout_s:g} s: {' '.join(cmd)}")
        line = proc.stdout.readline().strip()
    finally:
        sel.close()
    if not line.startswith("http://"):
        stop_server(proc)
        raise RuntimeError(f"server printed {line!r} instead of its URL: {' '.join(cmd)}")
    parse_loopback_url(line)
    return proc, line


def stop_server(proc: subprocess.Popen[str]) -> None:
    """Stop a server started by :func:`start_server` (its whole process group), waiting at most 10 s."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            proc.kill()
        proc.wait(timeout=10)


def main(argv: list[str] | None = None) -> int:
    """Command line: see the module docstring. Exit 0 when both goals are met, 1 otherwise, 2 on error."""
    ap = argparse.ArgumentParser(
        prog="python -m conductor_perf.measure.calibrate",
        description="Calibrate the load generator against wrk on the same endpoint.",
    )
    ap.add_argument("url", nargs="?", help="base URL of the server on loopback, e.g. http://127.0.0.1:8080")
    ap.add_argument("--hello", action="store_true", help="start a bare aiohttp hello server and use it")
    ap.add_argument(
        "--reference",
        action="store_true",
        help="start the reference conductor (python -m conductor_perf.reference) and use it",
    )
    ap.add_argument("--binary", metavar="PATH",
                    help="start this conductor-loop executable (run-agent) the way the suites do and use it")  # fmt: skip
    ap.add_argument("--throughput-only", action="store_true",
                    help="only the throughput comparison (no fixed-rate latency rounds)")  # fmt: skip
    ap.add_argument("--other-generator", metavar="TREE",
                    help="also run the closed loop of this checkout of the project (e.g. a worktree of an "
                         "earlier commit) in every throughput round")  # fmt: skip
    ap.add_argument("--path", default=DEFAULT_PATH, help=f"endpoint to load (default {DEFAULT_PATH})")
    ap.add_argument("--connections", type=int, default=10)
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per run (default 5)")
    ap.add_argument("--rounds", type=int, default=3, help="throughput rounds, medians compared (default 3)")
    ap.add_argument("--wrk-threads", type=int, default=1)
    ap.add_argument("--processes", type=int, default=1, help="our generator processes")
    ap.add_argument("--rate-fraction", type=float, default=0.5)
    ap.add_argument(
        "--latency-connections",
        type=int,
        default=None,
        help="connections for the fixed-rate comparison (default: what 1 ms pacing needs)",
    )
    ap.add_argument("--json", help="also write the result as JSON to this file")
    ap.add_argument("--serve-hello", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.serve_hello:
        serve_hello()
        return 0
    if sum(bool(x) for x in (args.url, args.hello, args.reference, args.binary)) != 1:
        ap.error("give exactly one of URL, --hello, --reference, --binary")
    try:
        find_wrk()
    except WrkNotFound as exc:
        print(exc, file=sys.stderr)
        return 2
    proc = None
    tmp = None
    owned = None
    try:
        url = args.url
        if args.binary:
            from conductor_perf.binary import start_binary
            from conductor_perf.target import TargetError

            tmp = tempfile.TemporaryDirectory(prefix="calibrate-binary-")
            try:
                owned = start_binary(args.binary, sut_dir=tmp.name)
            except TargetError as exc:
                raise RuntimeError(str(exc)) from None
            url = owned.url
        if args.hello:
            proc, url = start_server(
                [sys.executable, "-m", "conductor_perf.measure.calibrate", "--serve-hello"]
            )
        elif args.reference:
            tmp = tempfile.TemporaryDirectory(prefix="calibrate-root-")
            proc, url = start_server(
                [
                    sys.executable,
                    "-m",
                    "conductor_perf.reference",
                    "--root",
                    tmp.name,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "0",
                ]
            )
        started = time.monotonic()
        result = calibrate(
            url,
            path=args.path,
            connections=args.connections,
            duration=args.duration,
            wrk_threads=args.wrk_threads,
            processes=args.processes,
            rate_fraction=args.rate_fraction,
            latency_connections=args.latency_connections,
            rounds=args.rounds,
            log=lambda m: print(m, file=sys.stderr, flush=True),
            latency=not args.throughput_only,
            other_generator=args.other_generator,
        )
        result["elapsed_s"] = round(time.monotonic() - started, 1)
        result["target"] = ("hello" if args.hello else "reference" if args.reference
                            else f"binary {owned.binary_version}" if owned is not None else "url")  # fmt: skip
    except (RuntimeError, ValueError, OSError) as exc:
        print(f"calibration failed: {exc}", file=sys.stderr)
        return 2
    finally:
        if proc is not None:
            stop_server(proc)
        if owned is not None:
            owned.stop()
        if tmp is not None:
            tmp.cleanup()
    print(format_table(result))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2, default=str)
    ok = result["throughput"]["goal_met"] and (result.get("latency") or {}).get("goal_met_uncorrected", True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
