"""The OpenAPI document, fuzzed with schemathesis against a real `cozy serve` (issue 10, item 9).

Every operation of the live GET /openapi.json gets generated requests, valid and invalid
(schemathesis's examples, coverage and fuzzing phases), sent as the bootstrap admin. For every
response: no 5xx, and every 4xx carries the documented error body
`{"error": {"message", "type", "code", "param", "request_id"}}` with the `x-request-id` header.
The example count is bounded (MAX_EXAMPLES per operation and phase) so the module fits CI.

Why the engine (`schemathesis.engine.from_schema`, what `schemathesis run` drives) and not
`schemathesis.pytest.from_fixture`: the lazy pytest loader of schemathesis 4.32 sets
`node._nodeid`, which pytest 9.2 no longer has, so it fails before sending a request.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from schemathesis.engine import Status, events

from benchmarks.realtime_latency import config_dir
from tests.reliability.conftest import ADMIN_KEY, ERROR_KEYS, CozyServer, start_cozy_server
from tests.support.procs import StubLLMServer

MAX_EXAMPLES = 100  # per operation and phase: ~4,000 requests, under a minute on 2 loaded cores

# Operations not fuzzed, each for a reason (nothing else is left out):
EXCLUDED = {
    # Disabling or re-roling users and revoking keys: generated ids could hit the test's own admin
    # (the server refuses "yourself" and "the last admin", but users the fuzzer created would be
    # disabled mid-run); covered by tests/e2e/test_admin_users.py.
    ("PATCH", "/v1/admin/users/{user_id}"),
    ("DELETE", "/v1/admin/users/{user_id}/keys/{key_id}"),
    # A WebSocket upgrade documented for discovery only: a plain GET is not the protocol
    # (tests/reliability/test_realtime_fuzz.py covers the realtime WebSocket).
    ("GET", "/v1/audio/stt/stream"),
}


@schemathesis.check
def cozy_error_shape(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx/5xx is the documented OpenAI-shaped error with the request id."""
    if response.status_code < 400:
        return None
    content_type = (response.headers.get("content-type") or [""])[0]
    assert content_type.startswith("application/json"), f"error with content-type {content_type!r}"
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, f"error body is not {{'error': ...}}: {body!r}"
    err = body["error"]
    assert isinstance(err, dict) and ERROR_KEYS <= set(err), f"error lacks {ERROR_KEYS}: {err!r}"
    for key in ("message", "type", "code", "request_id"):
        assert isinstance(err[key], str) and err[key], f"error.{key} is not a non-empty string: {err!r}"
    assert err["param"] is None or isinstance(err["param"], str), f"error.param: {err!r}"
    request_id = (response.headers.get("x-request-id") or [""])[0]
    assert request_id == err["request_id"], f"x-request-id {request_id!r} != {err['request_id']!r}"
    return None


@pytest.fixture(scope="module")
def fuzz_server(stub_llm: StubLLMServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CozyServer]:
    """The stock config with the benchmarks' stub speech engines (the stub upstream's /audio routes
    through the real remote providers): the edge is what is fuzzed, and piper reading 4096 generated
    characters at speed 0.25 takes over 30 s of a loaded 2-core machine per request."""
    server = start_cozy_server(
        stub_llm, config_dir=config_dir("stub", stub_llm.base_url, tmp_path_factory.mktemp("cfg"))
    )
    try:
        yield server
    finally:
        server.stop()


def _failures(event: events.ScenarioFinished) -> list[str]:
    out = []
    for checks in event.recorder.checks.values():
        for check in checks:
            if check.status == Status.FAILURE and check.failure_info is not None:
                info = check.failure_info
                out.append(
                    f"{event.label} [{check.name}] {info.failure.title}: {info.failure.message}\n  {info.code_sample}"
                )
    return out


@pytest.mark.timeout(300)
def test_openapi_fuzz(fuzz_server: CozyServer) -> None:
    schema = schemathesis.openapi.from_url(f"{fuzz_server.root_url}/openapi.json")
    schema = schema.exclude(func=lambda ctx: (ctx.operation.method.upper(), ctx.operation.path) in EXCLUDED)
    schema.config.update(
        base_url=fuzz_server.root_url, headers={"authorization": f"Bearer {ADMIN_KEY}"}, request_timeout=30
    )
    schema.config.phases.update(phases=["examples", "coverage", "fuzzing"])
    schema.config.checks.update(included_check_names=["not_a_server_error", "cozy_error_shape"])
    schema.config.generation.update(max_examples=MAX_EXAMPLES, deterministic=True, database="none")
    failures: list[str] = []
    errors: list[str] = []
    tested: set[str] = set()
    for event in schemathesis.engine.from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            if event.label:
                tested.add(event.label)
            failures.extend(_failures(event))
        elif isinstance(event, events.NonFatalError):
            errors.append(f"{event.label}: {event.info}")
        elif isinstance(event, events.FatalError):
            raise event.exception
    assert not errors, "\n".join(errors)
    assert not failures, (
        f"{len(failures)} failures:\n" + "\n".join(dict.fromkeys(failures)) + fuzz_server.output()[-6000:]
    )
    assert "Traceback" not in fuzz_server.output(), fuzz_server.output()[-6000:]  # nor a failed background task
    assert len(tested) >= 25, sorted(tested)  # the whole document was exercised, not a fragment of it
