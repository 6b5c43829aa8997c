"""Helpers for the auth/sessions e2e tests: users made through the admin API, raw HTTP with a
key, and direct reads of a server's database (to check what the API does not show, e.g. soft
deletes)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import httpx
import openai

from tests.e2e.conftest import ADMIN_KEY, CozyServer
from tests.support.pg import ADMIN_URL
from tests.support.procs import REPO_ROOT


def auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def make_user(server: CozyServer, role: str = "user", **fields: Any) -> tuple[dict[str, Any], str]:
    """A new user (unique name) and its API key, created by the bootstrap admin."""
    body = {"name": f"u{uuid.uuid4().hex[:10]}", "role": role, **fields}
    r = httpx.post(f"{server.root_url}/v1/admin/users", json=body, headers=auth(ADMIN_KEY), timeout=30)
    assert r.status_code == 201, r.text
    data = r.json()
    return data, data.pop("api_key")


def sdk(server: CozyServer, key: str, **kw: Any) -> openai.OpenAI:
    kw.setdefault("max_retries", 0)
    return openai.OpenAI(base_url=server.base_url, api_key=key, timeout=30, **kw)


def api(server: CozyServer, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.root_url, headers=auth(key), timeout=30)


def db_fetch(server: CozyServer, sql: str, *args: Any) -> list[dict[str, Any]]:
    """Rows from the server's own database (its DATABASE_URL was made by tests.support.pg)."""
    assert server.database, "this server was not given a throwaway database"
    base, _, _ = ADMIN_URL.rpartition("/")

    async def run() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(f"{base}/{server.database}")
        try:
            return [dict(r) for r in await conn.fetch(sql, *args)]
        finally:
            await conn.close()

    return asyncio.run(run())


def wait_for(fetch: Callable[[], Any], done: Callable[[Any], bool], timeout: float = 10.0) -> Any:
    """Poll `fetch()` until `done(result)`; returns the last result (asserting it is done)."""
    deadline = time.monotonic() + timeout
    while True:
        result = fetch()
        if done(result) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert done(result), result
    return result


def audit_events(server: CozyServer, **params: Any) -> list[dict[str, Any]]:
    r = httpx.get(f"{server.root_url}/v1/admin/audit", params=params, headers=auth(ADMIN_KEY), timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["data"]


def cozy_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`cozy ARGS --config <repo config>` in a subprocess, with `env` over this process's."""
    return subprocess.run(
        [sys.executable, "-m", "cozy_http.cli", *args, "--config", str(REPO_ROOT / "config")],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
