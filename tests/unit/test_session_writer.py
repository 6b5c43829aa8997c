"""The realtime session writer (issue 10, item 6): one ordered queue per session, retried with
backoff on storage errors, bounded flush, and nothing more once the session is deleted."""

from __future__ import annotations

from typing import Any

from cozy_actors.realtime.persist import SessionWriter, WritePolicy
from cozy_actors.storage.db import StorageUnavailable
from cozy_actors.storage.sessions import SessionGone

FAST = WritePolicy(retry_initial_s=0.01, retry_max_s=0.04, flush_on_stop_s=2.0)


class FlakyStore:
    """Fails the first `failures` appends with STORAGE_UNAVAILABLE, then stores in call order."""

    def __init__(self, failures: int = 0, gone_after: int | None = None) -> None:
        self.failures = failures
        self.gone_after = gone_after
        self.calls = 0
        self.stored: list[tuple[str, Any]] = []

    async def append(self, session_id: str, personality_id: str, messages: list[dict[str, Any]], **kw: Any) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise StorageUnavailable("the database is unavailable (message.append)")
        if self.gone_after is not None and len(self.stored) >= self.gone_after:
            raise SessionGone("session 's' not found (deleted)")
        self.stored.append((messages[0]["content"] if messages else "", kw.get("checkpoint")))


async def test_writes_are_stored_in_order_through_failures() -> None:
    store = FlakyStore(failures=4)
    writer = SessionWriter(store, "s", "assistant", FAST)  # type: ignore[arg-type]
    for i in range(3):
        writer.put([{"role": "user", "content": f"m{i}"}], checkpoint=f"c{i}")
    assert await writer.flush()
    assert store.stored == [("m0", "c0"), ("m1", "c1"), ("m2", "c2")]
    assert writer.retries == 4 and writer.pending == 0


async def test_flush_is_bounded_while_storage_is_down() -> None:
    store = FlakyStore(failures=10_000)
    writer = SessionWriter(store, "s", "assistant", FAST)  # type: ignore[arg-type]
    writer.put([{"role": "user", "content": "m"}])
    assert await writer.flush(timeout=0.2) is False
    assert writer.pending == 1
    await writer.close()


async def test_a_deleted_session_takes_no_more_writes() -> None:
    store = FlakyStore(gone_after=1)
    writer = SessionWriter(store, "s", "assistant", FAST)  # type: ignore[arg-type]
    ended: list[bool] = []
    writer.on_gone = lambda: ended.append(True)
    for i in range(3):
        writer.put([{"role": "user", "content": f"m{i}"}])
    assert await writer.flush()
    writer.put([{"role": "user", "content": "late"}])
    assert await writer.flush()
    assert store.stored == [("m0", None)] and writer.gone and ended == [True]
