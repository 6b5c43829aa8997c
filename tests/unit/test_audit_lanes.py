"""The audit log's two lanes (issue 10, item 4): admin actions are never dropped, however many
refused tokens arrive while the writer lags; only `auth.failed` is bounded, and drops are counted.
Also the client-address rule that the per-address limits use (cozy_http.client_address)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import REGISTRY

from cozy_actors.audit import SAMPLED_TOPIC, TOPIC, AuditLog
from cozy_actors.queue import QueuePolicy, WriteQueue
from cozy_http.client_address import ClientAddress


async def test_admin_events_are_kept_while_a_flood_of_auth_failures_overflows() -> None:
    queue = WriteQueue(QueuePolicy(batch_size=100))  # the real in-process queue
    written: list[dict[str, Any]] = []

    async def slow_insert(batch: list[dict[str, Any]]) -> None:
        await asyncio.sleep(0.01)  # a database that cannot keep up with the flood
        written.extend(batch)

    audit = AuditLog(queue, sampled_buffer=1000)
    audit.attach(slow_insert)
    await queue.start()
    await audit.start()
    dropped_before = REGISTRY.get_sample_value("cozy_audit_dropped_total") or 0.0
    for i in range(30_000):  # all recorded within one loop turn: the pump has no chance meanwhile
        audit.record("auth.failed", outcome="denied", detail={"reason": "unknown_key"})
        if i % 1000 == 0:
            audit.record("user.create", resource=f"user:u{i}")
            audit.record("admin.config.read", request_id=f"req_{i}")
    await audit.stop(timeout=30)
    await queue.stop(timeout=30)
    kept = [e for e in written if e["type"] != "auth.failed"]
    assert len(kept) == 60, len(kept)
    assert sum(e["type"] == "auth.failed" for e in written) <= 1000
    assert (REGISTRY.get_sample_value("cozy_audit_dropped_total") or 0.0) - dropped_before >= 29_000
    assert TOPIC in queue.backlog() and SAMPLED_TOPIC in queue.backlog()


async def test_events_recorded_before_start_are_written_once_it_starts() -> None:
    queue = WriteQueue(QueuePolicy())
    written: list[dict[str, Any]] = []

    async def insert(batch: list[dict[str, Any]]) -> None:
        written.extend(batch)

    audit = AuditLog(queue)
    audit.attach(insert)
    audit.record("auth.bootstrap")
    await queue.start()
    await audit.start()
    await audit.stop()
    await queue.stop()
    assert [e["type"] for e in written] == ["auth.bootstrap"]


@pytest.mark.parametrize(
    ("trusted", "peer", "xff", "client"),
    [
        ([], "198.51.100.1", "203.0.113.9", "198.51.100.1"),  # no trusted proxies: the header is ignored
        (["127.0.0.1"], "198.51.100.1", "203.0.113.9", "198.51.100.1"),  # an untrusted peer's header too
        (["127.0.0.1"], "127.0.0.1", "203.0.113.9", "203.0.113.9"),
        (["127.0.0.1"], "127.0.0.1", "6.6.6.6, 203.0.113.9", "203.0.113.9"),  # right-most untrusted
        (["127.0.0.1", "10.0.0.0/8"], "127.0.0.1", "203.0.113.9, 10.1.2.3", "203.0.113.9"),  # hops skipped
        (["127.0.0.1"], "127.0.0.1", "", "127.0.0.1"),  # a proxy that sent no header: the proxy itself
        (["127.0.0.1"], "127.0.0.1", "nonsense, 203.0.113.9", "203.0.113.9"),
        (["127.0.0.1"], "127.0.0.1", "203.0.113.9:4711", "203.0.113.9"),
        (["::1"], "::1", "2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),  # IPv6 keyed by its /64
        ([], "::ffff:198.51.100.1", "", "198.51.100.1"),
    ],
)
def test_client_address(trusted: list[str], peer: str, xff: str, client: str) -> None:
    headers = [(b"x-forwarded-for", xff.encode())] if xff else []
    scope = {"type": "http", "client": (peer, 50000), "headers": headers}
    assert ClientAddress(trusted)(scope) == client
