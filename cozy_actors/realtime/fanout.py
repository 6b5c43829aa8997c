"""One session's server events to several transports: a WebRTC call's data channel and the sideband
WebSockets (`GET /v1/realtime?call_id=`) a backend attaches to watch and steer the call.

Why a wrapper around `emit` and not a change to the actor: the actor already emits through one
callable; a call that may gain watchers is opened with an `EventFanout` as that callable. A plain
WebSocket session never has one, so its path is unchanged. Each transport stamps and renames the
events it sends (event_id, beta names) in place, so every subscriber gets its own shallow copy,
made before the primary transport sees the event.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("cozy.realtime")

Emit = Callable[[dict[str, Any]], None]


class EventFanout:
    def __init__(self, primary: Emit) -> None:
        self.primary = primary
        self.subscribers: list[Emit] = []

    def __call__(self, event: dict[str, Any]) -> None:
        if self.subscribers:
            for subscriber in tuple(self.subscribers):
                try:
                    subscriber(dict(event))
                except Exception:  # one broken watcher must not take the call's events down
                    log.exception("realtime event subscriber failed")
        self.primary(event)

    def subscribe(self, emit: Emit) -> Callable[[], None]:
        """Add a transport; returns the function that removes it again."""
        self.subscribers.append(emit)

        def detach() -> None:
            if emit in self.subscribers:
                self.subscribers.remove(emit)

        return detach
