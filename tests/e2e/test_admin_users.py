"""User and API-key management by admins, end to end: the admin API on a real server (openai SDK and
raw HTTP, its own database and Redis prefix) and the `cozy users` CLI on a throwaway database.

Revocation and disabling must bite at once on the node that made them, even for tokens the server
has just verified and cached: every such test uses the token right before the change."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.accounts import api, audit_events, auth, cozy_cli, make_user, sdk, wait_for
from tests.e2e.conftest import ADMIN_KEY, STUB_MODEL, CozyServer, assert_error_body, user
from tests.support.pg import create_database, drop_database

USER_FIELDS = {"id", "object", "name", "role", "disabled", "created_at"}
KEY_FIELDS = {
    "id",
    "object",
    "user_id",
    "prefix",
    "name",
    "rate_limit_rpm",
    "rate_limit_burst",
    "created_at",
    "last_used_at",
    "revoked_at",
}


@pytest.fixture
def admin(cozy_server: CozyServer) -> Iterator[httpx.Client]:
    with api(cozy_server, ADMIN_KEY) as client:
        yield client


def admin_id(admin: httpx.Client) -> str:
    """The bootstrap admin's user id (the one ADMIN_KEY belongs to)."""
    return next(u["id"] for u in all_users(admin) if u["name"] == "admin")


