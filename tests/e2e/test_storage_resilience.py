"""The system of record across process boundaries: history that survives a server restart, the
`cozy db migrate` / `cozy users create` commands on the same database, and a Redis (our own, on a
free port) killed while the server runs. Each test starts its own servers and database."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.e2e.accounts import api, audit_events, auth, cozy_cli, make_user, sdk, wait_for
from tests.e2e.conftest import ADMIN_KEY, STUB_MODEL, start_cozy_server, user
from tests.support.pg import create_database, drop_database
from tests.support.procs import ManagedProcess, StubLLMServer, free_port, start_process


def conversation(body: dict) -> list[tuple[str, str]]:
    return [(m["role"], m.get("content")) for m in body["messages"][1:]]


@pytest.fixture
def database() -> Iterator[str]:
    name, url = create_database("cozy_e2e_restart")
    try:
        yield url
    finally:
        drop_database(name)


def test_history_survives_a_restart_and_cli_users_work(database: str, stub_llm: StubLLMServer) -> None:
    env = {"DATABASE_URL": database}
    sid = "restart-session-1"
    cozy = {"cozy": {"session_id": sid}}
    first = start_cozy_server(stub_llm, env)
    try:
        with sdk(first, ADMIN_KEY) as client:
            client.chat.completions.create(model=STUB_MODEL, messages=user("my name is Ada"), extra_body=cozy)
            client.chat.completions.create(model=STUB_MODEL, messages=user("I like tea"), extra_body=cozy)
    finally:
        first.stop()  # graceful: SIGTERM drains the actors

    migrated = cozy_cli("db", "migrate", env=env)
    assert migrated.returncode == 0 and "nothing to apply" in migrated.stderr, migrated.stderr
    made = cozy_cli("users", "create", "carol", env=env)
    assert made.returncode == 0, made.stderr
    carol_key = made.stdout.strip()
    assert carol_key.startswith("cozy-") and "\n" not in carol_key and "carol" in made.stderr
    dup = cozy_cli("users", "create", "carol", env=env)
    assert dup.returncode == 1 and "RESOURCE_ALREADY_EXISTS" in dup.stderr

    stub_llm.clear()
    second = start_cozy_server(stub_llm, env)
    try:
        with sdk(second, ADMIN_KEY) as client:
            reply = client.chat.completions.create(model=STUB_MODEL, messages=user("what is my name"), extra_body=cozy)
        assert reply.choices[0].message.content == "Echo: what is my name"
        (sent,) = stub_llm.requests()
        assert conversation(sent) == [
            ("user", "my name is Ada"),
            ("assistant", "Echo: my name is Ada"),
            ("user", "I like tea"),
            ("assistant", "Echo: I like tea"),
            ("user", "what is my name"),
        ]
        with api(second, carol_key) as carol:
            assert carol.get("/v1/models").status_code == 200
            assert carol.get(f"/v1/chat/sessions/{sid}").status_code == 404  # the admin's, not carol's
            assert carol.get("/v1/admin/config").status_code == 403  # a plain user
        created = audit_events(second, type="user.create")
        assert any(e["resource"] == "user:carol" for e in created)  # written by the CLI
        with api(second, ADMIN_KEY) as admin:
            stored = wait_for(
                lambda: admin.get(f"/v1/chat/sessions/{sid}/messages").json()["data"], lambda ms: len(ms) == 6
            )
        assert [m["role"] for m in stored] == ["user", "assistant"] * 3
    finally:
        second.stop()


@pytest.fixture
def own_redis() -> Iterator[tuple[ManagedProcess, str]]:
    exe = shutil.which("redis-server")
    assert exe, "redis-server is needed for the Redis outage test"
    port = free_port()
    proc = start_process(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        r"Ready to accept connections",
        timeout=15,
    )
    try:
        yield proc, f"redis://127.0.0.1:{port}/0"
    finally:
        proc.stop()


def test_redis_outage_mid_run_never_fails_a_chat(
    own_redis: tuple[ManagedProcess, str], stub_llm: StubLLMServer
) -> None:
    redis_proc, redis_url = own_redis
    server = start_cozy_server(stub_llm, {"REDIS_URL": redis_url, "COZY_REDIS_PREFIX": "outage"})
    try:
        ready = httpx.get(f"{server.root_url}/ready", headers=auth(ADMIN_KEY), timeout=10).json()["checks"]
        assert ready["redis"]["ok"] and ready["queue"]["backend"] == "redis"
        account, key = make_user(server, rate_limit_rpm=60, rate_limit_burst=3)
        sid = "outage-session"
        cozy = {"cozy": {"session_id": sid}}
        with sdk(server, key) as client:
            client.chat.completions.create(model=STUB_MODEL, messages=user("before"), extra_body=cozy)
        redis_proc.stop()  # Redis goes away while the server runs
        with sdk(server, key) as client:
            after = client.chat.completions.create(model=STUB_MODEL, messages=user("after"), extra_body=cozy)
            assert after.choices[0].message.content == "Echo: after"
            chunks = list(
                client.chat.completions.create(
                    model=STUB_MODEL, messages=user("streamed"), extra_body=cozy, stream=True
                )
            )
            assert chunks[-1].choices[0].finish_reason == "stop"
        httpx.get(f"{server.root_url}/v1/models", headers={**auth("cozy-nope"), "x-request-id": "req-outage-1"})
        failed = wait_for(
            lambda: audit_events(server, type="auth.failed"),
            lambda evs: any(e["request_id"] == "req-outage-1" for e in evs),
        )
        assert failed  # audit events still land (in-process queue)
        with api(server, key) as http:
            stored = http.get(f"/v1/chat/sessions/{sid}/messages").json()["data"]
        assert [m["content"] for m in stored if m["role"] == "user"] == ["before", "after", "streamed"]
        ready = httpx.get(f"{server.root_url}/ready", headers=auth(ADMIN_KEY), timeout=10)  # details: admins
        checks = ready.json()["checks"]
        assert checks["redis"]["ok"] is False and checks["redis"]["degraded"] is True
        assert checks["database"]["ok"] is True
        assert "Redis unavailable" in server.output()  # one warning, in the log
        assert server.metric("cozy_redis_up") == 0
        with sdk(server, key) as client, pytest.raises(openai.RateLimitError):
            for _ in range(5):  # the in-process limiter took over (its own bucket of 3)
                client.models.list()
        assert account["role"] == "user"
    finally:
        server.stop()
