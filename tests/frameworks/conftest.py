"""Fixtures for the framework tests: one real `cozy serve` on embedded defaults for the package.

The server runs as a subprocess on a free port with its embedded PostgreSQL in a throwaway data
dir and no Redis (the defaults a user gets from `cozy serve`), the repository's config/, the
stub LLM (real HTTP/SSE, tests/support/stub_llm.py) as its model and the bundled speech models.
The frameworks (OpenAI Agents SDK, Pipecat, LiveKit Agents) connect to its `WS /v1/realtime`
exactly as they would to OpenAI; nothing in between is mocked.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.realtime_support import server_speech
from tests.support.procs import REPO_ROOT, StubLLMServer, bench_server_env, start_cozy_serve

API_KEY = "cozy-frameworks-admin-key-0123456789"
QUESTION = "What is the weather like in Paris today?"
INTERRUPTION = "Stop, wait a moment please."


@dataclass
class FrameworkServer:
    """A running `cozy serve`: `root_url` is the bare origin (http://127.0.0.1:<port>)."""

    root_url: str
    upstream: StubLLMServer

    @property
    def http_base(self) -> str:
        return f"{self.root_url}/v1"

    @property
    def realtime_url(self) -> str:
        return f"{self.root_url.replace('http://', 'ws://')}/v1/realtime"


@pytest.fixture(scope="session")
def framework_server(stub_llm: StubLLMServer) -> Iterator[FrameworkServer]:
    tmp = Path(tempfile.mkdtemp(prefix="cozy-frameworks-"))
    env = bench_server_env(stub_llm.base_url, API_KEY, tmp / "data")
    process, root = start_cozy_serve(env, config_dir=REPO_ROOT / "config", ready_path="/ready", timeout=120)
    try:
        yield FrameworkServer(root, stub_llm)
    finally:
        process.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _speak(server: FrameworkServer, text: str) -> bytes:
    """PCM16 24 kHz mono of `text`, spoken by the server's bundled piper voice."""
    pcm = server_speech(server.http_base, text, API_KEY)
    assert len(pcm) > 48_000, "less than a second of speech"
    return pcm


@pytest.fixture(scope="session")
def question_pcm(framework_server: FrameworkServer) -> bytes:
    return _speak(framework_server, QUESTION)


@pytest.fixture(scope="session")
def interruption_pcm(framework_server: FrameworkServer) -> bytes:
    return _speak(framework_server, INTERRUPTION)


def silence(ms: int) -> bytes:
    """PCM16 24 kHz silence (what a microphone sends after the user stops talking)."""
    return b"\0\0" * (24 * ms)
