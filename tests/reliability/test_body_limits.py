"""Issue 10, item 1: every HTTP body is capped while it streams in, before auth or a route works.

Measured on a5a60c6: a 300 MB body POSTed to the public `POST /v1/auth/token` was read whole (the
process peaked at 1.18 GB, 400 after 3.2 s). Here the same bomb, with a Content-Length and chunked
from a generator, must get 413 VALIDATION_BODY_TOO_LARGE at once while the server's memory stays
flat (RSS sampled every 10 ms during the request, and the kernel's peak VmHWM), on the stock
configuration. JSON routes (authenticated or not) follow `api.max_body_bytes`; an upload route
follows its `api.max_body_bytes_by_route` override.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.reliability.conftest import ADMIN_KEY, CozyServer, assert_error_body, start_cozy_server
from tests.reliability.edge_helpers import config_copy
from tests.support.procs import StubLLMServer

MB = 1024 * 1024
BOMB = 300 * MB
NO_SPEECH = {"COZY_STT_ENABLED": "false", "COZY_TTS_ENABLED": "false", "COZY_VAD_ENABLED": "false"}
RSS_SLACK = 8 * MB  # "a few MB": allocator noise of a request or two; reading the bomb costs 300+ MB


def chunks(total: int, size: int = MB) -> Iterator[bytes]:
    """`total` bytes from a generator, so neither side needs them in memory at once."""
    block = b"a" * size
    sent = 0
    while sent < total:
        yield block
        sent += size


def vm_hwm(pid: int) -> int:
    """The process's peak resident set (VmHWM) in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


class RssWatch:
    """Samples a process's RSS every 10 ms while the block runs: the growth a request caused."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()

    def __enter__(self) -> RssWatch:
        self.base = self.proc.memory_info().rss
        self.hwm = vm_hwm(self.pid)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.01)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)
        self.hwm_growth = vm_hwm(self.pid) - self.hwm

    @property
    def growth(self) -> int:
        return self.peak - self.base


@pytest.fixture(scope="module")
def stock(stub_llm: StubLLMServer) -> Iterator[CozyServer]:
    """The shipped configuration (speech engines off, so no model load moves RSS meanwhile)."""
    server = start_cozy_server(stub_llm, NO_SPEECH)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def overridden(stub_llm: StubLLMServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CozyServer]:
    """A copy of config/ with a 1 MiB default cap and a 3 MiB override for `POST /v1/audio/stt`."""
    api = {"max_body_bytes": MB, "max_body_bytes_by_route": {"/v1/audio/stt": 3 * MB}}
    config = config_copy(tmp_path_factory.mktemp("body-limits"), api=api)
    server = start_cozy_server(stub_llm, NO_SPEECH, config_dir=config)
    try:
        yield server
    finally:
        server.stop()


def post(server: CozyServer, path: str, content: bytes | Iterator[bytes], **headers: str) -> httpx.Response:
    with httpx.Client(base_url=server.root_url, timeout=60) as http:
        return http.post(path, content=content, headers=headers)


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_token_bomb_is_refused_at_once_without_memory(stock: CozyServer, framing: str) -> None:
    headers = {"content-type": "application/json"}
    if framing == "content-length":
        headers["content-length"] = str(BOMB)  # declared: refused before a byte is read
    with RssWatch(stock.process.pid) as rss:
        started = time.perf_counter()
        response = post(stock, "/v1/auth/token", chunks(BOMB), **headers)
        elapsed = time.perf_counter() - started
    err = assert_error_body(response, 413, "VALIDATION_BODY_TOO_LARGE")
    assert "65536" in err["message"]  # the route's own cap (api.max_body_bytes_by_route)
    assert response.headers["connection"] == "close"  # the client stops uploading
    assert elapsed < 2.0, f"413 took {elapsed:.2f}s"
    assert rss.growth < RSS_SLACK, f"RSS grew {rss.growth / MB:.1f} MB"
    assert rss.hwm_growth < RSS_SLACK, f"peak RSS grew {rss.hwm_growth / MB:.1f} MB"
    # The server is fine, and a token request of normal size still works.
    ok = post(stock, "/v1/auth/token", b'{"username": "nobody", "password": "wrong"}')
    assert ok.status_code == 401, ok.text


def test_form_token_request_over_the_cap(stock: CozyServer) -> None:
    form = b"username=a&password=" + b"x" * (70 * 1024)
    response = post(stock, "/v1/auth/token", iter([form]), **{"content-type": "application/x-www-form-urlencoded"})
    assert_error_body(response, 413, "VALIDATION_BODY_TOO_LARGE")


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_json_routes_follow_max_body_bytes(overridden: CozyServer, framing: str) -> None:
    """Over `api.max_body_bytes` (1 MiB here): 413 on every JSON route, the body cut off at the cap."""
    auth = {"content-type": "application/json", "authorization": f"Bearer {ADMIN_KEY}"}
    length = {"content-length": str(2 * MB)} if framing == "content-length" else {}
    for path in ("/v1/chat/completions", "/v1/admin/users", "/v1/knowledge/default", "/v1/chat/sessions"):
        response = post(overridden, path, chunks(2 * MB, 64 * 1024), **auth, **length)
        assert_error_body(response, 413, "VALIDATION_BODY_TOO_LARGE")
    small = post(overridden, "/v1/chat/completions", iter([b'{"model": "stub-model"}']), **auth)
    assert small.status_code == 400, small.text  # under the cap: the route decides (no messages)


def test_declared_length_is_refused_before_auth(overridden: CozyServer) -> None:
    """No token and a Content-Length over the cap: 413 before auth looks anything up. (Chunked with
    no token: auth answers 401 without reading the body, so nothing is buffered either way.)"""
    headers = {"content-type": "application/json", "content-length": str(2 * MB)}
    assert_error_body(
        post(overridden, "/v1/chat/completions", chunks(2 * MB), **headers), 413, "VALIDATION_BODY_TOO_LARGE"
    )
    chunked = post(overridden, "/v1/chat/completions", chunks(2 * MB), **{"content-type": "application/json"})
    assert_error_body(chunked, 401, "AUTH_MISSING_TOKEN")


def test_upload_route_override(overridden: CozyServer) -> None:
    auth = {"authorization": f"Bearer {ADMIN_KEY}", "content-type": "audio/wav"}
    over = post(overridden, "/v1/audio/stt", chunks(4 * MB), **auth)
    assert_error_body(over, 413, "VALIDATION_BODY_TOO_LARGE")
    declared = post(overridden, "/v1/audio/stt", chunks(4 * MB), **auth, **{"content-length": str(4 * MB)})
    assert_error_body(declared, 413, "VALIDATION_BODY_TOO_LARGE")
    # Under the override (but over the 1 MiB default): the route gets the body and judges it.
    under = post(overridden, "/v1/audio/stt", chunks(2 * MB), **auth)
    assert under.status_code != 413, under.text
    # The other upload route has no override: it follows the file limit (25 MB + form fields).
    files = {"file": ("a.wav", b"\0" * (2 * MB))}
    with httpx.Client(base_url=overridden.root_url, timeout=60, headers={"authorization": auth["authorization"]}) as h:
        upload = h.post("/v1/audio/transcriptions", files=files, data={"model": "whisper-1"})
    assert upload.status_code != 413, upload.text
