"""Resource sampling of the system under test: one process and its children, over time.

:class:`ProcessTreeSampler` runs a background thread that samples a process (the SUT server) and
all its descendants (for conductor-loop: the agent processes) every ``interval`` seconds with
psutil, and returns a :class:`ResourceSeries` (the time series, plus peak and mean per field).

What one :class:`ResourceSample` holds (server = the sampled pid; children = all descendants):

* memory of the server: ``rss_bytes`` always; ``uss_bytes`` and ``pss_bytes`` from
  ``memory_full_info`` (``/proc/<pid>/smaps_rollup`` on Linux). When that is denied (another user's
  process) or unsupported, they are ``None`` and the series notes the fallback to RSS
  (``memory_basis``);
* CPU: ``cpu_percent`` of the server alone and ``cpu_children_percent`` of its descendants, in % of
  ONE core (200 = two cores busy), as ``ps``/``top`` show it; ``cpu_machine_percent`` and
  ``cpu_total_machine_percent`` are the server and server+children normalised to the whole machine
  (divided by the logical CPU count, 100 = every core busy);
* ``threads`` (OS threads, not goroutines), ``open_fds``, TCP sockets (``tcp_connections``, all
  states incl. LISTEN) and ``tcp_established``;
* ``children`` (live descendants, zombies excluded) and ``children_rss_bytes`` (their RSS sum; a
  child caught between fork and exec, still running its parent's command line, counts 0 bytes: it
  shares or copies its parent's memory, which is counted already. A server that forks workers
  which never exec would be undercounted; neither conductor-loop nor the reference does).

CPU is measured from deltas of each process's ``cpu_times()`` (user + system) between consecutive
samples, divided by the elapsed monotonic time: the same computation as psutil's ``cpu_percent``,
with the ``Process`` objects kept across samples and primed at :meth:`ProcessTreeSampler.start`, so
the first sample already covers a real window (a fresh ``Process.cpu_percent()`` returns a
meaningless 0.0). CPU time advances in 10 ms clock ticks, so one 0.5 s sample resolves 2 % of a core;
means over many samples are finer. A child first seen in a sample counts fully if it was born inside that window,
otherwise it is primed and counts from the next window. CPU of a direct child that ended between
two samples is recovered from the server's ``children_user``/``children_system`` counters (what the
server has reaped) minus what was already counted for it; a grandchild's last partial window is
lost (it is reaped into its parent's counters).

The sampler survives the process ending: sampling stops and the series says ``process_exited``.
Every wait is bounded. The sampler itself costs about 2 ms of CPU per sample for a lone server and
about 7 ms with 50 children (several ``/proc`` reads per process; measured on the 2-core test
machine), i.e. 0.4 % and 1.4 % of one core at 0.5 s intervals, taken in the sampling process (and
under its GIL).

:func:`find_pid_by_port` finds the process that LISTENs on a TCP port (for an external SUT).
"""

from __future__ import annotations

import contextlib
import glob
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import psutil

MIB = 1024 * 1024

#: numeric fields of a sample that peak()/mean()/columns() cover, in column order
SAMPLE_FIELDS: tuple[str, ...] = (
    "t_s",
    "window_s",
    "rss_bytes",
    "uss_bytes",
    "pss_bytes",
    "cpu_percent",
    "cpu_children_percent",
    "cpu_machine_percent",
    "cpu_total_machine_percent",
    "threads",
    "open_fds",
    "tcp_connections",
    "tcp_established",
    "children",
    "children_rss_bytes",
)


CPU_FIELDS = ("cpu_percent", "cpu_children_percent", "cpu_machine_percent", "cpu_total_machine_percent")
"""Sample fields that are a rate over the sample's CPU window (``window_s``)."""


@dataclass(frozen=True)
class ResourceSample:
    """One sample of the server process and its descendants (see the module doc for each field).

    ``t_s`` is seconds since the sampler started (monotonic), ``wall`` the Unix time, ``window_s``
    the CPU window this sample's CPU figures cover. Figures that could not be read are ``None``.
    """

    t_s: float
    wall: float
    window_s: float | None
    rss_bytes: int
    uss_bytes: int | None
    pss_bytes: int | None
    cpu_percent: float | None
    cpu_children_percent: float | None
    cpu_machine_percent: float | None
    cpu_total_machine_percent: float | None
    threads: int | None
    open_fds: int | None
    tcp_connections: int | None
    tcp_established: int | None
    children: int
    children_rss_bytes: int

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return asdict(self)


