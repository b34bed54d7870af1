"""Reference conductor API-key auth: the real 401 shape, Bearer and X-API-Key, exempt routes, OPTIONS."""

from __future__ import annotations

import httpx
import pytest

from conductor_perf.reference.config import ReferenceConfig
from conductor_perf.reference.testing import ServerThread

KEY = "s3cret-key"
UNAUTHORIZED = '{"error":"unauthorized","message":"valid API key required"}'


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("auth")
    cfg = ReferenceConfig(root=root / "root", api_key=KEY, cors_origins=["*"], log_file=root / "log")
    with ServerThread(cfg) as s:
        yield s


@pytest.fixture(scope="module")
def client(srv: ServerThread):
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        yield c


@pytest.mark.parametrize("path", ["api/v1/status", "api/v1/runs", "api/v1/tasks", "api/v1/runs/x/stream",
                                  "api/v1/messages/stream?project_id=p", "nope", ""])  # fmt: skip
def test_missing_key_is_401_with_real_shape(client: httpx.Client, path: str) -> None:
    resp = client.get(path)
    assert resp.status_code == 401
    assert resp.text == UNAUTHORIZED
    assert resp.headers["WWW-Authenticate"] == 'Bearer realm="conductor"'
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.headers["X-Request-ID"].startswith("req-")


def test_wrong_key_and_wrong_scheme_are_401(client: httpx.Client) -> None:
    assert client.get("api/v1/status", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("api/v1/status", headers={"Authorization": f"Basic {KEY}"}).status_code == 401
    assert client.get("api/v1/status", headers={"X-API-Key": "nope"}).status_code == 401
    assert client.post("api/v1/messages", json={"project_id": "p", "body": "x"}).status_code == 401


def test_bearer_and_x_api_key_are_accepted(client: httpx.Client) -> None:
    assert client.get("api/v1/status", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    assert client.get("api/v1/status", headers={"X-API-Key": KEY}).status_code == 200
    with client.stream("GET", "api/v1/messages/stream?project_id=p", headers={"X-API-Key": KEY}) as resp:
        assert resp.status_code == 200


@pytest.mark.parametrize("path", ["api/v1/health", "api/v1/version", "metrics", "healthz"])
def test_exempt_routes(client: httpx.Client, path: str) -> None:
    assert client.get(path).status_code == 200


def test_options_is_204_before_auth_with_cors(client: httpx.Client) -> None:
    resp = client.options("api/v1/tasks", headers={"Origin": "http://ui.example"})
    assert resp.status_code == 204
    assert resp.content == b""
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert resp.headers["Access-Control-Expose-Headers"] == "X-Request-ID"
