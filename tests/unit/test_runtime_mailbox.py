"""Mailbox: control lane priority, overflow policies, close/drain semantics."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY

from cozy_actors.runtime import Mailbox, MailboxClosed, MailboxFull


def rejected(kind: str, lane: str) -> float:
    return REGISTRY.get_sample_value("cozy_mailbox_rejected_total", {"kind": kind, "lane": lane}) or 0.0


async def test_control_lane_is_delivered_before_queued_data() -> None:
    mb = Mailbox(maxsize=16)
    for i in range(5):
        mb.put(("data", i))
    mb.put(("ctl", "interrupt"), control=True)
    mb.put(("data", 5))
    mb.put(("ctl", "cancel"), control=True)
    got = [await mb.get() for _ in range(len(mb))]
    assert got[:2] == [("ctl", "interrupt"), ("ctl", "cancel")]
    assert got[2:] == [("data", i) for i in range(6)]


async def test_reject_policy_raises_and_counts() -> None:
    mb = Mailbox(maxsize=2, overflow="reject", kind="mb_reject")
    before = rejected("mb_reject", "data")
    mb.put(1)
    mb.put(2)
    with pytest.raises(MailboxFull):
        mb.put(3)
    assert rejected("mb_reject", "data") == before + 1
    assert [await mb.get(), await mb.get()] == [1, 2]


async def test_drop_oldest_discards_oldest_data_and_reports_it() -> None:
    dropped: list[int] = []
    mb = Mailbox(maxsize=3, overflow="drop_oldest", kind="mb_drop", on_drop=dropped.append)
    before = rejected("mb_drop", "data")
    for i in range(6):
        mb.put(i)
    assert dropped == [0, 1, 2]
    assert rejected("mb_drop", "data") == before + 3
    assert mb.drain_nowait() == [3, 4, 5]


async def test_full_control_lane_always_raises_even_with_drop_oldest() -> None:
    mb = Mailbox(maxsize=4, overflow="drop_oldest", control_maxsize=2, kind="mb_ctl")
    before = rejected("mb_ctl", "control")
    mb.put("a", control=True)
    mb.put("b", control=True)
    with pytest.raises(MailboxFull):
        mb.put("c", control=True)
    assert rejected("mb_ctl", "control") == before + 1
    assert mb.drain_nowait() == ["a", "b"]


async def test_get_waits_for_put() -> None:
    mb = Mailbox()
    getter = asyncio.create_task(mb.get())
    await asyncio.sleep(0.01)
    assert not getter.done()
    mb.put("hello")
    assert await asyncio.wait_for(getter, 1) == "hello"


async def test_close_refuses_puts_but_keeps_queued_items_then_raises() -> None:
    mb = Mailbox()
    mb.put("queued")
    mb.close()
    assert mb.closed
    with pytest.raises(MailboxClosed):
        mb.put("late")
    assert await mb.get() == "queued"
    with pytest.raises(MailboxClosed):
        await mb.get()


async def test_close_wakes_a_waiting_consumer() -> None:
    mb = Mailbox()
    getter = asyncio.create_task(mb.get())
    await asyncio.sleep(0.01)
    mb.close()
    with pytest.raises(MailboxClosed):
        await asyncio.wait_for(getter, 1)


async def test_drain_nowait_returns_control_first_and_empties() -> None:
    mb = Mailbox()
    mb.put("d1")
    mb.put("c1", control=True)
    mb.put("d2")
    assert mb.drain_nowait() == ["c1", "d1", "d2"]
    assert len(mb) == 0


def test_invalid_configuration_is_refused() -> None:
    with pytest.raises(ValueError):
        Mailbox(maxsize=0)
    with pytest.raises(ValueError):
        Mailbox(overflow="block")  # type: ignore[arg-type]


async def test_byte_bound_refuses_what_would_overflow_it() -> None:
    """Bounded in bytes too: 256 small slots must not hold 256 huge messages (issue 10)."""
    mb = Mailbox(maxsize=256, overflow="drop_oldest", max_bytes=100, kind="mb_bytes")
    mb.put("a", nbytes=60)
    mb.put("ctl", control=True, nbytes=30)
    with pytest.raises(MailboxFull, match="byte limit"):
        mb.put("b", nbytes=20)  # even drop_oldest refuses: old audio must not make room for a flood
    assert mb.nbytes == 90
    mb.put("tiny", nbytes=10)
    assert [await mb.get() for _ in range(3)] == ["ctl", "a", "tiny"]
    assert mb.nbytes == 0
    mb.put("c", nbytes=100)
    assert mb.drain_nowait() == ["c"] and mb.nbytes == 0


async def test_byte_bound_follows_drop_oldest() -> None:
    mb = Mailbox(maxsize=2, overflow="drop_oldest", max_bytes=1000)
    mb.put(1, nbytes=400)
    mb.put(2, nbytes=300)
    mb.put(3, nbytes=200)  # the count drops 1 (400 bytes) first
    assert mb.nbytes == 500
    assert [await mb.get(), await mb.get()] == [2, 3]
