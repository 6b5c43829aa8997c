"""EventFanout: a WebRTC call's events reach its sideband watchers as copies, and a broken watcher
cannot take the call's own transport down."""

from __future__ import annotations

from typing import Any

from cozy_actors.realtime.fanout import EventFanout


def test_subscribers_get_their_own_copies() -> None:
    primary: list[dict[str, Any]] = []
    watcher: list[dict[str, Any]] = []
    fanout = EventFanout(primary.append)
    fanout({"type": "session.created"})  # nobody watching: straight through
    detach = fanout.subscribe(lambda e: watcher.append(e) or e.update(event_id="w1", type="renamed"))

    def broken(event: dict[str, Any]) -> None:
        raise RuntimeError("boom")

    fanout.subscribe(broken)
    fanout({"type": "response.done"})
    assert [e["type"] for e in primary] == ["session.created", "response.done"]
    assert "event_id" not in primary[1]  # the watcher stamped its copy only
    assert watcher == [{"type": "renamed", "event_id": "w1"}]
    detach()
    detach()  # twice is harmless
    fanout({"type": "response.created"})
    assert len(watcher) == 1 and len(primary) == 3
