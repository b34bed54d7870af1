"""Process-tree sampler and port finder, on real child processes (loopback only, bounded waits)."""

from __future__ import annotations

import itertools
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from conductor_perf.measure.monitor import (
    MIB,
    ProcessTreeSampler,
    ResourceSample,
    ResourceSeries,
    _host_matches,
    find_pid_by_port,
    find_pid_by_port_procfs,
    sample_once,
)

pytestmark = pytest.mark.timeout(60)

WAIT_S = 20.0


def wait_until(cond: Callable[[], bool], timeout: float = WAIT_S, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


# Every child script waits for files named on its command line and gives up after 60 s.
ALLOCATOR = """
import pathlib, sys, time
ready, trigger, ack, stop = map(pathlib.Path, sys.argv[1:5])
deadline = time.monotonic() + 60
ready.write_text("ok")
while not trigger.exists() and time.monotonic() < deadline:
    time.sleep(0.01)
buf = b"\\x01" * (50 * 1024 * 1024)  # written, so resident
ack.write_text("ok")
while not stop.exists() and time.monotonic() < deadline:
    time.sleep(0.01)
"""

TREE_PARENT = """
import pathlib, subprocess, sys, time
ready, stop = map(pathlib.Path, sys.argv[1:3])
deadline = time.monotonic() + 60
busy = "import time\\nt = time.monotonic()\\nwhile time.monotonic() - t < 60 and not __import__('os').path.exists(%r): pass" % str(stop)
fat = "import os, time\\nb = b'x' * (30 * 1024 * 1024)\\nt = time.monotonic()\\nwhile time.monotonic() - t < 60 and not os.path.exists(%r): time.sleep(0.01)" % str(stop)
kids = [subprocess.Popen([sys.executable, "-c", busy]), subprocess.Popen([sys.executable, "-c", fat])]
ready.write_text("ok")
while not stop.exists() and time.monotonic() < deadline:
    time.sleep(0.01)
for k in kids:
    k.wait(10)
"""

REAPER = """
import pathlib, subprocess, sys, time
go, done, stop = map(pathlib.Path, sys.argv[1:4])
deadline = time.monotonic() + 60
while not go.exists() and time.monotonic() < deadline:
    time.sleep(0.01)
burn = "import time\\nwhile time.process_time() < 0.3: pass"
subprocess.run([sys.executable, "-c", burn], timeout=60)
done.write_text("ok")
while not stop.exists() and time.monotonic() < deadline:
    time.sleep(0.01)
"""

LISTENER = """
import pathlib, socket, sys, time
portfile, stop = map(pathlib.Path, sys.argv[1:3])
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(16)
srv.settimeout(0.05)
portfile.write_text(str(srv.getsockname()[1]))
conns = []
deadline = time.monotonic() + 60
while not stop.exists() and time.monotonic() < deadline:
    try:
        conns.append(srv.accept()[0])
    except socket.timeout:
        pass
"""


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []

    def _spawn(code: str, *files: str) -> subprocess.Popen[bytes]:
        args = [str(tmp_path / f) for f in files]
        p = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args])
        procs.append(p)
        return p

    yield _spawn
    (tmp_path / "stop").write_text("stop")
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            for kid in psutil.Process(p.pid).children(recursive=True):
                kid.kill()
            p.kill()
            p.wait(5)


def test_sampler_sees_a_known_memory_growth(spawn, tmp_path: Path) -> None:
    proc = spawn(ALLOCATOR, "ready", "trigger", "ack", "stop")
    wait_until((tmp_path / "ready").exists, what="child ready")
    sampler = ProcessTreeSampler(proc.pid, interval=0.05).start()
    assert sampler.wait_for_samples(3, timeout=WAIT_S)
    before = sampler.snapshot()
    (tmp_path / "trigger").write_text("go")
    wait_until((tmp_path / "ack").exists, what="allocation done")
    assert sampler.wait_for_samples(len(sampler.snapshot()) + 2, timeout=WAIT_S)
    series = sampler.stop()

    rss_before = max(before.values("rss_bytes"))
    assert series.peak("rss_bytes") - rss_before >= 40 * MIB
    if series.memory_basis == "pss":
        assert series.peak("uss_bytes") - max(before.values("uss_bytes")) >= 40 * MIB
        assert series.peak("pss_bytes") - max(before.values("pss_bytes")) >= 40 * MIB
    assert series.process_exited is False
    assert series.peak("threads") >= 1
    assert series.peak("open_fds") >= 3
    assert series.peak("children") == 0
    assert series.mean("cpu_percent") is not None


def test_sampler_stops_by_itself_when_the_process_ends(spawn, tmp_path: Path) -> None:
    proc = spawn(ALLOCATOR, "ready", "trigger", "ack", "stop")
    wait_until((tmp_path / "ready").exists, what="child ready")
    with ProcessTreeSampler(proc.pid, interval=0.05) as sampler:
        assert sampler.wait_for_samples(2, timeout=WAIT_S)
        (tmp_path / "trigger").write_text("go")
        (tmp_path / "stop").write_text("stop")
        # not waited for yet: the child is a zombie, which counts as gone
        wait_until(lambda: not sampler.running, what="sampler to notice the exit")
    series = sampler.series
    assert series is not None
    assert series.process_exited
    assert series.exited_at_s is not None
    assert len(series) >= 2
    proc.wait(10)