@dataclass
class ResourceSeries:
    """The samples of one measurement window and what happened to the process.

    Attributes:
        pid: the sampled (server) process.
        interval_s: the requested sampling interval.
        ncpu: logical CPU count used for the machine-normalised CPU figures.
        samples: the samples in time order.
        process_exited: the process ended (or became a zombie) while being sampled.
        exited_at_s: when that was noticed, seconds since the start.
        memory_basis: ``"pss"`` when PSS/USS were read, ``"rss"`` after a fallback.
        notes: fallbacks and errors met while sampling, one line each.
    """

    pid: int
    interval_s: float
    ncpu: int
    samples: list[ResourceSample] = field(default_factory=list)
    process_exited: bool = False
    exited_at_s: float | None = None
    memory_basis: str = "pss"
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def duration_s(self) -> float:
        """Seconds from the first to the last sample (0 with fewer than two)."""
        return self.samples[-1].t_s - self.samples[0].t_s if len(self.samples) > 1 else 0.0

    def values(self, name: str) -> list[float]:
        """The non-``None`` values of one field, in time order."""
        if name not in SAMPLE_FIELDS:
            raise KeyError(f"unknown sample field {name!r}; known: {', '.join(SAMPLE_FIELDS)}")
        return [v for v in (getattr(s, name) for s in self.samples) if v is not None]

    def peak(self, name: str | None = None) -> Any:
        """Maximum of one field (``None`` when never measured), or a dict of all fields' maxima."""
        if name is None:
            return {n: self.peak(n) for n in SAMPLE_FIELDS if n not in ("t_s", "window_s")}
        vals = self.values(name)
        return max(vals) if vals else None

    def mean(self, name: str | None = None) -> Any:
        """Mean of one field over the samples, or a dict of all fields' means.

        CPU fields are weighted by each sample's CPU window, so the mean is the average CPU over the
        measurement also when the sampler started with shorter steps (``start_interval``); with
        equal windows it is the arithmetic mean. Other fields: the arithmetic mean.
        """
        if name is None:
            return {n: self.mean(n) for n in SAMPLE_FIELDS if n not in ("t_s", "window_s")}
        if name in CPU_FIELDS:
            pairs = [(v, s.window_s) for s in self.samples if (v := getattr(s, name)) is not None]
            if pairs and all(w is not None and w > 0 for _, w in pairs):
                total = sum(w for _, w in pairs)  # type: ignore[misc]
                return sum(v * w for v, w in pairs) / total  # type: ignore[operator]
        vals = self.values(name)
        return sum(vals) / len(vals) if vals else None

    def columns(self) -> dict[str, list[Any]]:
        """Column-wise series for charts: ``{"t_s": [...], "wall": [...], "rss_bytes": [...], ...}``
        (every sample field, ``None`` kept)."""
        return {f.name: [getattr(s, f.name) for s in self.samples] for f in fields(ResourceSample)}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary and series."""
        return {
            "pid": self.pid,
            "interval_s": self.interval_s,
            "ncpu": self.ncpu,
            "n_samples": len(self.samples),
            "duration_s": self.duration_s,
            "process_exited": self.process_exited,
            "exited_at_s": self.exited_at_s,
            "memory_basis": self.memory_basis,
            "notes": list(self.notes),
            "peak": self.peak(),
            "mean": self.mean(),
            "columns": self.columns(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ResourceSeries:
        """Rebuild a series written by :meth:`to_dict`."""
        cols = data["columns"]
        n = len(cols["t_s"])
        names = [f.name for f in fields(ResourceSample)]
        samples = [
            ResourceSample(**{k: (cols[k][i] if k in cols else None) for k in names}) for i in range(n)
        ]
        return cls(
            pid=data["pid"],
            interval_s=data["interval_s"],
            ncpu=data["ncpu"],
            samples=samples,
            process_exited=data["process_exited"],
            exited_at_s=data.get("exited_at_s"),
            memory_basis=data.get("memory_basis", "pss"),
            notes=list(data.get("notes", [])),
        )


class _ProcessGone(Exception):
    """The sampled process ended or is a zombie."""


def _cpu_s(times: Any) -> float:
    return float(times.user + times.system)


class ProcessTreeSampler:
    """Sample a process and its descendants in a background thread.

    Example::

        with ProcessTreeSampler(server_pid, interval=0.5) as sampler:
            run_the_load()
        series = sampler.series
        print(series.peak("rss_bytes") / MIB, series.mean("cpu_percent"))

    Args:
        pid: the process to sample (the SUT server).
        interval: seconds between samples (> 0).
        start_interval: when given (and shorter than ``interval``), the first samples come this
            often and the step doubles after every ``ramp`` samples until it is ``interval``: a
            workload of one second (50 agents of 1 s each) still gets a dozen samples and a shape,
            while a long one is sampled at ``interval`` after the first seconds. Every sample's CPU
            covers its own window (``window_s``), and :meth:`ResourceSeries.mean` weights by it.
        ramp: samples per step before it doubles (with ``start_interval``).
        full_memory: read USS/PSS (``memory_full_info``); ``False`` samples RSS only.
        connections: count TCP sockets (``net_connections``); ``False`` skips it.
    """

    def __init__(
        self,
        pid: int,
        interval: float = 0.5,
        *,
        start_interval: float | None = None,
        ramp: int = 8,
        full_memory: bool = True,
        connections: bool = True,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be > 0 s, got {interval}")
        if start_interval is not None and start_interval <= 0:
            raise ValueError(f"start_interval must be > 0 s, got {start_interval}")
        if ramp < 1:
            raise ValueError(f"ramp must be at least 1 sample, got {ramp}")
        self.pid = pid
        self.interval = float(interval)
        self._step = min(self.interval, float(start_interval)) if start_interval else self.interval
        self._ramp = ramp
        self._full_memory = full_memory
        self._connections = connections
        self._ncpu = psutil.cpu_count(logical=True) or 1
        self._proc: psutil.Process | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._series = ResourceSeries(pid=pid, interval_s=self.interval, ncpu=self._ncpu)
        self._t0 = 0.0
        self._last_t = 0.0
        self._last_wall = 0.0
        self._server_cpu = 0.0
        self._reaped_cpu = 0.0
        self._owed: list[tuple[float, float]] = []  # (cpu s, when noticed)
        # pid -> (Process, cpu seconds at last sample, is a direct child)
        self._kids: dict[int, tuple[psutil.Process, float, bool]] = {}
        self._server_cmdline: list[str] | None = None
        self._noted: set[str] = set()
        self.series: ResourceSeries | None = None

    # -- public -----------------------------------------------------------------------------
    def start(self) -> ProcessTreeSampler:
        """Prime the CPU counters and start the sampling thread.

        Raises:
            ProcessLookupError: no such process.
            RuntimeError: already started.
        """
        if self._thread is not None:
            raise RuntimeError("sampler already started")
        try:
            self._proc = psutil.Process(self.pid)
            self._prime()
        except psutil.NoSuchProcess as exc:
            raise ProcessLookupError(f"no process with pid {self.pid}") from exc
        self._thread = threading.Thread(target=self._run, name=f"sampler-{self.pid}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> ResourceSeries:
        """Stop sampling and return the series (also kept as :attr:`series`).

        A last sample is taken when the newest one is older than half an interval, so even a
        window shorter than ``interval`` yields one sample (unless the process is gone).

        Args:
            timeout: at most this many seconds to wait for the sampling thread.
        """
        if self._thread is None:
            raise RuntimeError("sampler was not started")
        self._stop.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._note(f"sampling thread did not stop within {timeout:g} s")
        else:
            with self._lock:
                last = self._series.samples[-1].t_s if self._series.samples else None
            now = time.monotonic() - self._t0
            if not self._series.process_exited and (last is None or now - last > self._step / 2):
                self._sample_and_store()
        self.series = self.snapshot()
        return self.series

    def snapshot(self) -> ResourceSeries:
        """A copy of the series so far (safe while sampling runs)."""
        with self._lock:
            s = self._series
            return ResourceSeries(
                pid=s.pid,
                interval_s=s.interval_s,
                ncpu=s.ncpu,
                samples=list(s.samples),
                process_exited=s.process_exited,
                exited_at_s=s.exited_at_s,
                memory_basis=s.memory_basis,
                notes=list(s.notes),
            )

    @property
    def running(self) -> bool:
        """True while the sampling thread is alive (it ends on :meth:`stop` or when the process ends)."""
        return self._thread is not None and self._thread.is_alive()

    def wait_for_samples(self, count: int, timeout: float) -> bool:
        """Wait until at least ``count`` samples exist; False on timeout or when sampling ended."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                n = len(self._series.samples)
            if n >= count:
                return True
            if not self.running:
                return False
            time.sleep(min(0.02, self.interval / 4))
        return False

    def __enter__(self) -> ProcessTreeSampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- internals --------------------------------------------------------------------------
    def _note(self, text: str) -> None:
        with self._lock:
            if text not in self._noted:
                self._noted.add(text)
                self._series.notes.append(text)

    def _prime(self) -> None:
        assert self._proc is not None
        self._t0 = time.monotonic()
        self._last_t = self._t0
        self._last_wall = time.time()
        with self._proc.oneshot():
            times = self._proc.cpu_times()
            if self._proc.status() == psutil.STATUS_ZOMBIE:
                raise psutil.NoSuchProcess(self.pid)
        self._server_cpu = _cpu_s(times)
        self._reaped_cpu = float(times.children_user + times.children_system)
        for kid in self._children():
            with contextlib.suppress(psutil.Error):
                with kid.oneshot():
                    self._kids[kid.pid] = (kid, _cpu_s(kid.cpu_times()), kid.ppid() == self.pid)

    def _cmdline(self, proc: psutil.Process) -> list[str] | None:
        if self._server_cmdline is None:
            with contextlib.suppress(psutil.Error):
                self._server_cmdline = proc.cmdline()
        return self._server_cmdline

    def _children(self) -> list[psutil.Process]:
        assert self._proc is not None
        try:
            return self._proc.children(recursive=True)
        except psutil.NoSuchProcess:
            raise _ProcessGone from None

    def _run(self) -> None:
        next_t = self._t0 + self._step
        taken = 0
        while not self._stop.is_set():
            delay = next_t - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                break
            if not self._sample_and_store():
                break
            taken += 1
            if self._step < self.interval and taken % self._ramp == 0:
                self._step = min(self.interval, self._step * 2)
            next_t += self._step
            now = time.monotonic()
            if next_t <= now:  # fell behind (slow /proc, busy machine): skip, do not burst
                next_t = now + self._step

    def _sample_and_store(self) -> bool:
        """Take one sample; False when the process is gone."""
        try:
            sample = self._sample()
        except (_ProcessGone, psutil.NoSuchProcess, psutil.ZombieProcess):
            with self._lock:
                self._series.process_exited = True
                self._series.exited_at_s = time.monotonic() - self._t0
            return False
        except Exception as exc:  # keep sampling; record what went wrong once
            self._note(f"sample failed: {type(exc).__name__}: {exc}")
            return True
        with self._lock:
            self._series.samples.append(sample)
        return True

    def _read_memory(self, proc: psutil.Process) -> tuple[int, int | None, int | None]:
        if self._full_memory:
            try:
                full = proc.memory_full_info()
                return int(full.rss), int(full.uss), getattr(full, "pss", None)
            except psutil.AccessDenied:
                self._full_memory = False
                self._note("memory_full_info denied: USS/PSS unavailable, memory figures are RSS")
                with self._lock:
                    self._series.memory_basis = "rss"
            except (NotImplementedError, AttributeError):
                self._full_memory = False
                self._note("USS/PSS not supported here: memory figures are RSS")
                with self._lock:
                    self._series.memory_basis = "rss"
        return int(proc.memory_info().rss), None, None

    def _optional(self, what: str, fn: Any) -> Any:
        try:
            return fn()
        except psutil.AccessDenied:
            self._note(f"{what}: access denied")
        except (NotImplementedError, AttributeError):
            self._note(f"{what}: not supported on this platform")
        return None

    def _sample(self) -> ResourceSample:
        proc = self._proc
        assert proc is not None
        with proc.oneshot():
            if proc.status() == psutil.STATUS_ZOMBIE:
                raise _ProcessGone
            times = proc.cpu_times()
            rss, uss, pss = self._read_memory(proc)
            threads = self._optional("threads", proc.num_threads)
            fds = self._optional("open fds", proc.num_fds)
        conns = (
            self._optional("tcp connections", lambda: proc.net_connections(kind="tcp"))
            if self._connections
            else None
        )
        kids_now = self._children()
        now = time.monotonic()
        wall = time.time()
        window = now - self._last_t

        server_cpu = _cpu_s(times)
        reaped = float(times.children_user + times.children_system)
        server_delta = max(0.0, server_cpu - self._server_cpu)

        kids_delta = 0.0
        kids_rss = 0
        live = 0
        seen: dict[int, tuple[psutil.Process, float, bool]] = {}
        read = []
        for kid in kids_now:
            try:
                with kid.oneshot():
                    zombie = kid.status() == psutil.STATUS_ZOMBIE
                    kcpu = _cpu_s(kid.cpu_times())  # a zombie keeps its final times
                    krss = 0 if zombie else int(kid.memory_info().rss)
                    ppid = kid.ppid()
                    born = kid.create_time()
                    cmd = None if zombie else kid.cmdline()
            except psutil.Error:
                continue
            read.append((kid, zombie, kcpu, krss, ppid, born, cmd))
        cmdlines = {k.pid: c for k, _, _, _, _, _, c in read}
        if read:
            cmdlines[self.pid] = self._cmdline(proc)
        for kid, zombie, kcpu, krss, ppid, born, cmd in read:
            direct = ppid == self.pid
            if cmd and cmd == cmdlines.get(ppid):
                # forked but not yet exec'd: it shares its parent's memory (vfork) or copies it on
                # write; its RSS would count the parent's memory once more (seen: 50 agents started
                # at once by the Python reference read as +600 MB for one sample)
                krss = 0
            prev = self._kids.get(kid.pid)
            if prev is not None and prev[0] == kid:  # same pid and create time
                kids_delta += max(0.0, kcpu - prev[1])
            elif born >= self._last_wall - 0.05:  # born inside this window: all its CPU is new
                kids_delta += kcpu
            # else: first seen but older than the window: primed now, counted from the next window
            seen[kid.pid] = (kid, kcpu, direct)
            if not zombie:
                kids_rss += krss
                live += 1
        # Direct children that vanished were reaped by the server: their total CPU lands in the
        # server's children_* counters (read before the listing above, so possibly only in the next
        # sample). What was already counted for them is owed back from those counters.
        for pid, (_, counted, direct) in self._kids.items():
            if direct and pid not in seen:
                self._owed.append((counted, now))
        reaped_delta = max(0.0, reaped - self._reaped_cpu)
        expire = now - max(5 * self.interval, 2.0)
        self._owed = [(c, t) for c, t in self._owed if t >= expire]  # e.g. SIGCHLD ignored: never reaped
        while self._owed and reaped_delta > 0:
            c, t = self._owed[0]
            take = min(c, reaped_delta)
            reaped_delta -= take
            if take < c:
                self._owed[0] = (c - take, t)
            else:
                self._owed.pop(0)
        kids_delta += reaped_delta

        self._kids = seen
        self._server_cpu = server_cpu
        self._reaped_cpu = reaped
        self._last_t = now
        self._last_wall = wall

        cpu = cpu_kids = cpu_machine = cpu_total_machine = None
        if window > 0:
            cpu = 100.0 * server_delta / window
            cpu_kids = 100.0 * kids_delta / window
            cpu_machine = cpu / self._ncpu
            cpu_total_machine = (cpu + cpu_kids) / self._ncpu
        tcp = est = None
        if conns is not None:
            tcp = len(conns)
            est = sum(1 for c in conns if c.status == psutil.CONN_ESTABLISHED)
        return ResourceSample(
            t_s=now - self._t0,
            wall=wall,
            window_s=window,
            rss_bytes=rss,
            uss_bytes=uss,
            pss_bytes=pss,
            cpu_percent=cpu,
            cpu_children_percent=cpu_kids,
            cpu_machine_percent=cpu_machine,
            cpu_total_machine_percent=cpu_total_machine,
            threads=threads,
            open_fds=fds,
            tcp_connections=tcp,
            tcp_established=est,
            children=live,
            children_rss_bytes=kids_rss,
        )


