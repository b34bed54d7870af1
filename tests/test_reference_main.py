"""``python -m conductor_perf.reference``: URL on the first stdout line, config file, clean SIGTERM."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from conductor_perf.formats import runs
from conductor_perf.reference.__main__ import build_parser, config_from_args
from conductor_perf.reference.config import ConfigError, load_config


def start(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "conductor_perf.reference", "--root", str(tmp_path / "root"), "--port", "0",
           "--log-file", str(tmp_path / "server.log"), *extra]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    buf = b""
    deadline = time.monotonic() + 20
    while b"\n" not in buf:
        assert time.monotonic() < deadline and sel.select(max(0.01, deadline - time.monotonic())), "no URL"
        chunk = os.read(proc.stdout.fileno(), 4096)
        assert chunk, proc.stderr.read().decode()
        buf += chunk
    sel.close()
    return proc, buf.split(b"\n", 1)[0].decode()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie child of ours is not alive
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def test_prints_url_and_sigterm_stops_agents_and_exits_0(tmp_path: Path) -> None:
    proc, url = start(tmp_path, "--heartbeat-interval", "1")
    try:
        assert url.startswith("http://127.0.0.1:") and url.endswith("/")
        assert httpx.get(url + "api/v1/health", timeout=10).json() == {"status": "ok"}
        resp = httpx.post(url + "api/v1/tasks", timeout=10, json={
            "project_id": "proj-m", "task_id": "task-20260101-000000-main", "agent_type": "codex",
            "prompt": "sleep", "config": {"STUB_SLEEP_MS": "60000"}})  # fmt: skip
        run_id = resp.json()["run_id"]
        info_path = runs.run_dir(tmp_path / "root", "proj-m", "task-20260101-000000-main", run_id) / "run-info.yaml"
        deadline = time.monotonic() + 20
        while not info_path.exists():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        pid = runs.read_run_info(info_path).pid
        assert alive(pid)
        stream = httpx.Client(timeout=10)
        with stream.stream("GET", url + f"api/v1/runs/{run_id}/stream") as sse:
            assert sse.status_code == 200
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=40) == 0
            assert time.monotonic() - started < 40  # the agent would sleep 60 s: the server did not wait for it
            assert b"event: status" in b"".join(sse.iter_raw())  # the stream ended cleanly
        deadline = time.monotonic() + 5
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not alive(pid)
        assert runs.read_run_info(info_path).status == "failed"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_config_file_keys_and_flag_precedence(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "agents:\n  codex:\n    type: codex\n  mine:\n    type: claude\n"
        "defaults:\n  max_concurrent_runs: 3\n"
        "api:\n  auth_enabled: true\n  api_key: from-file\n  sse:\n    heartbeat_interval_s: 5\n"
        "    max_clients_per_run: 50\n"
        "reference:\n  restart_delay_s: 0.5\n  version: test-version\n"
    )
    cfg = load_config(config, root=tmp_path / "r")
    assert (cfg.max_concurrent_runs, cfg.api_key, cfg.heartbeat_interval_s) == (3, "from-file", 5.0)
    assert (cfg.max_clients_per_run, cfg.restart_delay_s, cfg.version) == (50, 0.5, "test-version")
    assert cfg.configured_agents == ["codex", "mine"] and cfg.agents["mine"].type == "claude"
    args = build_parser().parse_args(["--config", str(config), "--root", str(tmp_path / "r"), "--api-key", "k2",
                                      "--max-clients-per-run", "7", "--heartbeat-interval", "0.5"])  # fmt: skip
    cfg = config_from_args(args)
    assert (cfg.api_key, cfg.max_clients_per_run, cfg.heartbeat_interval_s, cfg.host) == ("k2", 7, 0.5, "127.0.0.1")
    bad = tmp_path / "bad.yaml"
    bad.write_text("agents:\n  x:\n    type: nope\n")
    with pytest.raises(ConfigError):
        load_config(bad, root=tmp_path)


def test_agent_env_flag_environment_and_config_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = ["--root", str(tmp_path / "r")]
    assert config_from_args(build_parser().parse_args(root)).agent_env == "current"
    assert config_from_args(build_parser().parse_args([*root, "--agent-env", "legacy"])).agent_env == "legacy"
    monkeypatch.setenv("CONDUCTOR_AGENT_ENV", "early")
    assert config_from_args(build_parser().parse_args(root)).agent_env == "early"
    assert config_from_args(build_parser().parse_args([*root, "--agent-env", "current"])).agent_env == "current"
    monkeypatch.setenv("CONDUCTOR_AGENT_ENV", "ancient")
    with pytest.raises(ConfigError, match="unknown agent environment 'ancient': use one of current, legacy, early"):
        config_from_args(build_parser().parse_args(root))
    config = tmp_path / "config.yaml"
    config.write_text("reference:\n  agent_env: legacy\n")
    assert load_config(config, root=tmp_path).agent_env == "legacy"
    with pytest.raises(SystemExit):
        build_parser().parse_args([*root, "--agent-env", "nope"])


def test_help_documents_agent_env() -> None:
    out = subprocess.run([sys.executable, "-m", "conductor_perf.reference", "--help"], capture_output=True,
                         text=True, timeout=30, check=True)  # fmt: skip
    text = " ".join(out.stdout.split())
    assert "--agent-env {current,legacy,early}" in text and "TASK_FOLDER, RUN_FOLDER, MESSAGE_BUS" in text


def test_busy_port_exits_non_zero(tmp_path: Path) -> None:
    proc, url = start(tmp_path)
    try:
        port = url.rsplit(":", 1)[1].rstrip("/")
        other = subprocess.run([sys.executable, "-m", "conductor_perf.reference", "--root", str(tmp_path / "r2"),
                                "--port", port], capture_output=True, timeout=30)  # fmt: skip
        assert other.returncode == 1
        assert b"cannot listen" in other.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0


def test_speaks_run_agents_command_line(tmp_path: Path) -> None:
    version = subprocess.run([sys.executable, "-m", "conductor_perf.reference", "--version"], capture_output=True,
                             text=True, timeout=60)  # fmt: skip
    assert version.returncode == 0 and version.stdout.startswith("run-agent 0.76.0-reference")
    config = tmp_path / "conductor.yaml"
    config.write_text("agents:\n  codex:\n    type: codex\napi:\n  sse:\n    max_clients_per_run: 200\n")
    proc, url = start(tmp_path, "--config", str(config))  # the flags alone, as before
    proc.terminate()
    assert proc.wait(timeout=20) == 0
    cmd = [sys.executable, "-m", "conductor_perf.reference", "serve", "--config", str(config), "--root",
           str(tmp_path / "root2"), "--host", "127.0.0.1", "--port", "0", "--api-key", "k"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        line = proc.stdout.readline().decode().strip()
        assert line.startswith("http://127.0.0.1:")
        assert httpx.get(line + "api/v1/tasks", timeout=10).status_code == 401
        assert httpx.get(line + "api/v1/tasks", timeout=10, headers={"X-API-Key": "k"}).status_code == 200
    finally:
        proc.terminate()
        assert proc.wait(timeout=20) == 0
    args = build_parser().parse_args(["--config", str(config), "--root", str(tmp_path / "r")])
    assert config_from_args(args).max_clients_per_run == 200
