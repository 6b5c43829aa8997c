"""Issue 10, item 7: secrets never leave in clear.

From the code review of a5a60c6: `/v1/admin/config` (and `cozy config check`, the same function)
redacted by key name only, so an ICE server's `credential`, MCP `args`/`env` and credentials inside
URLs showed in clear; the public `/ready` returned exception text with hostnames. Here a server's
configuration carries each kind of secret (from the environment, as the loader requires), and
neither the admin view nor the CLI shows one; `/ready` shows the public only status and `ok`s.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.reliability.conftest import ADMIN_KEY, CozyServer, start_cozy_server
from tests.reliability.edge_helpers import config_copy
from tests.support.procs import REPO_ROOT, StubLLMServer

SECRETS = {
    "TURN_USER": "1700000000:turn-user-q8Zr",
    "TURN_CREDENTIAL": "turn-credential-Wm4vX9",
    "MCP_TOKEN": "mcp-flag-token-Hq27pL",
    "MCP_API_KEY": "mcp-eq-key-Jd81sN",
    "DB_PASSWORD": "db-url-password-Ke55tR",
    "QUERY_TOKEN": "query-token-Vb63wE",
    "VAULT_TOKEN": "vault-env-token-Np90aS",
    "OPAQUE_VALUE": "Zx81kQ2mN7pL4vT9wR3yB6cH",
    "LLM_URL_PASSWORD": "llm-url-password-Tg42cY",
    "MCP_URL_KEY": "mcp-url-key-Rf18uI",
}
HIDDEN_HOST = "unreachable-redis-host.invalid"  # shows in /ready's redis detail (an admin-only detail)
EDITS = {
    "api": {"webrtc": {"ice_servers": [{"urls": "turn:turn.example.com:3478", "username": "${TURN_USER}",
                                        "credential": "${TURN_CREDENTIAL}"}]}},
    "tools": {"mcp_servers": [
        {"name": "vault", "command": "/nonexistent/vault-mcp", "enabled": True, "connect_timeout_s": 2,
         "args": ["--token", "${MCP_TOKEN}", "--api-key=${MCP_API_KEY}",
                  "--db", "postgres://svc:${DB_PASSWORD}@db.internal:5432/app",
                  "https://api.example.com/v1?token=${QUERY_TOKEN}&mode=fast", "${OPAQUE_VALUE}"],
         "env": {"VAULT_ADDR": "https://vault.internal:8200", "VAULT_TOKEN": "${VAULT_TOKEN}",
                 "UPSTREAM": "postgres://u:${DB_PASSWORD}@h/db", "BLOB": "${OPAQUE_VALUE}"}},
        {"name": "remote", "transport": "http", "enabled": False,
         "url": "https://mcp.example.com/mcp?key=${MCP_URL_KEY}"},
    ]},
}  # fmt: skip
LLM_MODEL = {
    "id": "remote-disabled",
    "provider": "openai",
    "enabled": False,
    "options": {"base_url": "https://svc:${LLM_URL_PASSWORD}@llm.example.com/v1", "model": "m"},
}


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import yaml

    path = config_copy(tmp_path_factory.mktemp("secrets"), **EDITS)
    engines = yaml.safe_load((path / "engines.yaml").read_text())
    engines["llm"]["models"].append(LLM_MODEL)
    (path / "engines.yaml").write_text(yaml.safe_dump(engines, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def server(stub_llm: StubLLMServer, config: Path) -> Iterator[CozyServer]:
    env = {**SECRETS, "COZY_STT_ENABLED": "false", "COZY_TTS_ENABLED": "false", "COZY_VAD_ENABLED": "false"}
    server = start_cozy_server(stub_llm, env, config_dir=config)
    try:
        yield server
    finally:
        server.stop()


def assert_no_secret(text: str) -> None:
    leaked = [name for name, value in SECRETS.items() if value in text]
    assert not leaked, f"in clear: {leaked}"


def test_admin_config_redacts_by_value(server: CozyServer) -> None:
    r = httpx.get(f"{server.root_url}/v1/admin/config", headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=30)
    assert r.status_code == 200, r.text
    assert_no_secret(r.text)
    body = r.json()
    ice = body["api"]["webrtc"]["ice_servers"][0]
    assert ice == {"urls": "turn:turn.example.com:3478", "username": "***", "credential": "***"}
    vault = next(s for s in body["tools"]["mcp_servers"] if s["name"] == "vault")
    assert vault["args"] == [
        "--token",
        "***",
        "--api-key=***",
        "--db",
        "postgres://svc:***@db.internal:5432/app",
        "https://api.example.com/v1?token=***&mode=fast",
        "***",
    ]
    assert vault["env"]["VAULT_ADDR"] == "https://vault.internal:8200"  # not a secret: still readable
    remote = next(s for s in body["tools"]["mcp_servers"] if s["name"] == "remote")
    assert remote["url"] == "https://mcp.example.com/mcp?key=***"
    model = next(m for m in body["engines"]["llm"]["models"] if m["id"] == "remote-disabled")
    assert model["options"]["base_url"] == "https://svc:***@llm.example.com/v1"


def test_config_check_redacts_by_value(config: Path) -> None:
    env = {**os.environ, **SECRETS}
    out = subprocess.run(
        [sys.executable, "-m", "cozy_http.cli", "config", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    assert "postgres://svc:***@db.internal:5432/app" in out.stdout
    assert_no_secret(out.stdout + out.stderr)


def test_ready_details_are_for_admins_only(stub_llm: StubLLMServer, server: CozyServer) -> None:
    public = httpx.get(f"{server.root_url}/ready", timeout=30)
    body = public.json()
    assert set(body) == {"status", "checks"}
    assert all(check == {"ok": check["ok"]} and isinstance(check["ok"], bool) for check in body["checks"].values())
    assert body["checks"]["tools:mcp:vault"] == {"ok": False}  # failed, and nothing about why
    for bad in ("sk-nope", f"{ADMIN_KEY}x"):  # a wrong token is the public view, not an error
        again = httpx.get(f"{server.root_url}/ready", headers={"authorization": f"Bearer {bad}"}, timeout=30)
        assert again.json() == body and again.status_code == public.status_code
    admin = httpx.get(f"{server.root_url}/ready", headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=30)
    vault = admin.json()["checks"]["tools:mcp:vault"]
    assert vault["ok"] is False and "No such file" in vault["detail"]
    assert "detail" in admin.json()["checks"]["database"]


def test_ready_hides_hostnames_from_the_public(stub_llm: StubLLMServer) -> None:
    """A Redis that cannot be reached: its error names the host; the public sees only `ok: false`."""
    env = {"REDIS_URL": f"redis://{HIDDEN_HOST}:6379/0", "COZY_STT_ENABLED": "false", "COZY_VAD_ENABLED": "false"}
    server = start_cozy_server(stub_llm, {**env, "COZY_TTS_ENABLED": "false"})
    try:
        public = httpx.get(f"{server.root_url}/ready", timeout=30)
        assert HIDDEN_HOST not in public.text and public.json()["checks"]["redis"] == {"ok": False}
        admin = httpx.get(f"{server.root_url}/ready", headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=30)
        redis = admin.json()["checks"]["redis"]
        assert redis["ok"] is False and HIDDEN_HOST in redis["detail"]  # the admin gets the details
    finally:
        server.stop()