def sample_once(pid: int, *, cpu_window: float = 0.2, full_memory: bool = True) -> dict[str, Any]:
    """One sample of a process tree, as a dict (the fields of :class:`ResourceSample`).

    CPU needs two readings: the counters are primed, then read again after ``cpu_window`` seconds.
    CPU time advances in kernel clock ticks (10 ms), so a 0.2 s window resolves about 5 % of a
    core; ``cpu_window <= 0`` skips the wait and returns ``None`` for the CPU figures. Used for the
    idle points of leak cycles.

    Raises:
        ProcessLookupError: no such process, or it ended during the window.
    """
    sampler = ProcessTreeSampler(pid, interval=max(cpu_window, 0.001), full_memory=full_memory)
    try:
        sampler._proc = psutil.Process(pid)
        sampler._prime()
    except psutil.NoSuchProcess as exc:
        raise ProcessLookupError(f"no process with pid {pid}") from exc
    if cpu_window > 0:
        time.sleep(cpu_window)
    if not sampler._sample_and_store() or not sampler._series.samples:
        raise ProcessLookupError(f"process {pid} ended while being sampled")
    result = sampler._series.samples[-1].to_dict()
    if cpu_window <= 0:
        for key in (
            "cpu_percent",
            "cpu_children_percent",
            "cpu_machine_percent",
            "cpu_total_machine_percent",
        ):
            result[key] = None
    result["memory_basis"] = sampler._series.memory_basis
    result["notes"] = list(sampler._series.notes)
    return result