def all_users(admin: httpx.Client, limit: int = 200) -> list[dict[str, Any]]:
    users: list[dict[str, Any]] = []
    cursor = None
    while True:
        r = admin.get("/v1/admin/users", params={"limit": limit, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        body = r.json()
        users += body["data"]
        if not body["has_more"]:
            assert body["next_cursor"] is None
            return users
        cursor = body["next_cursor"]


def models_status(server: CozyServer, token: str) -> int:
    return httpx.get(f"{server.root_url}/v1/models", headers=auth(token), timeout=30).status_code


def test_list_users_pages_in_creation_order(cozy_server: CozyServer, admin: httpx.Client) -> None:
    made = [make_user(cozy_server)[0] for _ in range(3)]
    first = admin.get("/v1/admin/users", params={"limit": 2}).json()
    assert first["object"] == "list" and len(first["data"]) == 2 and first["has_more"] and first["next_cursor"]
    paged = all_users(admin, limit=2)
    names = [u["name"] for u in paged]
    assert len(names) == len(set(names)), "a user appears on two pages"
    assert names == [u["name"] for u in all_users(admin)]  # same order whatever the page size
    assert [n for n in names if n in {m["name"] for m in made}] == [m["name"] for m in made]  # creation order
    assert names[0] == "admin"
    for u in paged:
        assert set(u) == USER_FIELDS and u["object"] == "user", u  # never a password hash
    assert "password" not in admin.get("/v1/admin/users").text
    assert_error_body(admin.get("/v1/admin/users", params={"limit": 0}), 400, "VALIDATION_ERROR")
    assert_error_body(admin.get("/v1/admin/users", params={"cursor": "bogus"}), 400, "VALIDATION_ERROR")
    forged = base64.urlsafe_b64encode(b'["not a time","x"]').decode()  # the right shape, wrong content
    assert_error_body(admin.get("/v1/admin/users", params={"cursor": forged}), 400, "VALIDATION_ERROR")


def test_get_user_with_keys_and_bad_ids(cozy_server: CozyServer, admin: httpx.Client) -> None:
    account, key = make_user(cozy_server, rate_limit_rpm=600, rate_limit_burst=50)
    r = admin.get(f"/v1/admin/users/{account['id']}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert {k: body[k] for k in USER_FIELDS} == account
    assert body["keys"]["object"] == "list" and body["keys"]["has_more"] is False
    (k,) = body["keys"]["data"]
    assert set(k) == KEY_FIELDS and k["object"] == "api_key" and k["user_id"] == account["id"]
    assert k["prefix"] == key[:12] and k["name"] == "admin-api" and k["revoked_at"] is None
    assert (k["rate_limit_rpm"], k["rate_limit_burst"]) == (600, 50)
    listed = admin.get(f"/v1/admin/users/{account['id']}/keys").json()
    assert listed["data"] == [k] and listed["has_more"] is False
    assert key not in r.text and key not in admin.get(f"/v1/admin/users/{account['id']}/keys").text
    unknown = str(uuid.uuid4())
    for path in (f"/v1/admin/users/{unknown}", f"/v1/admin/users/{unknown}/keys"):
        err = assert_error_body(admin.get(path), 404, "RESOURCE_NOT_FOUND")
        assert err["type"] == "not_found_error" and err["param"] == "user_id"
    for path in ("/v1/admin/users/not-a-uuid", "/v1/admin/users/not-a-uuid/keys"):
        assert assert_error_body(admin.get(path), 400, "VALIDATION_ERROR")["param"] == "user_id"
    bad_patch = admin.patch("/v1/admin/users/12345", json={"disabled": True})
    assert assert_error_body(bad_patch, 400, "VALIDATION_ERROR")["param"] == "user_id"
    assert_error_body(admin.patch(f"/v1/admin/users/{unknown}", json={"disabled": True}), 404, "RESOURCE_NOT_FOUND")
    assert_error_body(admin.post(f"/v1/admin/users/{unknown}/keys", json={}), 404, "RESOURCE_NOT_FOUND")


def test_new_key_works_with_the_sdk_and_revoking_it_is_immediate(cozy_server: CozyServer, admin: httpx.Client) -> None:
    account, first_key = make_user(cozy_server)
    uid = account["id"]
    r = admin.post(
        f"/v1/admin/users/{uid}/keys", json={"name": "laptop", "rate_limit_rpm": 1200, "rate_limit_burst": 40}
    )
    assert r.status_code == 201, r.text
    made = r.json()
    new_key = made.pop("api_key")
    assert new_key.startswith("cozy-") and new_key != first_key and made["prefix"] == new_key[:12]
    assert set(made) == KEY_FIELDS and made["name"] == "laptop" and made["rate_limit_burst"] == 40
    bare = admin.post(f"/v1/admin/users/{uid}/keys")  # no body: every field is optional
    assert bare.status_code == 201 and bare.json()["name"] is None
    with sdk(cozy_server, new_key) as client:
        reply = client.chat.completions.create(model=STUB_MODEL, messages=user("new key"))
        assert reply.choices[0].message.content == "Echo: new key"
        client.models.list()  # verified and cached now
        gone = admin.delete(f"/v1/admin/users/{uid}/keys/{made['id']}")
        assert gone.status_code == 204 and gone.content == b""
        with pytest.raises(openai.AuthenticationError) as info:
            client.models.list()  # at once: no waiting for auth_cache_ttl_s
        assert info.value.code == "AUTH_INVALID_TOKEN"
    assert models_status(cozy_server, first_key) == 200  # only that key
    keys = {k["id"]: k for k in admin.get(f"/v1/admin/users/{uid}/keys").json()["data"]}
    assert len(keys) == 3 and keys[made["id"]]["revoked_at"] and keys[made["id"]]["last_used_at"]
    again = admin.delete(f"/v1/admin/users/{uid}/keys/{made['id']}")
    assert assert_error_body(again, 404, "RESOURCE_NOT_FOUND")["param"] == "key_id"  # already revoked
    other, _ = make_user(cozy_server)
    first_id = next(k for k in keys.values() if k["prefix"] == first_key[:12])["id"]
    not_theirs = admin.delete(f"/v1/admin/users/{other['id']}/keys/{first_id}")
    assert_error_body(not_theirs, 404, "RESOURCE_NOT_FOUND")
    assert models_status(cozy_server, first_key) == 200  # the wrong owner revoked nothing
    bad = admin.delete(f"/v1/admin/users/{uid}/keys/nope")
    assert assert_error_body(bad, 400, "VALIDATION_ERROR")["param"] == "key_id"
    invalid = admin.post(f"/v1/admin/users/{uid}/keys", json={"rate_limit_rpm": 0, "name": "x"})
    assert_error_body(invalid, 400, "VALIDATION_ERROR")
    assert_error_body(admin.post(f"/v1/admin/users/{uid}/keys", json={"owner": "x"}), 400, "VALIDATION_ERROR")


def test_disabling_a_user_stops_keys_and_jwts_at_once(cozy_server: CozyServer, admin: httpx.Client) -> None:
    account, key = make_user(cozy_server, password="a long password")
    login = {"username": account["name"], "password": "a long password"}
    jwt = httpx.post(f"{cozy_server.root_url}/v1/auth/token", json=login).json()["access_token"]
    assert models_status(cozy_server, key) == 200 and models_status(cozy_server, jwt) == 200  # both cached
    r = admin.patch(f"/v1/admin/users/{account['id']}", json={"disabled": True})
    assert r.status_code == 200, r.text
    assert r.json() == {**account, "disabled": True}
    assert_error_body(httpx.get(f"{cozy_server.root_url}/v1/models", headers=auth(key)), 401, "AUTH_INVALID_TOKEN")
    assert models_status(cozy_server, jwt) == 401
    relogin = httpx.post(f"{cozy_server.root_url}/v1/auth/token", json=login)
    assert_error_body(relogin, 401, "AUTH_INVALID_CREDENTIALS")
    assert admin.get(f"/v1/admin/users/{account['id']}").json()["disabled"] is True
    r = admin.patch(f"/v1/admin/users/{account['id']}", json={"disabled": False})
    assert r.status_code == 200 and r.json()["disabled"] is False
    assert models_status(cozy_server, key) == 200 and models_status(cozy_server, jwt) == 200
    unchanged = admin.patch(f"/v1/admin/users/{account['id']}", json={})  # nothing asked, nothing changed
    assert unchanged.status_code == 200 and unchanged.json() == account
    for body in ({"disabled": "yes"}, {"role": "root"}, {"name": "x"}):
        assert_error_body(admin.patch(f"/v1/admin/users/{account['id']}", json=body), 400, "VALIDATION_ERROR")


def test_role_changes_take_effect_at_once(cozy_server: CozyServer, admin: httpx.Client) -> None:
    account, key = make_user(cozy_server)
    with api(cozy_server, key) as http:
        assert_error_body(http.get("/v1/admin/users"), 403, "AUTH_FORBIDDEN")  # cached as a user
        promoted = admin.patch(f"/v1/admin/users/{account['id']}", json={"role": "admin"})
        assert promoted.status_code == 200 and promoted.json()["role"] == "admin"
        assert http.get("/v1/admin/users").status_code == 200
        demoted = admin.patch(f"/v1/admin/users/{account['id']}", json={"role": "user"})
        assert demoted.status_code == 200 and demoted.json()["role"] == "user"
        assert_error_body(http.get("/v1/admin/users"), 403, "AUTH_FORBIDDEN")


def test_admins_cannot_lock_themselves_out(cozy_server: CozyServer, admin: httpx.Client) -> None:
    me = admin_id(admin)
    err = assert_error_body(admin.patch(f"/v1/admin/users/{me}", json={"disabled": True}), 400, "VALIDATION_ERROR")
    assert err["param"] == "disabled" and "yourself" in err["message"]
    err = assert_error_body(admin.patch(f"/v1/admin/users/{me}", json={"role": "user"}), 400, "VALIDATION_ERROR")
    assert err["param"] == "role" and "your own role" in err["message"]
    assert admin.patch(f"/v1/admin/users/{me}", json={"disabled": False, "role": "admin"}).status_code == 200
    second, second_key = make_user(cozy_server, role="admin")
    with api(cozy_server, second_key) as other:  # another admin may disable this one, and enable it again
        try:
            assert other.patch(f"/v1/admin/users/{me}", json={"disabled": True}).status_code == 200
            assert models_status(cozy_server, ADMIN_KEY) == 401
        finally:  # the other e2e tests need the bootstrap admin
            assert other.patch(f"/v1/admin/users/{me}", json={"disabled": False}).status_code == 200
    assert models_status(cozy_server, ADMIN_KEY) == 200
    assert admin.patch(f"/v1/admin/users/{second['id']}", json={"role": "user"}).status_code == 200
    # The last enabled admin cannot be reached through the API (you cannot act on yourself, and any
    # other enabled admin is a second one): the CLI test below covers that refusal.


def test_user_management_is_admin_only_and_audited(cozy_server: CozyServer, admin: httpx.Client) -> None:
    started = time.time()
    account, key = make_user(cozy_server)
    target, _ = make_user(cozy_server)
    tid = target["id"]
    some_key = admin.get(f"/v1/admin/users/{tid}/keys").json()["data"][0]["id"]
    calls = [
        ("GET", "/v1/admin/users", None),
        ("GET", f"/v1/admin/users/{tid}", None),
        ("PATCH", f"/v1/admin/users/{tid}", {"disabled": True}),
        ("GET", f"/v1/admin/users/{tid}/keys", None),
        ("POST", f"/v1/admin/users/{tid}/keys", {"name": "sneaky"}),
        ("DELETE", f"/v1/admin/users/{tid}/keys/{some_key}", None),
    ]
    with api(cozy_server, key) as http:
        for method, path, body in calls:
            assert_error_body(http.request(method, path, json=body), 403, "AUTH_FORBIDDEN")
    assert len(admin.get(f"/v1/admin/users/{tid}/keys").json()["data"]) == 1  # nothing was made or revoked
    assert admin.get(f"/v1/admin/users/{tid}").json()["disabled"] is False
    forbidden = wait_for(
        lambda: audit_events(cozy_server, type="auth.forbidden", user_id=account["id"]),
        lambda evs: len(evs) == len(calls),
    )
    assert {e["resource"] for e in forbidden} == {
        "users.list",
        "users.read",
        "users.update",
        "users.keys.create",
        "users.keys.revoke",
    }

    made = admin.post(f"/v1/admin/users/{tid}/keys", json={"name": "audited"}).json()
    admin.delete(f"/v1/admin/users/{tid}/keys/{made['id']}")
    admin.patch(f"/v1/admin/users/{tid}", json={"disabled": True})
    assert admin.get("/v1/admin/users", params={"limit": 1}).status_code == 200  # reads are audited too

    def about_target() -> list[dict[str, Any]]:
        return [e for e in audit_events(cozy_server, type="user.", since=started) if e["detail"].get("user_id") == tid]

    events = {e["type"]: e for e in wait_for(about_target, lambda evs: len(evs) == 3)}
    assert set(events) == {"user.key.create", "user.key.revoke", "user.update"}
    for e in events.values():
        assert e["user_name"] == "admin" and e["resource"] == f"user:{target['name']}" and e["outcome"] == "ok"
    assert events["user.key.create"]["detail"]["key_id"] == made["id"]
    assert events["user.key.revoke"]["detail"]["key_prefix"] == made["prefix"]
    assert made["api_key"] not in str(events)
    assert events["user.update"]["detail"] == {
        "user_id": tid,
        "disabled": True,
        "role": "user",
        "changed": ["disabled"],
    }
    reads = wait_for(
        lambda: audit_events(cozy_server, type="admin.users.", since=started),
        lambda evs: {"admin.users.list", "admin.users.read"} <= {e["type"] for e in evs},
    )
    assert any(e["detail"].get("user_id") == tid for e in reads if e["type"] == "admin.users.read")


@pytest.fixture
def cli_env() -> Iterator[dict[str, str]]:
    name, url = create_database("cozy_e2e_cli")
    try:
        yield {"DATABASE_URL": url}
    finally:
        drop_database(name)


def test_cli_lists_disables_and_revokes(cli_env: dict[str, str]) -> None:
    def cozy(*args: str, rc: int = 0) -> str:
        done = cozy_cli("users", *args, env=cli_env)
        assert done.returncode == rc, done.stderr
        return done.stdout if rc == 0 else done.stderr

    cozy("create", "root", "--admin")
    bob_key = cozy("create", "bob").strip()
    header, *rows = cozy("list").splitlines()
    assert header.split("\t") == ["id", "name", "role", "state", "created_at"]
    assert [r.split("\t")[1:4] for r in rows] == [["root", "admin", "enabled"], ["bob", "user", "enabled"]]
    _, key_row = cozy("keys", "bob").splitlines()
    key_id, prefix, key_name, *_rest, revoked = key_row.split("\t")
    assert prefix == bob_key[:12] and key_name == "cli" and revoked == "-"
    cozy("disable", "bob")
    assert cozy("list").splitlines()[2].split("\t")[3] == "disabled"
    cozy("enable", "bob")
    assert cozy("list").splitlines()[2].split("\t")[3] == "enabled"
    cozy("revoke-key", key_id)
    assert cozy("keys", "bob").splitlines()[1].split("\t")[-1] != "-"
    assert "RESOURCE_NOT_FOUND" in cozy("revoke-key", key_id, rc=1)
    assert "VALIDATION_ERROR" in cozy("revoke-key", "not-a-key-id", rc=1)
    assert "RESOURCE_NOT_FOUND" in cozy("disable", "nobody", rc=1)
    refused = cozy("disable", "root", rc=1)
    assert "VALIDATION_ERROR" in refused and "last enabled admin" in refused