def test_children_are_counted_separately(spawn, tmp_path: Path) -> None:
    proc = spawn(TREE_PARENT, "ready", "stop")
    wait_until((tmp_path / "ready").exists, what="children started")
    parent = psutil.Process(proc.pid)
    wait_until(
        lambda: sum(c.memory_info().rss for c in parent.children()) >= 30 * MIB,
        what="fat child allocated",
    )
    with ProcessTreeSampler(proc.pid, interval=0.05) as sampler:
        assert sampler.wait_for_samples(10, timeout=WAIT_S)
    series = sampler.series
    assert series is not None
    assert series.peak("children") == 2
    assert series.peak("children_rss_bytes") >= 30 * MIB
    busy = series.mean("cpu_children_percent")
    assert busy > 0.0  # one child spins (how much of a core it gets depends on the machine's load)
    assert series.mean("cpu_percent") < busy  # the parent only sleeps
    total = series.mean("cpu_total_machine_percent")
    assert total == pytest.approx((series.mean("cpu_percent") + busy) / series.ncpu, rel=1e-6)


def test_cpu_of_a_child_that_ended_between_samples_is_counted(spawn, tmp_path: Path) -> None:
    proc = spawn(REAPER, "go", "done", "stop")
    sampler = ProcessTreeSampler(proc.pid, interval=0.05).start()
    assert sampler.wait_for_samples(1, timeout=WAIT_S)
    (tmp_path / "go").write_text("go")
    wait_until((tmp_path / "done").exists, what="child burned and was reaped")
    assert sampler.wait_for_samples(len(sampler.snapshot()) + 2, timeout=WAIT_S)
    series = sampler.stop()
    times = psutil.Process(proc.pid).cpu_times()
    reaped = times.children_user + times.children_system  # the kernel's figure for the child
    counted = sum(
        s.cpu_children_percent / 100.0 * s.window_s
        for s in series.samples
        if s.cpu_children_percent is not None and s.window_s is not None
    )
    assert reaped >= 0.25  # 0.3 s of process_time, in 10 ms clock ticks
    assert counted == pytest.approx(reaped, abs=0.05)


def test_tcp_connections_and_port_lookup(spawn, tmp_path: Path) -> None:
    proc = spawn(LISTENER, "port", "stop")
    wait_until(lambda: (tmp_path / "port").exists() and (tmp_path / "port").read_text() != "")
    port = int((tmp_path / "port").read_text())
    clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(3)]
    try:
        wait_until(
            lambda: (sample_once(proc.pid, cpu_window=0)["tcp_established"] or 0) >= 3,
            what="3 accepted connections",
        )
        one = sample_once(proc.pid, cpu_window=0.05)
        assert one["tcp_connections"] >= 4  # listener + 3 accepted
        assert one["cpu_percent"] is not None
        assert find_pid_by_port(port) == proc.pid
        assert find_pid_by_port(port, host=None) == proc.pid
        assert find_pid_by_port_procfs(port) == proc.pid
        assert find_pid_by_port(port, host="127.0.0.2") is None
    finally:
        for c in clients:
            c.close()


def test_port_nobody_listens_on_gives_none() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))  # bound, not listening
        port = s.getsockname()[1]
        assert find_pid_by_port(port) is None
        assert find_pid_by_port_procfs(port) is None


def test_host_matching() -> None:
    assert _host_matches("0.0.0.0", "127.0.0.1")
    assert _host_matches("::", "127.0.0.1")
    assert _host_matches("::ffff:127.0.0.1", "127.0.0.1")
    assert _host_matches("::1", "localhost")
    assert not _host_matches("127.0.0.1", "10.0.0.1")
    assert _host_matches("10.0.0.1", None)


def test_dead_pid_is_reported() -> None:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait(10)
    with pytest.raises(ProcessLookupError):
        ProcessTreeSampler(p.pid).start()
    with pytest.raises(ProcessLookupError):
        sample_once(p.pid)


def test_interval_must_be_positive() -> None:
    with pytest.raises(ValueError):
        ProcessTreeSampler(1, interval=0)


def _sample(t: float, rss: int, cpu: float | None) -> ResourceSample:
    return ResourceSample(
        t_s=t,
        wall=1000.0 + t,
        window_s=0.5,
        rss_bytes=rss,
        uss_bytes=None,
        pss_bytes=None,
        cpu_percent=cpu,
        cpu_children_percent=0.0,
        cpu_machine_percent=None,
        cpu_total_machine_percent=None,
        threads=4,
        open_fds=10,
        tcp_connections=1,
        tcp_established=0,
        children=0,
        children_rss_bytes=0,
    )