# -- finding the SUT by its port --------------------------------------------------------------
_WILDCARDS = {"0.0.0.0", "::", ""}


def _host_matches(listen_ip: str, host: str | None) -> bool:
    if host in (None, "", "*"):
        return True
    if listen_ip in _WILDCARDS:
        return True
    ip = listen_ip.removeprefix("::ffff:")
    if ip == host:
        return True
    if host == "localhost":
        return ip in ("127.0.0.1", "::1")
    return False


def _pick(pids: set[int]) -> int | None:
    """Several processes share a listening socket (forked workers): return the topmost one."""
    if not pids:
        return None
    for pid in sorted(pids):
        try:
            if psutil.Process(pid).ppid() not in pids:
                return pid
        except psutil.Error:
            continue
    return min(pids)


def find_pid_by_port(port: int, host: str | None = "127.0.0.1") -> int | None:
    """The pid of the process LISTENing on a TCP ``port`` at ``host``, or ``None``.

    A listener on a wildcard address (``0.0.0.0``, ``::``) matches any host. When psutil cannot
    see the owning pid (another user's process, restricted ``/proc``), it falls back to matching
    the socket inode from ``/proc/net/tcp{,6}`` against ``/proc/<pid>/fd`` links, as far as those
    are readable.

    Args:
        port: TCP port.
        host: the address the server was told to bind; ``None`` or ``"*"`` matches any.
    """
    try:
        conns = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, PermissionError, OSError):
        conns = []
    pids: set[int] = set()
    hidden = False
    for c in conns:
        if c.status != psutil.CONN_LISTEN or not c.laddr or c.laddr.port != port:
            continue
        if not _host_matches(c.laddr.ip, host):
            continue
        if c.pid is None:
            hidden = True
        else:
            pids.add(c.pid)
    if pids:
        return _pick(pids)
    if hidden or not conns:
        return find_pid_by_port_procfs(port, host)
    return None


