"""Two nodes sharing PostgreSQL and Redis (DESIGN, Storage): what an admin changes on one node,
the other applies at once, through the Redis pub/sub broadcast (not after a cache TTL)."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosedOK
from websockets.sync.client import ClientConnection, connect

from tests.e2e.accounts import auth, cozy_cli, make_user
from tests.e2e.conftest import ADMIN_KEY, REPO_ROOT, STUB_MODEL, CozyServer, start_cozy_server
from tests.support.pg import REDIS_URL, create_database, drop_database, drop_redis_prefix, redis_prefix
from tests.support.procs import StubLLMServer


@dataclass
class Cluster:
    a: CozyServer
    b: CozyServer
    personalities: Path
    env: dict[str, str]  # what both nodes share: DATABASE_URL, REDIS_URL, COZY_REDIS_PREFIX


@pytest.fixture()
def two_nodes(stub_llm: StubLLMServer, tmp_path: Path) -> Iterator[Cluster]:
    shutil.copytree(REPO_ROOT / "config", tmp_path / "config")
    shutil.copytree(REPO_ROOT / "personalities", tmp_path / "personalities")
    database, url = create_database("cozy_cluster")
    prefix = redis_prefix("cluster")
    env = {"DATABASE_URL": url, "COZY_REDIS_PREFIX": prefix}
    nodes: list[CozyServer] = []
    try:
        for _ in range(2):  # one after the other: the first applies the migrations
            nodes.append(start_cozy_server(stub_llm, env, config_dir=tmp_path / "config"))
        yield Cluster(nodes[0], nodes[1], tmp_path / "personalities", {**env, "REDIS_URL": REDIS_URL})
    finally:
        for node in nodes:
            node.stop()
        drop_database(database)
        drop_redis_prefix(prefix)


def within(seconds: float, check: Callable[[], bool]) -> float:
    """How long until `check()` held (asserting it did within `seconds`)."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < seconds, "the other node did not follow"
        time.sleep(0.02)
    return time.monotonic() - started


def test_reload_and_revocation_reach_the_other_node(two_nodes: Cluster) -> None:
    a, b, personalities = two_nodes.a, two_nodes.b, two_nodes.personalities
    admin = auth(ADMIN_KEY)
    pirate = (personalities / "assistant.yaml").read_text().replace("id: assistant", "id: pirate", 1)
    (personalities / "pirate.yaml").write_text(pirate.replace("name: Assistant", "name: Pirate", 1))
    assert httpx.get(f"{b.root_url}/v1/personalities/pirate", headers=admin).status_code == 404
    assert httpx.post(f"{a.root_url}/v1/personalities/reload", headers=admin).status_code == 200
    within(2, lambda: httpx.get(f"{b.root_url}/v1/personalities/pirate", headers=admin).status_code == 200)

    account, key = make_user(a)
    models = f"{b.root_url}/v1/models"
    assert httpx.get(models, headers=auth(key)).status_code == 200  # node B has now cached this key
    keys = httpx.get(f"{a.root_url}/v1/admin/users/{account['id']}/keys", headers=admin).json()["data"]
    revoke = httpx.delete(f"{a.root_url}/v1/admin/users/{account['id']}/keys/{keys[0]['id']}", headers=admin)
    assert revoke.status_code == 204
    took = within(2, lambda: httpx.get(models, headers=auth(key)).status_code == 401)
    assert took < 2  # far inside the 30 s auth cache: B was told, it did not wait for expiry

    other, other_key = make_user(a)
    assert httpx.get(models, headers=auth(other_key)).status_code == 200
    patch = httpx.patch(f"{a.root_url}/v1/admin/users/{other['id']}", json={"disabled": True}, headers=admin)
    assert patch.status_code == 200, patch.text
    within(2, lambda: httpx.get(models, headers=auth(other_key)).status_code == 401)


def test_cli_changes_reach_running_nodes(two_nodes: Cluster) -> None:
    a, b = two_nodes.a, two_nodes.b
    account, key = make_user(a)
    models = f"{b.root_url}/v1/models"
    assert httpx.get(models, headers=auth(key)).status_code == 200  # cached on node B
    done = cozy_cli("users", "disable", account["name"], env={**two_nodes.env, "COZY_LOG_LEVEL": "warning"})
    assert done.returncode == 0, done.stderr
    within(2, lambda: httpx.get(models, headers=auth(key)).status_code == 401)


def test_live_voice_sessions_end_when_their_credentials_go(two_nodes: Cluster) -> None:
    """A revoked key's Realtime session on the other node, and a disabled user's session on this
    node, get `error` `session_revoked` and a clean close; another user's session goes on."""
    a, b = two_nodes.a, two_nodes.b
    admin = auth(ADMIN_KEY)
    revoked_user, revoked_key = make_user(a)
    disabled_user, disabled_key = make_user(a)
    _, bystander_key = make_user(a)

    def open_session(node: CozyServer, key: str) -> ClientConnection:
        ws = connect(
            f"ws://{node.root_url.removeprefix('http://')}/v1/realtime?model={STUB_MODEL}",
            additional_headers={"Authorization": f"Bearer {key}"},
        )
        assert json.loads(ws.recv(timeout=10))["type"] == "session.created"
        return ws

    def ends_revoked(ws: ClientConnection) -> None:
        events = []
        with pytest.raises(ConnectionClosedOK):
            while True:
                events.append(json.loads(ws.recv(timeout=5)))
        assert events[-1]["type"] == "error" and events[-1]["error"]["code"] == "session_revoked", events

    on_b, on_a, bystander = open_session(b, revoked_key), open_session(a, disabled_key), open_session(b, bystander_key)
    try:
        keys = httpx.get(f"{a.root_url}/v1/admin/users/{revoked_user['id']}/keys", headers=admin).json()["data"]
        assert (
            httpx.delete(
                f"{a.root_url}/v1/admin/users/{revoked_user['id']}/keys/{keys[0]['id']}", headers=admin
            ).status_code
            == 204
        )
        ends_revoked(on_b)  # node B was told over Redis
        patch = httpx.patch(
            f"{a.root_url}/v1/admin/users/{disabled_user['id']}", json={"disabled": True}, headers=admin
        )
        assert patch.status_code == 200
        ends_revoked(on_a)
        bystander.send(
            json.dumps(
                {
                    "type": "conversation.item.create",
                    "item": {
                        "type": "message",
                        "role": "user",
                        "content": [{"type": "input_text", "text": "still here?"}],
                    },
                }
            )
        )
        assert json.loads(bystander.recv(timeout=5))["type"] == "conversation.item.added"
    finally:
        for ws in (on_b, on_a, bystander):
            ws.close()
