"""End-to-end fixtures: a real `cozy serve` subprocess in front of the stub upstream, real clients.

The server runs with the repository's own config/ and personalities/, and its OpenAI-compatible
upstream (`stub-model`) pointing at the session's stub LLM (tests/support/stub_llm.py), so every
test goes openai SDK -> HTTP -> CozyEngine -> HTTP -> stub and back, with nothing mocked.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.pg import REDIS_URL, create_database, drop_database, drop_redis_prefix, redis_prefix
from tests.support.procs import REPO_ROOT, ManagedProcess, StubLLMServer, start_cozy_serve

STUB_MODEL = "stub-model"
ADMIN_KEY = "cozy-e2e-bootstrap-admin-key-0123456789"  # COZY_BOOTSTRAP_ADMIN_KEY of every e2e server
LOCAL_MODEL = "smollm2-135m"
MAX_TOOL_ITERATIONS = 3
ERROR_KEYS = {"message", "type", "param", "code", "request_id"}


@dataclass
class CozyServer:
    """A running `cozy serve`: `base_url` is the OpenAI base (`.../v1`), `root_url` the bare origin."""

    process: ManagedProcess
    root_url: str
    upstream: StubLLMServer
    database: str | None = None  # the throwaway database it uses (None: given by the caller)
    redis_prefix: str | None = None

    def stop(self) -> None:
        """Stop the server, then drop its database and Redis keys."""
        self.process.stop()
        if self.database:
            drop_database(self.database)
        if self.redis_prefix:
            drop_redis_prefix(self.redis_prefix)

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    def output(self) -> str:
        """The server's recent stdout/stderr (merged), for assertion messages."""
        return self.process.output()

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every Prometheus sample as {(name, sorted labels): value}."""
        response = httpx.get(f"{self.root_url}/metrics", timeout=10)
        assert response.status_code == 200, response.text
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text)
            for s in family.samples
        }

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of `name` whose labels include `labels` (0 when there are none)."""
        wanted = set(labels.items())
        return sum(v for (n, lbl), v in self.metrics().items() if n == name and wanted <= set(lbl))


def start_cozy_server(
    upstream: StubLLMServer,
    extra_env: dict[str, str] | None = None,
    timeout: float = 60,
    config_dir: Path | None = None,
) -> CozyServer:
    """Start `cozy serve` on a free port against `upstream`; raise with the server's output if it
    exits or does not answer /health in time.

    Isolation: unless `extra_env` names them, the server gets a fresh database on the machine's
    PostgreSQL (DATABASE_URL) and its own key prefix on the machine's Redis, both removed by
    `CozyServer.stop()` (or at exit). Auth is on; ADMIN_KEY is its bootstrap admin key."""
    extra_env = dict(extra_env or {})
    database = prefix = None
    if "DATABASE_URL" not in extra_env:
        database, extra_env["DATABASE_URL"] = create_database("cozy_e2e")
    if "REDIS_URL" not in extra_env:
        extra_env["REDIS_URL"] = REDIS_URL
    if "COZY_REDIS_PREFIX" not in extra_env:
        prefix = extra_env["COZY_REDIS_PREFIX"] = redis_prefix("e2e")
    env = {
        "COZY_LLM_BASE_URL": upstream.base_url,
        "COZY_LLM_MODEL": STUB_MODEL,
        "COZY_LLM_API_KEY": "stub",
        "COZY_LOG_LEVEL": "warning",
        "COZY_MAX_TOOL_ITERATIONS": str(MAX_TOOL_ITERATIONS),
        "COZY_BOOTSTRAP_ADMIN_KEY": ADMIN_KEY,
        "JWT_SECRET_KEY": "e2e-jwt-secret-not-for-production",
        "COZY_RATE_LIMIT_RPM": "60000",  # rate-limit tests use keys with their own, low limits
        "COZY_RATE_LIMIT_BURST": "10000",
        **extra_env,
    }
    try:  # another config dir: e.g. a copy of config/ with test MCP servers
        process, root = start_cozy_serve(
            env, config_dir=config_dir or REPO_ROOT / "config", ready_path="/health", timeout=timeout
        )
    except BaseException:
        if database:
            drop_database(database)
        raise
    return CozyServer(process, root, upstream, database, prefix)


@pytest.fixture(scope="session")
def cozy_server(stub_llm: StubLLMServer) -> Iterator[CozyServer]:
    """One CozyEngine server for all e2e tests, its `stub-model` backed by the session's stub."""
    server = start_cozy_server(stub_llm)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def upstream(cozy_server: CozyServer) -> StubLLMServer:
    """The stub upstream, with its recorded requests cleared for this test."""
    cozy_server.upstream.clear()
    return cozy_server.upstream


@pytest.fixture(scope="session")
def client(cozy_server: CozyServer) -> Iterator[openai.OpenAI]:
    """Synchronous openai SDK client (no retries, so 409/5xx surface at once)."""
    with openai.OpenAI(base_url=cozy_server.base_url, api_key=ADMIN_KEY, max_retries=0, timeout=30) as c:
        yield c


@pytest.fixture
async def aclient(cozy_server: CozyServer) -> AsyncIterator[openai.AsyncOpenAI]:
    """Async openai SDK client (per test: it is bound to the test's event loop)."""
    async with openai.AsyncOpenAI(base_url=cozy_server.base_url, api_key=ADMIN_KEY, max_retries=0, timeout=30) as c:
        yield c


@pytest.fixture
def http(cozy_server: CozyServer) -> Iterator[httpx.Client]:
    """Raw HTTP client on the server's origin, for wire-level checks."""
    with httpx.Client(base_url=cozy_server.root_url, timeout=30, headers={"authorization": f"Bearer {ADMIN_KEY}"}) as c:
        yield c


# --- helpers shared by the e2e modules -------------------------------------------------------
def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def new_session_id() -> str:
    return f"e2e-{uuid.uuid4().hex}"


def tool_names(body: dict[str, Any]) -> list[str]:
    """Names of the tools an upstream request offered, in order."""
    return [t["function"]["name"] for t in body.get("tools") or []]


def sse_events(text: str) -> list[str]:
    """The `data:` payloads of an SSE body, in order (including a final `[DONE]`)."""
    out = []
    for block in text.split("\n\n"):
        for line in block.splitlines():
            if line.startswith("data:"):
                out.append(line[5:].strip())
    return out


def assert_error_body(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is an OpenAI-shaped CozyEngine error; returns the inner error object."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert ERROR_KEYS <= set(err), err
    assert isinstance(err["message"], str) and err["message"]
    assert isinstance(err["type"], str) and err["type"]
    assert err["code"] == code, err
    assert err["param"] is None or isinstance(err["param"], str)
    assert isinstance(err["request_id"], str) and err["request_id"]
    assert response.headers["x-request-id"] == err["request_id"]
    return err