def _proc_net_listeners(port: int, host: str | None) -> set[int]:
    """Socket inodes LISTENing on ``port`` per /proc/net/tcp and tcp6."""
    inodes: set[int] = set()
    for path, fam in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        try:
            with open(path, encoding="ascii") as fh:
                next(fh, None)
                for line in fh:
                    parts = line.split()
                    if len(parts) < 10 or parts[3] != "0A":  # 0A = TCP_LISTEN
                        continue
                    addr_hex, port_hex = parts[1].split(":")
                    if int(port_hex, 16) != port:
                        continue
                    if not _host_matches(_decode_proc_addr(addr_hex, fam), host):
                        continue
                    inodes.add(int(parts[9]))
        except OSError:
            continue
    return inodes


def _decode_proc_addr(addr_hex: str, fam: int) -> str:
    raw = bytes.fromhex(addr_hex)
    # /proc/net/tcp prints each 32-bit word in host (little-endian here) byte order
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return socket.inet_ntop(fam, words)


def _socket_inodes_of(pid_dir: str) -> Iterator[int]:
    try:
        names = os.listdir(os.path.join(pid_dir, "fd"))
    except OSError:
        return
    for name in names:
        try:
            target = os.readlink(os.path.join(pid_dir, "fd", name))
        except OSError:
            continue
        if target.startswith("socket:["):
            yield int(target[8:-1])


def find_pid_by_port_procfs(port: int, host: str | None = "127.0.0.1") -> int | None:
    """:func:`find_pid_by_port` through ``/proc`` only (Linux): inode of the listening socket,
    then the process holding an fd on it. Processes whose fds are unreadable are skipped."""
    inodes = _proc_net_listeners(port, host)
    if not inodes:
        return None
    pids: set[int] = set()
    for pid_dir in glob.glob("/proc/[0-9]*"):
        if any(inode in inodes for inode in _socket_inodes_of(pid_dir)):
            pids.add(int(os.path.basename(pid_dir)))
    return _pick(pids)
