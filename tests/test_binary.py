"""The managed binary SUT: start, health, identity, kill/restart, keyed instance, stop, bad input.

The reference's wrapper ``conductor_perf/reference/bin/reference-run-agent`` stands in for a
conductor-loop build (no Go toolchain needed); the same checks run against a real ``run-agent``
when one is at ``../shared/bin/run-agent`` beside the repository or named by ``CONDUCTOR_BINARY``
(skipped, with that reason, otherwise). Small shell scripts play the binaries that misbehave.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from conductor_perf import faults
from conductor_perf.binary import (
    DEFAULT_CONFIG,
    LOG_NAME,
    binary_identity,
    merged_config,
    parse_config_overrides,
    rejected_flag,
    resolve_binary,
    server_command,
    server_environment,
    start_binary,
)
from conductor_perf.reference.config import STUB_DIR
from conductor_perf.target import BINARY, GO, SCRIPT, Target, TargetError, http_json

REPO = Path(__file__).resolve().parent.parent
WRAPPER = REPO / "conductor_perf" / "reference" / "bin" / "reference-run-agent"
SHARED_BINARY = REPO.parent / "shared" / "bin" / "run-agent"


def _real_binary() -> Path | None:
    named = os.environ.get("CONDUCTOR_BINARY", "")
    candidate = Path(named) if named else SHARED_BINARY
    return candidate if candidate.is_file() and os.access(candidate, os.X_OK) else None


def _binaries() -> list:
    real = _real_binary()
    return [
        pytest.param(WRAPPER, id="reference-wrapper"),
        pytest.param(
            real or SHARED_BINARY,
            id="real-run-agent",
            marks=pytest.mark.skipif(
                real is None,
                reason="no conductor-loop build: ../shared/bin/run-agent is absent and CONDUCTOR_BINARY is not set",
            ),
        ),
    ]


@pytest.fixture(autouse=True)
def _wrapper_python(monkeypatch: pytest.MonkeyPatch) -> None:
    # the wrapper runs this interpreter (the venv under test), wherever the venv lives
    monkeypatch.setenv("CONDUCTOR_PERF_PYTHON", sys.executable)


def _tree(pid: int) -> list[psutil.Process]:
    try:
        parent = psutil.Process(pid)
        return [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _gone(procs: list[psutil.Process], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in procs):
            return True
        time.sleep(0.05)
    return False


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# ------------------------------------------------------------------------------ lifecycle


@pytest.mark.parametrize("binary", _binaries())
def test_a_managed_binary_starts_restarts_takes_a_key_and_stops_without_leftovers(binary: Path, tmp_path: Path) -> None:
    target = start_binary(binary, sut_dir=tmp_path / "sut")
    started: list[Target] = [target]
    try:
        # started the documented way, healthy, identified
        assert target.kind == BINARY and target.url.startswith("http://127.0.0.1:")
        assert http_json(target.endpoint("/api/v1/health"))[0] == 200
        assert target.root == (tmp_path / "sut" / "root").resolve() and target.root.is_dir()
        assert target.binary == binary.absolute()
        assert target.binary_sha256 == hashlib.sha256(binary.read_bytes()).hexdigest()
        version_line = subprocess.run([str(binary), "--version"], capture_output=True, text=True,
                                      env={**os.environ, "HOME": str(tmp_path)}, timeout=30).stdout.splitlines()[0]  # fmt: skip
        assert target.binary_version == version_line.strip() and version_line.startswith("run-agent ")
        assert target.version not in ("", "unknown")  # from GET /api/v1/version
        record = target.describe()
        assert record["binary"] == str(binary.absolute()) and record["binary_sha256"] == target.binary_sha256
        assert record["binary_version"] == target.binary_version
        assert (target.can_restart, target.auth, target.pid is not None) == (True, True, True)
        config = yaml.safe_load((tmp_path / "sut" / "conductor.yaml").read_text())
        assert config == DEFAULT_CONFIG
        cmdline = psutil.Process(target.pid).cmdline()
        assert cmdline[-8:] == ["--config", str(tmp_path / "sut" / "conductor.yaml"), "--root", str(target.root),
                                "--host", "127.0.0.1", "--port", str(target.port)]  # fmt: skip
        env = psutil.Process(target.pid).environ()
        assert env["PATH"].split(os.pathsep)[0] == str(STUB_DIR) and env["HOME"] == str(tmp_path / "sut" / "home")
        assert os.getpgid(target.pid) == target.pid  # its own process group

        # kill and restart on the same root and port
        (target.root / "marker").write_text("kept")
        old_tree = _tree(target.pid)
        faults.kill_sut(target)
        assert faults.is_down(target) and "was killed by SIGKILL" in (faults.down_reason(target) or "")
        fresh = faults.restart_sut(target)
        started.append(fresh)
        assert fresh.pid != target.pid and fresh.port == target.port and fresh.root == target.root
        assert (fresh.root / "marker").read_text() == "kept"
        assert http_json(fresh.endpoint("/api/v1/health"))[0] == 200
        assert fresh.binary_sha256 == target.binary_sha256 and fresh.binary_version == target.binary_version
        assert _gone(old_tree)

        # a second instance with an API key: protected routes need it, health does not
        keyed = fresh.start_another(root=tmp_path / "auth" / "root", log_dir=tmp_path / "auth", api_key="k3y-perf",
                                    extra_args=["--disable-task-start"])  # fmt: skip
        started.append(keyed)
        assert keyed.port != fresh.port and keyed.root == (tmp_path / "auth" / "root").resolve()
        assert psutil.Process(keyed.pid).cmdline()[-3:] == ["--api-key", "k3y-perf", "--disable-task-start"]
        assert "--disable-task-start" not in psutil.Process(fresh.pid).cmdline()  # for that instance only
        assert http_json(keyed.endpoint("/api/v1/tasks"))[0] == 401
        assert http_json(keyed.endpoint("/api/v1/tasks"), headers=keyed.auth_headers())[0] == 200
        assert http_json(keyed.endpoint("/api/v1/health"))[0] == 200
        assert http_json(fresh.endpoint("/api/v1/tasks"))[0] == 200  # the SUT itself stays open

        # stop: nothing of either instance is left
        trees = _tree(fresh.pid) + _tree(keyed.pid)
        for t in (keyed, fresh):
            t.stop()
        assert _gone(trees)
        log = (tmp_path / "sut" / LOG_NAME).read_text(errors="replace")
        assert log.count("--- conductor-perf ") == 2  # the first start and the restart, in one log
    finally:
        for t in started:
            t.stop()


def test_the_reference_wrapper_is_a_script_without_profiler_or_goroutines(tmp_path: Path) -> None:
    sha, fmt = binary_identity(WRAPPER)
    assert fmt == SCRIPT and sha == hashlib.sha256(WRAPPER.read_bytes()).hexdigest()
    target = Target(kind=BINARY, url="http://127.0.0.1:1/", binary=WRAPPER, binary_format=fmt)
    assert target.profiler is None and target.goroutines is None
    assert "is not a native executable" in (target.capability_gap("profiler") or "")
    assert "is not a Go executable" in (target.capability_gap("goroutines") or "")


@pytest.mark.skipif(_real_binary() is None,
                    reason="no conductor-loop build: ../shared/bin/run-agent is absent and CONDUCTOR_BINARY is not set")  # fmt: skip
def test_a_go_build_is_recognised_for_perf_and_sigquit() -> None:
    real = _real_binary()
    assert real is not None
    _, fmt = binary_identity(real)
    assert fmt == GO
    target = Target(kind=BINARY, url="http://127.0.0.1:1/", binary=real, binary_format=fmt)
    assert (target.profiler, target.goroutines) == ("perf", "sigquit")
    assert target.capability_gap("profiler") is None and target.capability_gap("goroutines") is None


def test_capabilities_of_each_kind_and_the_reasons_when_missing() -> None:
    external = Target(kind="external", url="http://127.0.0.1:9/")
    assert external.capabilities() == {"can_restart": False, "pid": False, "auth": False, "profiler": None,
                                       "goroutines": None}  # fmt: skip
    for name in ("can_restart", "pid", "auth", "profiler", "goroutines"):
        gap = external.capability_gap(name)
        assert gap is not None and gap.startswith(f"the SUT lacks the capability '{name}'") and "\n" not in gap
    assert "attached by URL" in (external.capability_gap("can_restart") or "")
    embedded = Target(kind="embedded", url="http://127.0.0.1:9/", pid=1, root=Path("/tmp"))
    assert (embedded.profiler, embedded.goroutines) == ("scalene", "tasks")
    assert not embedded.can_restart  # no launch: the suite does not know how to start it again
    assert "does not know how to start this embedded conductor again" in (embedded.capability_gap("auth") or "")
    with pytest.raises(ValueError, match="unknown capability 'embedded'"):
        embedded.capability_gap("embedded")


# ------------------------------------------------------------------------------ inputs


def test_config_overrides_merge_into_the_generated_config() -> None:
    overrides = parse_config_overrides(["api.sse.max_clients_per_run=500", "api.sse.poll_interval_ms=100",
                                        "defaults.max_concurrent_runs=8", "api.cors_origins=[a, b]",
                                        "storage.note=two words"])  # fmt: skip
    config = merged_config(overrides)
    assert config["api"]["sse"] == {"heartbeat_interval_s": 1, "max_clients_per_run": 500, "poll_interval_ms": 100}
    assert config["defaults"] == {"timeout": 300, "max_concurrent_runs": 8}
    assert config["api"]["cors_origins"] == ["a", "b"] and config["storage"]["note"] == "two words"
    assert config["agents"] == {"codex": {"type": "codex"}}
    assert DEFAULT_CONFIG["api"]["sse"]["max_clients_per_run"] == 200  # the default is not changed
    for bad in ("no-equals-sign", "=5", "api..sse=1", "api.sse max=1"):
        with pytest.raises(TargetError, match="must look like api.sse.max_clients_per_run=200"):
            parse_config_overrides([bad])


def test_the_binary_gets_its_flags_and_a_clean_environment(tmp_path: Path) -> None:
    cmd = server_command(Path("/x/run-agent"), config=tmp_path / "c.yaml", root=tmp_path / "r", port=4321,
                         api_key="k", extra_args=["--watchdog-interval", "60s"])  # fmt: skip
    assert cmd == ["/x/run-agent", "serve", "--config", str(tmp_path / "c.yaml"), "--root", str(tmp_path / "r"),
                   "--host", "127.0.0.1", "--port", "4321", "--api-key", "k", "--watchdog-interval", "60s"]  # fmt: skip
    env = server_environment(tmp_path / "home", {"PATH": "/usr/bin", "CONDUCTOR_API_KEY": "leak",
                                                 "CONDUCTOR_ROOT": "/elsewhere", "CONDUCTOR_AGENT_CODEX_TOKEN": "t",
                                                 "LANG": "C"})  # fmt: skip
    assert env == {"PATH": f"{STUB_DIR}{os.pathsep}/usr/bin", "HOME": str(tmp_path / "home"), "LANG": "C"}
    go = server_environment(tmp_path / "home", {"PATH": "/usr/bin", "GODEBUG": "madvdontneed=1"}, go=True)
    assert go["GODEBUG"] == "madvdontneed=1,schedtrace=1000,scheddetail=1"  # the scheduler trace, after ours
    assert server_environment(tmp_path / "home", {"PATH": "/usr/bin"}, go=True)["GODEBUG"] == "schedtrace=1000,scheddetail=1"


def test_rejected_flags_are_found_in_cobra_argparse_and_go_messages() -> None:
    assert rejected_flag("Error: unknown flag: --root\nUsage: ...") == "--root"
    assert rejected_flag("Error: unknown shorthand flag: 'x' in -x") == "-x"
    assert rejected_flag("prog: error: unrecognized arguments: --bogus 1") == "--bogus"
    assert rejected_flag("flag provided but not defined: -config") == "-config"
    assert rejected_flag("listen tcp: address already in use") is None


# ------------------------------------------------------------------------------ bad input


def _script(path: Path, body: str, *, executable: bool = True) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755 if executable else 0o644)
    return path


VERSION_OK = 'if [ "$1" = "--version" ]; then echo "run-agent 9.9.9-fake"; exit 0; fi\n'


def test_a_path_that_is_missing_or_not_executable_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(TargetError) as err:
        start_binary(tmp_path / "nowhere" / "run-agent", sut_dir=tmp_path / "sut")
    assert str(err.value) == f"conductor binary {tmp_path / 'nowhere' / 'run-agent'} does not exist"
    plain = _script(tmp_path / "run-agent", VERSION_OK, executable=False)
    with pytest.raises(TargetError, match=f"conductor binary {plain} is not an executable file$"):
        start_binary(plain, sut_dir=tmp_path / "sut")
    with pytest.raises(TargetError, match="is not an executable file"):
        resolve_binary(tmp_path)  # a directory
    with pytest.raises(TargetError, match="not found on PATH"):
        resolve_binary("no-such-run-agent-anywhere")


def test_a_binary_that_exits_at_start_names_its_status_and_log_and_leaves_nothing(tmp_path: Path) -> None:
    # it leaves a child in its process group behind, as a crashing server might
    binary = _script(tmp_path / "run-agent", VERSION_OK + f"sleep 300 & echo $! > {tmp_path}/child.pid\n"
                     "echo 'loading config'\necho 'fatal: cannot open the runs root' >&2\nexit 3\n")  # fmt: skip
    with pytest.raises(TargetError) as err:
        start_binary(binary, sut_dir=tmp_path / "sut", start_timeout=20)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"conductor binary {binary} exited with status 3 during start-up; ")
    assert "last log lines: loading config | fatal: cannot open the runs root" in message
    assert str(tmp_path / "sut" / LOG_NAME) in message
    child = int((tmp_path / "child.pid").read_text())
    assert _gone([psutil.Process(child)] if _alive(child) else [])


def test_a_binary_that_never_answers_health_is_stopped_at_the_timeout(tmp_path: Path) -> None:
    binary = _script(tmp_path / "run-agent", VERSION_OK + f"echo $$ > {tmp_path}/server.pid\n"
                     "echo 'waiting for something that never comes'\nexec sleep 300\n")  # fmt: skip
    started = time.monotonic()
    with pytest.raises(TargetError) as err:
        start_binary(binary, sut_dir=tmp_path / "sut", start_timeout=2)
    assert time.monotonic() - started < 60  # bounded by the timeout, not by the 300 s sleep
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"conductor binary {binary} did not answer GET /api/v1/health within 2 s (")
    assert "; the suite stopped it (it was killed by SIGTERM); " in message
    assert "last log lines: waiting for something that never comes" in message
    assert not _alive(int((tmp_path / "server.pid").read_text()))


def test_a_binary_that_rejects_a_flag_names_the_flag(tmp_path: Path) -> None:
    # a cobra-like parser that knows no --root
    binary = _script(tmp_path / "run-agent", VERSION_OK + 'for a in "$@"; do if [ "$a" = "--root" ]; then\n'
                     '  echo "Error: unknown flag: --root" >&2; echo "Usage: run-agent serve [flags]"; exit 1\n'
                     "fi; done\nexec sleep 300\n")  # fmt: skip
    with pytest.raises(TargetError) as err:
        start_binary(binary, sut_dir=tmp_path / "sut", start_timeout=20)
    message = str(err.value)
    assert message.startswith(f"conductor binary {binary} exited with status 1 during start-up "
                              "(it rejected the flag --root); last log lines: ")  # fmt: skip
    assert "Error: unknown flag: --root" in message and "\n" not in message


def test_a_binary_that_fails_on_version_is_one_line(tmp_path: Path) -> None:
    binary = _script(tmp_path / "run-agent", 'echo "Error: unknown flag: --version" >&2\nexit 1\n')
    with pytest.raises(TargetError) as err:
        start_binary(binary, sut_dir=tmp_path / "sut")
    assert str(err.value) == (f"conductor binary {binary} failed on --version: it exited with status 1 "
                              "(it rejected the flag --version); last output: Error: unknown flag: --version")  # fmt: skip
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"\x00\x01 not a program")
    garbage.chmod(0o755)
    with pytest.raises(TargetError, match=f"conductor binary {garbage} cannot be executed: "):
        start_binary(garbage, sut_dir=tmp_path / "sut2")
