"""Authentication, roles, admin routes, rate limits and the audit trail, end to end (openai SDK and
raw HTTP against a real server; its database and Redis prefix are its own)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import openai
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.e2e.accounts import api, audit_events, auth, make_user, sdk, wait_for
from tests.e2e.conftest import ADMIN_KEY, STUB_MODEL, CozyServer, assert_error_body, new_session_id, user
from tests.support.procs import StubLLMServer

ADMIN_ROUTES = [
    ("POST", "/v1/personalities/reload"),
    ("GET", "/v1/tools"),
    ("POST", "/v1/tools/refresh"),
    ("GET", "/v1/admin/config"),
    ("GET", "/v1/admin/audit"),
    ("POST", "/v1/admin/users"),
]


def test_missing_and_invalid_tokens_are_401(cozy_server: CozyServer) -> None:
    root = cozy_server.root_url
    missing = httpx.post(f"{root}/v1/chat/completions", json={"model": STUB_MODEL, "messages": user("hi")})
    err = assert_error_body(missing, 401, "AUTH_MISSING_TOKEN")
    assert err["type"] == "authentication_error"
    assert missing.headers["www-authenticate"].startswith("Bearer")
    wrong = httpx.get(f"{root}/v1/models", headers=auth("cozy-this-key-does-not-exist"))
    assert_error_body(wrong, 401, "AUTH_INVALID_TOKEN")
    assert wrong.headers["www-authenticate"].startswith("Bearer")
    basic = httpx.get(f"{root}/v1/models", headers={"authorization": "Basic YTpi"})
    assert_error_body(basic, 401, "AUTH_MISSING_TOKEN")
    with sdk(cozy_server, "cozy-wrong") as client, pytest.raises(openai.AuthenticationError) as info:
        client.models.list()
    assert info.value.code == "AUTH_INVALID_TOKEN"
    for path in ("/health", "/metrics", "/openapi.json", "/docs", "/docs/static/swagger-ui.css"):
        assert httpx.get(f"{root}{path}").status_code == 200, path  # public without a token
    assert httpx.get(f"{root}/ready").status_code in (200, 503)  # public too (503 while models still load)


def test_jwt_from_password_login(cozy_server: CozyServer) -> None:
    account, _ = make_user(cozy_server, password="a long password")
    root = cozy_server.root_url
    r = httpx.post(f"{root}/v1/auth/token", json={"username": account["name"], "password": "a long password"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 3600 and body["access_token"].startswith("eyJ")
    form = httpx.post(
        f"{root}/v1/auth/token",
        data={"grant_type": "password", "username": account["name"], "password": "a long password"},
    )
    assert form.status_code == 200 and form.json()["access_token"]
    with sdk(cozy_server, body["access_token"]) as client:
        reply = client.chat.completions.create(model=STUB_MODEL, messages=user("via jwt"))
        assert reply.choices[0].message.content == "Echo: via jwt"
    bad = httpx.post(f"{root}/v1/auth/token", json={"username": account["name"], "password": "wrong password"})
    assert_error_body(bad, 401, "AUTH_INVALID_CREDENTIALS")
    assert_error_body(httpx.post(f"{root}/v1/auth/token", json={"username": "x"}), 400, "VALIDATION_ERROR")
    tampered = body["access_token"][:-4] + ("AAAA" if not body["access_token"].endswith("AAAA") else "BBBB")
    assert_error_body(httpx.get(f"{root}/v1/models", headers=auth(tampered)), 401, "AUTH_INVALID_TOKEN")


def test_admin_routes_are_admin_only(cozy_server: CozyServer) -> None:
    started = time.time()  # other tests' admins (tests/e2e/test_admin_users.py) leave admin.* events too
    account, key = make_user(cozy_server)
    with api(cozy_server, key) as http:
        for method, path in ADMIN_ROUTES:
            err = assert_error_body(http.request(method, path, json={"name": "x"}), 403, "AUTH_FORBIDDEN")
            assert err["type"] == "permission_error"
        assert http.get("/v1/models").status_code == 200  # a user key is fine elsewhere
    with sdk(cozy_server, key) as client, pytest.raises(openai.PermissionDeniedError):
        client.get("/tools", cast_to=object)
    with api(cozy_server, ADMIN_KEY) as admin:
        reload = admin.post("/v1/personalities/reload")
        assert reload.status_code == 200 and {p["id"] for p in reload.json()["data"]} >= {"assistant"}
        tools = admin.get("/v1/tools").json()["data"]
        assert {"calculator", "get_current_time"} <= {t["name"] for t in tools}
        refreshed = admin.post("/v1/tools/refresh")
        assert refreshed.status_code == 200
        assert {t["name"] for t in refreshed.json()["data"]} == {t["name"] for t in tools}
        config = admin.get("/v1/admin/config")
        assert config.status_code == 200
        text = config.text
        cfg = config.json()
        assert cfg["storage"]["database_url"] == "***" and cfg["security"]["jwt_secret_key"] == "***"
        assert cfg["security"]["bootstrap_admin_key"] == "***"
        assert ADMIN_KEY not in text and "e2e-jwt-secret" not in text and "postgresql://" not in text
    forbidden = wait_for(
        lambda: audit_events(cozy_server, type="auth.forbidden", user_id=account["id"]),
        lambda evs: len(evs) == len(ADMIN_ROUTES) + 1,
    )
    assert {e["resource"] for e in forbidden} >= {"config.read", "personalities.reload", "users.create"}
    assert all(e["outcome"] == "denied" and e["user_name"] == account["name"] for e in forbidden)
    admin_done = wait_for(
        lambda: audit_events(cozy_server, type="admin.", since=started, limit=50),
        lambda evs: (
            {"admin.personalities.reload", "admin.tools.list", "admin.tools.refresh", "admin.config.read"}
            <= {e["type"] for e in evs}
        ),
    )
    assert all(e["user_name"] == "admin" for e in admin_done)


def test_audit_rows_for_auth_failures_tool_calls_and_user_creation(cozy_server: CozyServer) -> None:
    started = time.time()
    marker = f"req-audit-{int(started * 1000)}"
    httpx.get(f"{cozy_server.root_url}/v1/models", headers={**auth("cozy-nope"), "x-request-id": marker})
    account, key = make_user(cozy_server)
    sid = new_session_id()
    with sdk(cozy_server, key) as client:
        client.chat.completions.create(
            model=STUB_MODEL,
            messages=user('CALL calculator {"expression":"2+2"}'),
            extra_body={"cozy": {"session_id": sid}},
        )
    failed = wait_for(
        lambda: audit_events(cozy_server, type="auth.failed", since=started),
        lambda evs: any(e["request_id"] == marker for e in evs),
    )
    mine = next(e for e in failed if e["request_id"] == marker)
    assert mine["detail"]["reason"] == "unknown_key" and mine["detail"]["key_prefix"] == "cozy-nope"
    assert mine["resource"] == "/v1/models" and mine["outcome"] == "denied"
    tools = wait_for(lambda: audit_events(cozy_server, type="tool.call", user_id=account["id"]), bool)
    assert tools[0]["resource"] == "tool:calculator" and tools[0]["detail"]["session_id"] == sid
    assert tools[0]["outcome"] == "ok" and tools[0]["user_name"] == account["name"]
    created = audit_events(cozy_server, type="user.create", since=started)
    assert any(e["resource"] == f"user:{account['name']}" and e["user_name"] == "admin" for e in created)
    assert_error_body(
        httpx.get(f"{cozy_server.root_url}/v1/admin/audit", params={"user_id": "x"}, headers=auth(ADMIN_KEY)),
        400,
        "VALIDATION_ERROR",
    )


def test_rate_limit_is_429_with_retry_after_and_the_sdk_retries(cozy_server: CozyServer) -> None:
    _, key = make_user(cozy_server, rate_limit_rpm=60, rate_limit_burst=2)  # 2 at once, then 1 per second
    with sdk(cozy_server, key) as client:
        client.models.list()
        client.models.list()
        with pytest.raises(openai.RateLimitError) as info:
            client.models.list()
    err = info.value
    assert err.status_code == 429 and err.code == "RATE_LIMITED" and err.type == "rate_limit_error"
    assert err.response.headers["retry-after"] == "1"
    with sdk(cozy_server, key, max_retries=3) as patient:
        patient.models.list()  # may wait for a token
        start = time.perf_counter()
        patient.models.list()  # bucket empty: 429, the SDK honours Retry-After and tries again
        assert time.perf_counter() - start > 0.4
    _, other = make_user(cozy_server, rate_limit_rpm=60, rate_limit_burst=2)
    with sdk(cozy_server, other) as client:
        client.models.list()  # another key has its own bucket


def test_realtime_websocket_needs_a_token(cozy_server: CozyServer) -> None:
    url = cozy_server.root_url.replace("http://", "ws://") + f"/v1/realtime?model={STUB_MODEL}"
    with pytest.raises(InvalidStatus) as info:
        with connect(url, open_timeout=10):
            pass
    assert info.value.response.status_code == 403
    with pytest.raises(InvalidStatus):
        with connect(url, subprotocols=["realtime", "openai-insecure-api-key.cozy-wrong"], open_timeout=10):
            pass
    # Browsers cannot set headers: the key travels as a subprotocol; the server picks "realtime".
    protocols = ["realtime", f"openai-insecure-api-key.{ADMIN_KEY}"]
    with connect(url, subprotocols=protocols, open_timeout=10) as ws:  # type: ignore[arg-type]
        assert ws.subprotocol == "realtime"
        first = json.loads(ws.recv(timeout=10))
        assert first["type"] == "session.created"
    with connect(url, additional_headers=auth(ADMIN_KEY), open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "session.created"


def test_openapi_documents_the_new_routes_and_bearer_auth(cozy_server: CozyServer) -> None:
    doc = httpx.get(f"{cozy_server.root_url}/openapi.json").json()
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert doc["security"] == [{"bearer": []}]
    for path in ("/v1/chat/sessions", "/v1/chat/sessions/{session_id}/messages", "/v1/admin/audit", "/v1/auth/token"):
        assert path in doc["paths"], path
    assert doc["paths"]["/v1/auth/token"]["post"]["security"] == []
    assert "UserCreate" in doc["components"]["schemas"]
    users = {
        "/v1/admin/users": {"get", "post"},
        "/v1/admin/users/{user_id}": {"get", "patch"},
        "/v1/admin/users/{user_id}/keys": {"get", "post"},
        "/v1/admin/users/{user_id}/keys/{key_id}": {"delete"},
    }
    for path, methods in users.items():
        assert set(doc["paths"][path]) == methods, path
        assert all("(admin only)" in op["summary"] and "security" not in op for op in doc["paths"][path].values())
    assert "204" in doc["paths"]["/v1/admin/users/{user_id}/keys/{key_id}"]["delete"]["responses"]
    assert {"UserUpdate", "KeyCreate"} <= set(doc["components"]["schemas"])
    assert doc["components"]["schemas"]["UserUpdate"]["additionalProperties"] is False


@pytest.fixture(scope="module")
def proxied_server(stub_llm: StubLLMServer) -> Iterator[CozyServer]:
    """A server behind a reverse proxy on 127.0.0.1 (security.trusted_proxies)."""
    from tests.e2e.conftest import start_cozy_server

    server = start_cozy_server(stub_llm, extra_env={"COZY_TRUSTED_PROXIES": "127.0.0.1"})
    yield server  # pytest runs the rest at teardown, whatever the tests did
    server.stop()


def test_password_guessing_is_throttled_per_user_and_per_client(proxied_server: CozyServer) -> None:
    """5 attempts per user name, then 429 + Retry-After even with the right password; 10 per client."""
    cozy_server = proxied_server
    account, _ = make_user(cozy_server, password="the right password")
    url = f"{cozy_server.root_url}/v1/auth/token"

    def attempt(name: str, password: str, client: str) -> httpx.Response:
        # The client address is X-Forwarded-For's right-most entry sent by the trusted proxy (127.0.0.1).
        return httpx.post(url, json={"username": name, "password": password}, headers={"x-forwarded-for": client})

    for i in range(5):
        assert_error_body(attempt(account["name"], f"guess {i}", f"10.9.0.{i}"), 401, "AUTH_INVALID_CREDENTIALS")
    throttled = attempt(account["name"], "the right password", "10.9.0.99")
    assert_error_body(throttled, 429, "RATE_LIMITED")
    assert int(throttled.headers["retry-after"]) >= 1
    for i in range(10):  # one client guessing many names: its own bucket
        assert attempt(f"nobody-{i}", "pw", "10.9.1.1").status_code == 401
    assert_error_body(attempt("nobody-else", "pw", "10.9.1.1"), 429, "RATE_LIMITED")

    def throttled_buckets() -> set[str]:
        events = audit_events(cozy_server, type="auth.failed", limit=200)
        return {e["detail"]["bucket"] for e in events if (e.get("detail") or {}).get("reason") == "login_throttled"}

    wait_for(throttled_buckets, lambda got: got >= {"user", "client"})
