"""The reference's ``--slowdown-us N``: N microseconds of CPU work on every API request, nothing else.

No timing assert depends on the machine: the busy loop runs on the thread's CPU clock until it has
used N microseconds, so "at least N" holds on a quiet and a busy machine alike; which requests pay
it is checked by counting the calls.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from conductor_perf.reference import app as app_module
from conductor_perf.reference.__main__ import build_parser, config_from_args
from conductor_perf.reference.config import ConfigError, ReferenceConfig, load_config
from conductor_perf.reference.testing import ServerThread


def test_burn_uses_at_least_the_asked_cpu_time_of_its_thread():
    before = time.thread_time_ns()
    used = app_module.burn_cpu(3000)
    spent = time.thread_time_ns() - before
    assert used >= 3_000_000 and spent >= 3_000_000  # CPU time of this thread, not wall time
    assert app_module.burn_cpu(0) == 0


def test_every_api_request_pays_the_slowdown_and_nothing_else(tmp_path, monkeypatch):
    calls: list[int] = []
    monkeypatch.setattr(app_module, "burn_cpu", calls.append)
    with ServerThread(ReferenceConfig(root=tmp_path / "root", slowdown_us=40)) as srv:
        for path in ("api/v1/health", "api/v1/tasks", "api/v1/version", "api/v1/nope"):
            httpx.get(srv.url + path, timeout=10)
        assert calls == [40, 40, 40, 40]
        for path in ("healthz", "metrics", "", "ui/"):
            httpx.get(srv.url + path, timeout=10)
        assert calls == [40, 40, 40, 40]  # not the UI, /healthz or /metrics


def test_no_slowdown_by_default(tmp_path, monkeypatch):
    calls: list[int] = []
    monkeypatch.setattr(app_module, "burn_cpu", calls.append)
    with ServerThread(ReferenceConfig(root=tmp_path / "root")) as srv:
        assert httpx.get(srv.url + "api/v1/health", timeout=10).status_code == 200
    assert calls == []


def test_flag_and_config_key(tmp_path: Path):
    args = build_parser().parse_args(["--root", str(tmp_path), "--slowdown-us", "250"])
    assert config_from_args(args).slowdown_us == 250
    config = tmp_path / "c.yaml"
    config.write_text("reference:\n  slowdown_us: 75\n")
    assert load_config(config, root=tmp_path).slowdown_us == 75
    with pytest.raises(ConfigError, match="must not be negative"):
        config_from_args(build_parser().parse_args(["--root", str(tmp_path), "--slowdown-us", "-1"]))


def test_help_documents_the_flag():
    out = subprocess.run([sys.executable, "-m", "conductor_perf.reference", "--help"], capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0
    assert "--slowdown-us N" in out.stdout and "busy loop, not a sleep" in " ".join(out.stdout.split())


def test_negative_flag_is_one_line_and_exit_2(tmp_path):
    out = subprocess.run([sys.executable, "-m", "conductor_perf.reference", "--root", str(tmp_path),
                          "--slowdown-us", "-5"], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == ["conductor reference: slowdown_us (--slowdown-us) must not be "
                                               "negative, got -5"]  # fmt: skip
