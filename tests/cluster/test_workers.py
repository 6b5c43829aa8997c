"""`cozy serve --workers 2` on the embedded defaults (issue 11, items 4 and 6): no DATABASE_URL, no
REDIS_URL; one port, two worker processes, one embedded PostgreSQL. Each request goes on a fresh
connection, so the kernel spreads them over the workers (`x-cozy-worker` says which answered):
one session's turns must see the whole history whichever worker answers, and an admin change made
through one worker (personalities reloaded, a key revoked) must reach the other at once, over
PostgreSQL LISTEN/NOTIFY since there is no Redis."""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.cluster.conftest import auth, both_ready, chat, exchange, model_saw, node_env
from tests.support.procs import (
    REPO_ROOT,
    ManagedProcess,
    StubLLMServer,
    cozy_serve_args,
    free_port,
    start_process,
    wait_http_ok,
)

pytestmark = pytest.mark.timeout(150)
WORKER_HEADER = "x-cozy-worker"


@dataclass
class Workers:
    process: ManagedProcess
    root_url: str
    personalities: Path
    upstream: StubLLMServer

    def fresh(self, method: str, path: str, key: str | None = None, **kw: object) -> tuple[httpx.Response, str]:
        """One request on a new connection; returns it and the worker that answered."""
        headers = auth() if key is None else {"authorization": f"Bearer {key}"}
        with httpx.Client(base_url=self.root_url, timeout=30) as client:
            r = client.request(method, path, headers=headers, **kw)  # type: ignore[arg-type]
        assert WORKER_HEADER in r.headers, f"no {WORKER_HEADER} header on {method} {path}: {dict(r.headers)}"
        return r, r.headers[WORKER_HEADER]


@pytest.fixture(scope="module")
def workers(stub_llm: StubLLMServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    work = tmp_path_factory.mktemp("workers")
    shutil.copytree(REPO_ROOT / "config", work / "config")
    shutil.copytree(REPO_ROOT / "personalities", work / "personalities")
    env = node_env(stub_llm, DATABASE_URL="", REDIS_URL="", COZY_DATA_DIR=str(tmp_path_factory.mktemp("cozy-data")))
    port = free_port()
    process = start_process([*cozy_serve_args(port, work / "config"), "--workers", "2"], None, env=env)
    try:
        root = f"http://127.0.0.1:{port}"
        wait_http_ok(f"{root}/ready", timeout=120, process=process)
        both_ready(root, timeout=120)  # a worker still loading models gets no connection: turns would not alternate
        yield Workers(process, root, work / "personalities", stub_llm)
    finally:
        process.stop(grace=15)


def by_worker(ask: Callable[[], tuple[int, str]], want: Callable[[dict[str, int]], bool], timeout: float) -> dict:
    """Ask on fresh connections until `want({worker: latest status})` holds; returns that map."""
    latest: dict[str, int] = {}
    deadline = time.monotonic() + timeout
    while not want(latest):
        assert time.monotonic() < deadline, f"after {timeout:g} s the workers answered {latest}"
        status, worker = ask()
        latest[worker] = status
    return latest


def both(status: int) -> Callable[[dict[str, int]], bool]:
    return lambda latest: len(latest) == 2 and set(latest.values()) == {status}


def test_alternating_workers_see_the_whole_history(workers: Workers) -> None:
    session = f"cl-workers-{uuid.uuid4().hex[:12]}"
    texts: list[str] = []
    served: list[str] = []
    returns = 0  # turns answered by a worker that had answered before, after the other one did
    while returns < 2 or len(texts) < 6:
        # 20 turns: the whole history still fits the prompt's token budget (context.max_prompt_tokens)
        # and the personality's 50 messages; with SO_REUSEPORT the kernel spreads fresh connections.
        assert len(texts) < 20, f"the turns never went back and forth between two workers: {served}"
        text = f"t{len(texts)} {session}"
        with httpx.Client(base_url=workers.root_url) as client:  # a new connection each turn
            r, reply = chat(client, session, text)
        assert r.status_code == 200, r.text
        assert reply == f"Echo: {text}"
        worker = r.headers.get(WORKER_HEADER)
        assert worker, f"no {WORKER_HEADER} header: {dict(r.headers)}"
        if served and served[-1] != worker and worker in served:
            returns += 1
        served.append(worker)
        saw = model_saw(workers.upstream, text)
        assert saw == [*exchange(*texts), ("user", text)], (
            f"turn {len(texts)} on worker {worker} (turns so far on {served[:-1]}): "
            f"the model saw {sum(1 for role, _ in saw if role == 'user') - 1} earlier user messages, "
            f"wanted {len(texts)}: {saw}"
        )
        texts.append(text)
    assert len(set(served)) == 2, served


def test_admin_changes_reach_both_workers(workers: Workers) -> None:
    pirate = (workers.personalities / "assistant.yaml").read_text().replace("id: assistant", "id: pirate", 1)
    (workers.personalities / "pirate.yaml").write_text(pirate.replace("name: Assistant", "name: Pirate", 1))

    def personality() -> tuple[int, str]:
        r, worker = workers.fresh("GET", "/v1/personalities/pirate")
        return r.status_code, worker

    by_worker(personality, both(404), timeout=10)  # neither worker has read the new file yet
    r, _ = workers.fresh("POST", "/v1/personalities/reload")
    assert r.status_code == 200, r.text
    by_worker(personality, both(200), timeout=3)

    r, _ = workers.fresh("POST", "/v1/admin/users", json={"name": f"u{uuid.uuid4().hex[:10]}", "role": "user"})
    assert r.status_code == 201, r.text
    account = r.json()
    key = account.pop("api_key")

    def models() -> tuple[int, str]:
        r, worker = workers.fresh("GET", "/v1/models", key=key)
        return r.status_code, worker

    by_worker(models, both(200), timeout=10)  # both workers have now cached the key
    keys = workers.fresh("GET", f"/v1/admin/users/{account['id']}/keys")[0].json()["data"]
    r, _ = workers.fresh("DELETE", f"/v1/admin/users/{account['id']}/keys/{keys[0]['id']}")
    assert r.status_code == 204, r.text
    by_worker(models, both(401), timeout=2)  # far inside the 30 s auth cache: the other worker was told
