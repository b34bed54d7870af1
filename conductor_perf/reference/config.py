"""Settings of the embedded reference conductor: the real config file keys, then command-line flags.

The YAML file uses conductor-loop's own keys (docs/real-server.md) so one file can drive both
servers::

    agents:
      codex:
        type: codex
    defaults:
      max_concurrent_runs: 4
    api:
      api_key: secret          # honoured when auth_enabled is true (as in the real server)
      auth_enabled: true
      cors_origins: ["*"]
      sse:
        heartbeat_interval_s: 1
        max_clients_per_run: 2000
    reference:                  # keys only the reference reads (the real server ignores them)
      restart_delay_s: 1.0
      max_restarts: 100
      stub_path: true           # prepend conductor_perf/reference/stub to the agents' PATH
      agent_path: []            # more directories to prepend
      version: 0.76.0-reference
      fallback_poll_interval_ms: 25
      max_queued_events: 100000
      agent_env: current        # agent environment names: current (JRUN_*), legacy, early
      slowdown_us: 0            # CPU work (busy loop) added to every API request: a known slowdown

Flags override the file; the file overrides the defaults below. Unknown keys are ignored, like
yaml.v3's non-strict decoding.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..formats import agentenv

STUB_DIR = Path(__file__).resolve().parent / "stub"
"""Directory of the stub ``codex`` agent shipped with the package."""

DEFAULT_VERSION = "0.76.0-reference"
CLI_AGENT_TYPES = ("codex", "claude", "gemini")
REST_AGENT_TYPES = ("perplexity", "xai")


class ConfigError(ValueError):
    """The config file or a flag value is invalid."""


@dataclass(slots=True)
class AgentConfig:
    """One entry of ``agents``."""

    name: str
    type: str  # noqa: A003
    token: str = ""
    model: str = ""
    base_url: str = ""


@dataclass
class ReferenceConfig:
    """Everything the reference conductor needs; build with :func:`load_config` or directly in tests."""

    root: Path
    host: str = "127.0.0.1"
    port: int = 0
    api_key: str = ""
    start_tasks: bool = True
    agents: dict[str, AgentConfig] = field(
        default_factory=lambda: {"codex": AgentConfig(name="codex", type="codex")}
    )
    max_concurrent_runs: int = 0
    heartbeat_interval_s: float = 30.0
    max_clients_per_run: int = 2000
    discovery_interval_ms: int = 1000
    cors_origins: list[str] = field(default_factory=list)
    restart_delay_s: float = 1.0
    max_restarts: int = 100
    stub_path: bool = True
    agent_path: list[str] = field(default_factory=list)
    version: str = DEFAULT_VERSION
    fallback_poll_interval_ms: int = 25
    max_queued_events: int = 100_000
    log_file: Path | None = None
    config_path: Path | None = None
    audit_fsync: bool = True
    file_helper: bool = True  # task-creation file work in a helper process (filehelper.py)
    agent_env: str = agentenv.CURRENT  # which build's agent environment names (formats/agentenv.py)
    slowdown_us: int = 0  # microseconds of CPU work added to every /api/ request (a known slowdown)

    def __post_init__(self) -> None:
        self.root = Path(os.path.abspath(os.path.expanduser(str(self.root))))
        if self.heartbeat_interval_s <= 0:
            self.heartbeat_interval_s = 30.0
        if self.max_clients_per_run <= 0:
            self.max_clients_per_run = 2000
        if self.max_restarts < 0:
            raise ConfigError("max_restarts must not be negative")
        if self.restart_delay_s < 0:
            raise ConfigError("restart_delay_s must not be negative")
        try:
            agentenv.check_style(self.agent_env)
        except agentenv.AgentEnvError as exc:
            raise ConfigError(str(exc)) from None
        if self.slowdown_us < 0:
            raise ConfigError(f"slowdown_us (--slowdown-us) must not be negative, got {self.slowdown_us}")

    def agent_search_path(self, base_path: str | None = None) -> str:
        """The PATH agents are resolved on and run with: prepended dirs, then the server's PATH."""
        dirs = [*self.agent_path]
        if self.stub_path:
            dirs.append(str(STUB_DIR))
        base = os.environ.get("PATH", os.defpath) if base_path is None else base_path
        parts = [d for d in dirs if d]
        return os.pathsep.join([*parts, base]) if base else os.pathsep.join(parts)

    @property
    def configured_agents(self) -> list[str]:
        """Sorted agent names (``/api/v1/status``)."""
        return sorted(self.agents)


