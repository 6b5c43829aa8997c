"""`cozy serve --workers 2` on the embedded defaults (no DATABASE_URL, no REDIS_URL; its own data
dir): both workers answer on the one port, an admin change reaching one worker takes effect on
the other (PostgreSQL LISTEN/NOTIFY), a rate limit is one budget for both, so is a user's share
of conversations in a turn, a worker killed with SIGKILL is replaced, and SIGTERM drains every
worker and stops the embedded PostgreSQL, exit 0."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import sys
import time
import uuid
import wave
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pytest

from tests.cluster.conftest import both_ready
from tests.e2e.realtime_support import server_speech
from tests.support.procs import REPO_ROOT, ManagedProcess, free_port, start_process, start_stub_llm, wait_http_ok
from tests.webrtc.browser import CHROMIUM, Browser
from tests.webrtc.page import CONVERSATION, RECEIVED_ENERGY, click, start_page_call
from tests.webrtc.rtc_client import to_48k

ADMIN_KEY = "cozy-workers-bootstrap-admin-key-0123456789"
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}


@dataclass
class Node:
    process: ManagedProcess
    root: str
    data_dir: Path
    personalities: Path

    def worker_pids(self) -> dict[str, int]:
        """worker id -> pid of its latest incarnation, from the parent's log."""
        pids: dict[str, int] = {}
        for line in self.process.lines:
            if m := re.search(r"worker (\S+) started \(pid (\d+)\)", line):
                pids[m[1]] = int(m[2])
        return pids


def answers(root: str, path: str, headers: dict[str, str], want: int = 2, tries: int = 200) -> dict[str, int]:
    """GET `path` on fresh connections until `want` worker ids answered; worker id -> last status."""
    seen: dict[str, int] = {}
    for _ in range(tries):
        r = httpx.get(f"{root}{path}", headers=headers, timeout=10)
        seen[r.headers["x-cozy-worker"]] = r.status_code
        if len(seen) >= want:
            break
    return seen


def on_every_worker(root: str, path: str, headers: dict[str, str], status: int, within_s: float) -> float:
    """How long until both workers answered `path` with `status` (asserting it happened in time)."""
    started = time.monotonic()
    done: set[str] = set()
    seen: list[tuple[str, int]] = []
    while len(done) < 2:
        assert time.monotonic() - started < within_s, f"only {done or 'no worker'} answered {status}: {seen}"
        r = httpx.get(f"{root}{path}", headers=headers, timeout=10)
        seen.append((r.headers["x-cozy-worker"], r.status_code))
        if r.status_code == status:
            done.add(r.headers["x-cozy-worker"])
    return time.monotonic() - started


