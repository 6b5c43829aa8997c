"""Cluster fixtures (issue 11): real `cozy serve` nodes sharing one throwaway PostgreSQL database
and Redis prefix, a real HAProxy in front of them (tests/cluster/proxy.py), the shared stub LLM.

What the model saw is read back from the stub's recorded requests: each turn's text carries the
session id, so a test finds its own requests among everyone's.
"""

from __future__ import annotations

import concurrent.futures
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cluster.proxy import NAMES, NODE_HEADER, PIN_HEADER, Proxy, start_haproxy
from tests.e2e.conftest import ADMIN_KEY, STUB_MODEL
from tests.support.pg import REDIS_URL, create_database, drop_database, drop_redis_prefix, redis_prefix
from tests.support.procs import REPO_ROOT, ManagedProcess, StubLLMServer, start_cozy_serve

# Text only: the cluster behaviour does not need the speech models, and nodes start in ~3 s without.
NO_SPEECH = {"COZY_STT_ENABLED": "false", "COZY_TTS_ENABLED": "false", "COZY_VAD_ENABLED": "false"}


def node_env(upstream: StubLLMServer, **extra: str) -> dict[str, str]:
    """What every test server gets (as tests/e2e/conftest.py's servers, speech off)."""
    return {
        "COZY_LLM_BASE_URL": upstream.base_url,
        "COZY_LLM_MODEL": STUB_MODEL,
        "COZY_LLM_API_KEY": "stub",
        "COZY_LOG_LEVEL": "warning",
        "COZY_BOOTSTRAP_ADMIN_KEY": ADMIN_KEY,
        "JWT_SECRET_KEY": "cluster-jwt-secret-not-for-production",
        "COZY_RATE_LIMIT_RPM": "60000",
        "COZY_RATE_LIMIT_BURST": "10000",
        **NO_SPEECH,
        **extra,
    }


@dataclass
class Node:
    name: str  # its server name in the proxy config
    process: ManagedProcess
    root_url: str

    @property
    def port(self) -> int:
        return int(self.root_url.rsplit(":", 1)[1])


@dataclass
class Cluster:
    """Two nodes on one database and Redis prefix, behind `proxy`."""

    nodes: dict[str, Node]
    proxy: Proxy
    upstream: StubLLMServer
    env: dict[str, str]
    config_dir: Path
    database: str
    prefix: str

    def other(self, name: str) -> str:
        (other,) = [n for n in self.nodes if n != name]
        return other

    def kill(self, name: str) -> None:
        """kill -9 of a node's whole process group: no shutdown code runs."""
        import os
        import signal

        node = self.nodes[name]
        os.killpg(node.process.pid, signal.SIGKILL)
        node.process.proc.wait(10)


def start_node(name: str, env: dict[str, str], config_dir: Path) -> Node:
    process, root = start_cozy_serve(env, config_dir=config_dir, ready_path="/ready", timeout=90)
    return Node(name, process, root)


@pytest.fixture(scope="module")
def cluster(stub_llm: StubLLMServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Two nodes and the proxy, for one test module (a module that kills a node gets its own)."""
    work = tmp_path_factory.mktemp("cluster")
    shutil.copytree(REPO_ROOT / "config", work / "config")
    shutil.copytree(REPO_ROOT / "personalities", work / "personalities")
    database, url = create_database("cozy_e2e")
    prefix = redis_prefix("cluster")
    env = node_env(stub_llm, DATABASE_URL=url, REDIS_URL=REDIS_URL, COZY_REDIS_PREFIX=prefix)
    nodes: dict[str, Node] = {}
    proxy: Proxy | None = None
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:  # at once: migrations take a lock
            futures = {name: pool.submit(start_node, name, env, work / "config") for name in NAMES}
            for name, future in futures.items():
                nodes[name] = future.result()
        proxy = start_haproxy({n: node.port for n, node in nodes.items()}, work)
        yield Cluster(nodes, proxy, stub_llm, env, work / "config", database, prefix)
    finally:
        if proxy is not None:
            proxy.stop()
        for node in nodes.values():
            node.process.stop()
        drop_database(database)
        drop_redis_prefix(prefix)


# --- helpers ---------------------------------------------------------------------------------
def auth() -> dict[str, str]:
    return {"authorization": f"Bearer {ADMIN_KEY}"}


def chat(
    client: httpx.Client, session_id: str, text: str, *, pin: str | None = None, stream: bool = False
) -> tuple[httpx.Response, str | None]:
    """One text turn of `session_id`; returns (response, reply text or None when not 200)."""
    body: dict[str, Any] = {
        "model": STUB_MODEL,
        "messages": [{"role": "user", "content": text}],
        "cozy": {"session_id": session_id},
        "stream": stream,
    }
    headers = {**auth(), **({PIN_HEADER: pin} if pin else {})}
    r = client.post("/v1/chat/completions", json=body, headers=headers, timeout=30)
    if r.status_code != 200:
        return r, None
    if not stream:
        return r, r.json()["choices"][0]["message"]["content"]
    import orjson

    pieces = []
    for line in r.text.splitlines():
        if line.startswith("data:") and line[5:].strip() != "[DONE]":
            chunk = orjson.loads(line[5:])
            assert "error" not in chunk, chunk
            pieces += [c["delta"].get("content") or "" for c in chunk["choices"]]
    return r, "".join(pieces)


def served_by(response: httpx.Response) -> str:
    return response.headers[NODE_HEADER]


def both_ready(root: str, timeout: float = 240) -> None:
    """/ready answers for one worker at a time: wait until each has said 200 (models loaded)."""
    deadline = time.monotonic() + timeout
    ready: set[str] = set()
    while len(ready) < 2:
        assert time.monotonic() < deadline, f"only {ready} became ready"
        r = httpx.get(f"{root}/ready", timeout=10)
        if r.status_code == 200:
            ready.add(r.headers["x-cozy-worker"])
        time.sleep(0.05)


def model_saw(upstream: StubLLMServer, last_user_text: str, timeout: float = 5) -> list[tuple[str, Any]]:
    """The conversation (system prompt left out) of the latest upstream request whose last
    message is the user's `last_user_text`."""
    deadline = time.monotonic() + timeout
    while True:
        for body in reversed(upstream.requests()):
            messages = body["messages"]
            if messages and messages[-1]["role"] == "user" and messages[-1].get("content") == last_user_text:
                return [(m["role"], m.get("content")) for m in messages if m["role"] != "system"]
        assert time.monotonic() < deadline, f"the model was never asked {last_user_text!r}"
        time.sleep(0.05)


def exchange(*texts: str) -> list[tuple[str, Any]]:
    """The history the stub builds for these user texts: each answered "Echo: <text>"."""
    return [x for t in texts for x in (("user", t), ("assistant", f"Echo: {t}"))]


def stored(client: httpx.Client, session_id: str) -> list[tuple[str, Any]]:
    """The session's stored messages (sessions API), as (role, content)."""
    r = client.get(f"/v1/chat/sessions/{session_id}/messages", params={"limit": 200}, headers=auth())
    assert r.status_code == 200, r.text
    return [(m["role"], m["content"]) for m in r.json()["data"]]


def wait_stored(client: httpx.Client, session_id: str, want: list[tuple[str, Any]], timeout: float = 10) -> None:
    """Until the session's stored messages are `want` (voice turns are written in the background)."""
    deadline = time.monotonic() + timeout
    while (got := stored(client, session_id)) != want:
        assert time.monotonic() < deadline, f"stored {got}, wanted {want}"
        time.sleep(0.2)
