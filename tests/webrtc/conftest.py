"""WebRTC fixtures: one real `cozy serve` (stub upstream, bundled speech models, fastrtc preloaded)
for the package, and a spoken question made by its own TTS."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from tests.e2e.conftest import CozyServer, start_cozy_server
from tests.e2e.realtime_support import server_speech
from tests.support.procs import StubLLMServer, wait_http_ok
from tests.webrtc.rtc_client import to_48k

CONCURRENCY = 3
QUESTION = "What time is it in Paris right now?"


@pytest.fixture(scope="package")
def rtc_server(stub_llm: StubLLMServer) -> Iterator[CozyServer]:
    server = start_cozy_server(
        stub_llm,
        {"COZY_WEBRTC_PRELOAD": "true", "COZY_WEBRTC_CONCURRENCY": str(CONCURRENCY), "COZY_LOG_LEVEL": "info"},
    )
    try:
        wait_http_ok(f"{server.root_url}/ready", timeout=90, process=server.process)  # speech models loaded
        yield server
    finally:
        server.stop()


def speak(server: CozyServer, text: str) -> np.ndarray:
    """`text` spoken by the server's bundled voice, as int16 48 kHz (what a browser microphone sends)."""
    return to_48k(server_speech(server.base_url, text))


@pytest.fixture(scope="package")
def question(rtc_server: CozyServer) -> np.ndarray:
    return speak(rtc_server, QUESTION)