@pytest.fixture()
def node(tmp_path: Path) -> Iterator[Node]:
    shutil.copytree(REPO_ROOT / "config", tmp_path / "config")
    shutil.copytree(REPO_ROOT / "personalities", tmp_path / "personalities")
    obs = tmp_path / "config" / "observability.yaml"
    obs.write_text(obs.read_text().replace("access_log: true", "access_log: false"))  # keep the parent's lines
    sec = tmp_path / "config" / "security.yaml"  # the revocation check makes failed requests on purpose
    sec.write_text(sec.read_text().replace("per_client_burst: 20", "per_client_burst: 10000"))
    stub = start_stub_llm()
    port = free_port()
    env = {
        "DATABASE_URL": "",  # the embedded defaults, whatever this machine's environment says
        "REDIS_URL": "",
        "COZY_DATA_DIR": str(tmp_path / "data"),
        "COZY_LLM_BASE_URL": stub.base_url,
        "COZY_LLM_MODEL": "stub-model",
        "COZY_LLM_API_KEY": "stub",
        "COZY_BOOTSTRAP_ADMIN_KEY": ADMIN_KEY,
        "COZY_LOG_LEVEL": "info",
        "COZY_RATE_LIMIT_RPM": "60000",
        "COZY_RATE_LIMIT_BURST": "10000",
        "COZY_QUOTA_CONVERSATIONS": "2",
    }
    args = [sys.executable, "-m", "cozy_http.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    process = start_process([*args, "--config", str(tmp_path / "config"), "--workers", "2"], None, env=env)
    root = f"http://127.0.0.1:{port}"
    try:
        wait_http_ok(f"{root}/ready", timeout=240, process=process)
        both_ready(root)
        yield Node(process, root, tmp_path / "data", tmp_path / "personalities")
    finally:
        process.stop(grace=60)
        stub.stop()


def make_user(root: str, **fields: object) -> tuple[str, str]:
    body = {"name": f"u{uuid.uuid4().hex[:10]}", "role": "user", **fields}
    r = httpx.post(f"{root}/v1/admin/users", json=body, headers=ADMIN, timeout=30)
    assert r.status_code == 201, r.text
    return r.json()["id"], r.json()["api_key"]


def chat_turn(root: str, key: str, text: str) -> httpx.Response:
    """One turn of a new conversation (its own session id), as `key`, on a fresh connection."""
    body = {"model": "stub-model", "messages": [{"role": "user", "content": text}]}
    body["cozy"] = {"session_id": f"quota-{uuid.uuid4().hex}"}
    return httpx.post(f"{root}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}, timeout=60)


def postgres_running(data_dir: Path) -> bool:
    """PostgreSQL removes postmaster.pid when it stops cleanly; a stale one names a dead pid."""
    pid_file = data_dir / "postgres" / "postmaster.pid"
    if not pid_file.exists():
        return False
    try:
        os.kill(int(pid_file.read_text().split()[0]), 0)
    except ProcessLookupError:
        return False
    return True


def health(root: str) -> int:
    """GET /health; one retry of a connection reset: each worker has its own SO_REUSEPORT listener,
    and a connection the kernel had queued on the killed worker's listener is reset with it."""
    try:
        return httpx.get(f"{root}/health", timeout=10).status_code
    except (httpx.ReadError, httpx.RemoteProtocolError, httpx.ConnectError):
        return httpx.get(f"{root}/health", timeout=10).status_code


def test_two_workers_share_one_port_broadcasts_limits_and_drain(node: Node) -> None:
    root = node.root
    ids = answers(root, "/health", {})
    assert len(ids) == 2 and all(status == 200 for status in ids.values()), ids  # both workers serve the port
    pids = node.worker_pids()
    assert set(pids) == set(ids)

    # An admin reload reaching one worker takes effect on the other (LISTEN/NOTIFY, no Redis).
    pirate = (node.personalities / "assistant.yaml").read_text().replace("id: assistant", "id: pirate", 1)
    (node.personalities / "pirate.yaml").write_text(pirate.replace("name: Assistant", "name: Pirate", 1))
    assert set(answers(root, "/v1/personalities/pirate", ADMIN).values()) == {404}
    reload = httpx.post(f"{root}/v1/personalities/reload", headers=ADMIN, timeout=30)
    assert reload.status_code == 200
    on_every_worker(root, "/v1/personalities/pirate", ADMIN, 200, within_s=10)  # never, without the notice

    # A key revoked on one worker stops working on both at once (not after the 30 s auth cache).
    user_id, key = make_user(root)
    assert set(answers(root, "/v1/models", {"authorization": f"Bearer {key}"}).values()) == {200}  # cached on both
    keys = httpx.get(f"{root}/v1/admin/users/{user_id}/keys", headers=ADMIN, timeout=30).json()["data"]
    revoke = httpx.delete(f"{root}/v1/admin/users/{user_id}/keys/{keys[0]['id']}", headers=ADMIN, timeout=30)
    assert revoke.status_code == 204
    on_every_worker(root, "/v1/models", {"authorization": f"Bearer {key}"}, 401, within_s=10)  # cache: 30 s

    # One rate-limit budget for both workers: a burst of 3 allows 3 requests in all, not 3 per worker.
    _, limited = make_user(root, rate_limit_rpm=1, rate_limit_burst=3)
    statuses: dict[str, list[int]] = {}
    sent = 0
    while sent < 12 or (len(statuses) < 2 and sent < 100):  # until both workers took a share of them
        r = httpx.get(f"{root}/v1/models", headers={"authorization": f"Bearer {limited}"}, timeout=10)
        statuses.setdefault(r.headers["x-cozy-worker"], []).append(r.status_code)
        sent += 1
    flat = [s for per in statuses.values() for s in per]
    assert len(statuses) == 2, f"every request reached one worker ({statuses}): the check proves nothing"
    assert flat.count(200) == 3 and flat.count(429) == sent - 3, statuses

    # A user's conversations in a turn count on both workers (its share is 2 here): with two in a
    # turn, wherever they run, a third is refused by either worker; per-worker counts admit it.
    _, chatter = make_user(root)
    with ThreadPoolExecutor(2) as pool:
        busy = [pool.submit(chat_turn, root, chatter, "SLEEP 4 hi") for _ in range(2)]
        time.sleep(1.8)  # both turns are in the stub's sleep, and each worker has published its count
        refused: dict[str, int] = {}
        for _ in range(40):  # fresh connections until both workers have answered a third conversation
            r = chat_turn(root, chatter, "hi")
            refused[r.headers["x-cozy-worker"]] = r.status_code
            if len(refused) == 2:
                break
        assert [f.result().status_code for f in busy] == [200, 200]
    assert refused == dict.fromkeys(ids, 429), refused

    # kill -9 of one worker: the parent replaces it, the port keeps answering meanwhile.
    victim, pid = sorted(pids.items())[0]
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 120
    while node.worker_pids()[victim] == pid:
        assert time.monotonic() < deadline, node.process.output()[-3000:]
        assert health(root) == 200  # the other worker serves
        time.sleep(0.2)
    both_ready(root, timeout=120)  # the same worker id is back, in a new process
    assert set(answers(root, "/health", {})) == set(ids)

    # SIGTERM: every worker drains (its lifespan shutdown runs), PostgreSQL stops last, exit 0.
    before = len(node.process.lines)
    node.process.proc.send_signal(signal.SIGTERM)
    code = node.process.proc.wait(90)
    time.sleep(0.3)
    tail = list(node.process.lines)[before - 5 :]
    text = "\n".join(tail)
    assert code == 0, text
    assert text.count("Application shutdown complete") == 2, text
    assert "embedded PostgreSQL stopped" in text and text.index("Application shutdown complete") < text.index(
        "embedded PostgreSQL stopped"
    )
    assert not postgres_running(node.data_dir)
    for worker_pid in node.worker_pids().values():
        with pytest.raises(ProcessLookupError):
            os.kill(worker_pid, 0)


def test_workers_1_is_one_process_as_before(tmp_path: Path) -> None:
    """--workers 1 (the default): the process started answers itself, no parent, no children."""
    stub = start_stub_llm()
    port = free_port()
    env = {
        "DATABASE_URL": "",
        "REDIS_URL": "",
        "COZY_DATA_DIR": str(tmp_path / "data"),
        "COZY_LLM_BASE_URL": stub.base_url,
        "COZY_LLM_MODEL": "stub-model",
        "COZY_LLM_API_KEY": "stub",
        "COZY_LOG_LEVEL": "warning",
    }
    args = [sys.executable, "-m", "cozy_http.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    process = start_process([*args, "--workers", "1"], None, env=env)
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/health", timeout=240, process=process)
        r = httpx.get(f"http://127.0.0.1:{port}/health", timeout=10)
        assert r.headers["x-cozy-worker"] == f"{socket.gethostname()}-{process.pid}"
    finally:
        process.stop(grace=30)
        stub.stop()


async def test_the_ui_page_is_served_by_one_worker(node: Node, tmp_path: Path) -> None:
    """/ui under --workers 2: a page signed in through one connection stays signed in on every later
    connection, whichever worker the kernel hands it to (Gradio's sign-in, queue and call live in
    one process: the other worker relays to it), a browser that never signed in is asked to on
    both; and a real call from headless chromium works."""
    root = node.root
    signed_in: set[str] = set()
    for _ in range(40):  # sign in through both workers (the relay once kept the cookie it relayed)
        async with httpx.AsyncClient(timeout=60) as first:
            login = await first.post(f"{root}/ui/login", data={"username": "admin", "password": ADMIN_KEY})
            assert login.status_code == 200, login.text
            cookies = dict(first.cookies)
        assert cookies, login.headers
        signed_in.add(login.headers.get("x-cozy-forwarded-by") or login.headers["x-cozy-worker"])
        if len(signed_in) == 2:
            break
    assert len(signed_in) == 2, f"every sign-in reached one worker ({signed_in}): the check proves nothing"
    strangers: set[str] = set()
    for _ in range(40):  # a browser that never signed in is asked to, whichever worker it reaches
        async with httpx.AsyncClient(timeout=30) as stranger:
            r = await stranger.get(f"{root}/ui/config")
        assert r.status_code == 401, ("signed in without a sign-in", r.headers, r.text[:300])
        strangers.add(r.headers.get("x-cozy-forwarded-by") or r.headers["x-cozy-worker"])
        if len(strangers) == 2:
            break
    assert len(strangers) == 2, f"every connection reached one worker ({strangers}): the check proves nothing"
    receivers: set[str] = set()
    for _ in range(40):  # fresh connections: the kernel spreads them over both workers' listeners
        async with httpx.AsyncClient(timeout=30, cookies=cookies) as fresh:
            r = await fresh.get(f"{root}/ui/config")
        assert r.status_code == 200, (r.status_code, r.headers, r.text[:300])
        receivers.add(r.headers.get("x-cozy-forwarded-by") or r.headers["x-cozy-worker"])
        assert r.headers["x-cozy-worker"].endswith("-w0")  # answered by the page's worker
        if len(receivers) == 2:
            break
    assert len(receivers) == 2, f"every connection reached one worker ({receivers}): the check proves nothing"
    async with httpx.AsyncClient(timeout=30) as http:
        page = await http.get(f"{root}/ui/")
    assert page.status_code == 200 and "window.gradio_config" in page.text
    if CHROMIUM is None:
        pytest.fail("chromium is not installed (apt-get install chromium; .ci/run does)")
    question = to_48k(server_speech(f"{root}/v1", "What time is it in Paris right now?", ADMIN_KEY))
    wav = tmp_path / "mic.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes(np.concatenate([np.zeros(96000, np.int16), question, np.zeros(480000, np.int16)]).tobytes())
    browser = Browser(wav)
    try:
        await browser.start()
        await start_page_call(browser, SimpleNamespace(root_url=root), "Voice Concierge", ADMIN_KEY)  # type: ignore[arg-type]
        assert await browser.wait_js(RECEIVED_ENERGY + " .then(e => e > 0.05 && e)", 60, every=0.5) > 0.05
        shown = await browser.wait_js(CONVERSATION + " .then(c => c.assistant.some(t => t.final) && c)", 30)
        assert any("echo:" in t["text"].lower() for t in shown["assistant"]), shown
        await click(browser, "Hang up")
        await browser.wait_js("window.__pcs.every(pc => pc.connectionState === 'closed')", 10)
    finally:
        await browser.close()