def _section(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def _num(value: Any, kind: type, key: str) -> Any:
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"config key {key}: expected a number, got {value!r}") from None


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Parse the YAML config file into a dict (``{}`` for an empty file)."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML in {path}: {str(exc).splitlines()[0]}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} is not a YAML mapping")
    return data


def config_from_dict(data: dict[str, Any], *, root: str | os.PathLike[str] | None,
                     config_path: Path | None = None) -> ReferenceConfig:  # fmt: skip
    """Build a :class:`ReferenceConfig` from parsed YAML (real keys plus the ``reference`` section)."""
    storage = _section(data, "storage")
    if root is None:
        runs_dir = storage.get("runs_dir")
        if runs_dir:
            base = config_path.parent if config_path else Path.cwd()
            root = base / str(runs_dir)
        else:
            root = Path.home() / ".run-agent" / "runs"
    cfg = ReferenceConfig(root=Path(root), config_path=config_path)

    agents_raw = data.get("agents")
    if isinstance(agents_raw, dict) and agents_raw:
        agents: dict[str, AgentConfig] = {}
        for name, spec in agents_raw.items():
            spec = spec if isinstance(spec, dict) else {}
            agent_type = str(spec.get("type") or name).strip().lower()
            if agent_type not in CLI_AGENT_TYPES + REST_AGENT_TYPES:
                raise ConfigError(f"agent {name!r}: unknown type {agent_type!r}")
            agents[str(name)] = AgentConfig(name=str(name), type=agent_type, token=str(spec.get("token") or ""),
                                            model=str(spec.get("model") or ""),
                                            base_url=str(spec.get("base_url") or ""))  # fmt: skip
        cfg.agents = agents

    defaults = _section(data, "defaults")
    if "max_concurrent_runs" in defaults:
        cfg.max_concurrent_runs = max(0, _num(defaults["max_concurrent_runs"], int, "defaults.max_concurrent_runs"))

    api = _section(data, "api")
    if api.get("auth_enabled") and api.get("api_key"):
        cfg.api_key = str(api["api_key"])
    if isinstance(api.get("cors_origins"), list):
        cfg.cors_origins = [str(o) for o in api["cors_origins"]]
    sse = _section(api, "sse")
    if sse.get("heartbeat_interval_s"):
        cfg.heartbeat_interval_s = _num(sse["heartbeat_interval_s"], float, "api.sse.heartbeat_interval_s")
    if sse.get("max_clients_per_run"):
        cfg.max_clients_per_run = _num(sse["max_clients_per_run"], int, "api.sse.max_clients_per_run")
    if sse.get("discovery_interval_ms"):
        cfg.discovery_interval_ms = _num(sse["discovery_interval_ms"], int, "api.sse.discovery_interval_ms")

    ref = _section(data, "reference")
    for key, kind in (("restart_delay_s", float), ("max_restarts", int), ("fallback_poll_interval_ms", int),
                      ("max_queued_events", int), ("slowdown_us", int)):  # fmt: skip
        if key in ref:
            setattr(cfg, key, _num(ref[key], kind, f"reference.{key}"))
    if "stub_path" in ref:
        cfg.stub_path = bool(ref["stub_path"])
    if isinstance(ref.get("agent_path"), list):
        cfg.agent_path = [str(p) for p in ref["agent_path"]]
    if ref.get("version"):
        cfg.version = str(ref["version"])
    if ref.get("agent_env"):
        cfg.agent_env = str(ref["agent_env"]).strip()
    if "audit_fsync" in ref:
        cfg.audit_fsync = bool(ref["audit_fsync"])
    cfg.__post_init__()
    return cfg


def load_config(path: str | os.PathLike[str] | None, *, root: str | os.PathLike[str] | None = None) -> ReferenceConfig:
    """Read the config file (if any) into a :class:`ReferenceConfig`; ``root`` overrides ``storage.runs_dir``."""
    if path is None:
        return config_from_dict({}, root=root)
    p = Path(path).resolve()
    return config_from_dict(read_config_file(p), root=root, config_path=p)