def test_series_statistics_and_round_trip() -> None:
    series = ResourceSeries(
        pid=1,
        interval_s=0.5,
        ncpu=2,
        samples=[_sample(0.5, 100, 10.0), _sample(1.0, 300, None), _sample(1.5, 200, 30.0)],
    )
    assert series.peak("rss_bytes") == 300
    assert series.mean("rss_bytes") == pytest.approx(200)
    assert series.mean("cpu_percent") == pytest.approx(20.0)  # None skipped
    assert series.peak("uss_bytes") is None
    assert series.duration_s == pytest.approx(1.0)
    assert series.columns()["cpu_percent"] == [10.0, None, 30.0]
    again = ResourceSeries.from_dict(series.to_dict())
    assert again.samples == series.samples
    assert series.to_dict()["peak"]["rss_bytes"] == 300
    with pytest.raises(KeyError):
        series.values("nope")


def test_denied_full_memory_falls_back_to_rss(monkeypatch: pytest.MonkeyPatch) -> None:
    def denied(self: psutil.Process) -> None:
        raise psutil.AccessDenied(self.pid)

    monkeypatch.setattr(psutil.Process, "memory_full_info", denied)
    one = sample_once(psutil.Process().pid, cpu_window=0)
    assert one["rss_bytes"] > 0
    assert one["uss_bytes"] is None
    assert one["pss_bytes"] is None
    assert one["memory_basis"] == "rss"
    assert any("RSS" in note for note in one["notes"])


def test_port_lookup_falls_back_to_procfs_when_psutil_is_denied(
    spawn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proc = spawn(LISTENER, "port", "stop")
    wait_until(lambda: (tmp_path / "port").exists() and (tmp_path / "port").read_text() != "")
    port = int((tmp_path / "port").read_text())

    def denied(kind: str = "inet") -> None:
        raise psutil.AccessDenied()

    monkeypatch.setattr(psutil, "net_connections", denied)
    assert find_pid_by_port(port) == proc.pid


def test_sample_once_without_a_cpu_window_has_no_cpu_figures() -> None:
    one = sample_once(psutil.Process().pid, cpu_window=0)
    assert one["cpu_percent"] is None
    assert one["cpu_total_machine_percent"] is None
    assert one["threads"] >= 1


def test_a_short_workload_gets_dense_samples_and_long_ones_the_interval(spawn, tmp_path: Path) -> None:
    proc = spawn(TREE_PARENT, "ready", "stop")
    wait_until((tmp_path / "ready").exists, what="children started")
    sampler = ProcessTreeSampler(proc.pid, interval=0.4, start_interval=0.05, ramp=4).start()
    assert sampler.wait_for_samples(14, timeout=WAIT_S)
    series = sampler.stop()
    steps = [b.t_s - a.t_s for a, b in itertools.pairwise(series.samples)]
    # the step grows 0.05 -> 0.1 -> 0.2 -> 0.4 (a loaded machine may stretch a step, never shrink it)
    assert min(steps[:3]) < 0.2 and steps[-1] >= 0.35
    with pytest.raises(ValueError):
        ProcessTreeSampler(proc.pid, interval=0.5, start_interval=0)


def test_cpu_mean_is_weighted_by_each_samples_window() -> None:
    def sample(t: float, window: float, cpu: float) -> ResourceSample:
        return ResourceSample(t_s=t, wall=t, window_s=window, rss_bytes=1, uss_bytes=None, pss_bytes=None,
                              cpu_percent=cpu, cpu_children_percent=None, cpu_machine_percent=cpu / 2,
                              cpu_total_machine_percent=None, threads=1, open_fds=1, tcp_connections=0,
                              tcp_established=0, children=0, children_rss_bytes=0)  # fmt: skip

    series = ResourceSeries(pid=1, interval_s=1.0, ncpu=2,
                            samples=[sample(0.1, 0.1, 100.0), sample(1.1, 1.0, 0.0)])  # fmt: skip
    assert series.mean("cpu_percent") == pytest.approx(100.0 * 0.1 / 1.1)  # 0.1 s busy in 1.1 s
    assert series.mean("rss_bytes") == 1


FORKING_PARENT = """
    import os, sys, time
    ready, stop = sys.argv[1], sys.argv[2]
    fat = bytearray(60 * 1024 * 1024)
    for i in range(0, len(fat), 4096):
        fat[i] = 1
    pid = os.fork()
    if pid == 0:  # the child never execs: it runs the parent's command line on the parent's pages
        while not os.path.exists(stop):
            time.sleep(0.02)
        os._exit(0)
    open(ready, "w").close()
    while not os.path.exists(stop):
        time.sleep(0.02)
    os.waitpid(pid, 0)
"""


def test_a_child_that_has_not_exec_d_adds_no_memory_of_its_own(spawn, tmp_path: Path) -> None:
    """A forked child still running its parent's command line would count the parent's memory twice."""
    proc = spawn(FORKING_PARENT, "ready", "stop")
    wait_until((tmp_path / "ready").exists, what="child forked")
    (child,) = psutil.Process(proc.pid).children()
    assert child.memory_info().rss >= 60 * MIB  # what a plain RSS sum would add
    with ProcessTreeSampler(proc.pid, interval=0.05) as sampler:
        assert sampler.wait_for_samples(3, timeout=WAIT_S)
    series = sampler.series
    assert series is not None
    assert series.peak("children") == 1
    assert series.peak("children_rss_bytes") == 0
