"""Trickled ICE candidates reach the worker that holds the call's peer connection.

The offer's worker records itself for the call's `webrtc_id` (cozy_actors/storage/rtc_peers.py);
a candidate that lands on a worker without that connection is forwarded there, once, like any
request for a conversation owned elsewhere (cozy_http/forward.py).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from cozy_actors.storage.rtc_peers import RtcPeer, RtcPeers
from cozy_core.errors import CozyError

from ..forward import was_forwarded

log = logging.getLogger("cozy.webrtc")


class PeerLocator:
    def __init__(self, services: Any) -> None:
        self.services = services
        infra = getattr(services, "infra", None)
        self.store = RtcPeers(infra.db) if infra is not None else None
        self._tasks: set[asyncio.Task[None]] = set()

    async def record(self, webrtc_id: str, user_id: str | None) -> None:
        """This worker holds the call. A failed write is logged: the call itself works, only its
        candidates sent to another worker would not find it."""
        if self.store is None:
            return
        peer = RtcPeer(webrtc_id, self.services.worker_id, self.services.placement.address, user_id)
        try:
            await self.store.put(peer)
        except CozyError as exc:
            log.warning("webrtc call %s not recorded: %s", webrtc_id, exc.message)

    def forget(self, webrtc_id: str) -> None:
        """The call ended here (in the background: a hang-up must not wait on the database)."""
        if self.store is None:
            return
        task = asyncio.get_running_loop().create_task(self._forget(webrtc_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _forget(self, webrtc_id: str) -> None:
        try:
            await self.store.drop(webrtc_id, self.services.worker_id)  # type: ignore[union-attr]
        except CozyError as exc:
            log.warning("webrtc call %s not forgotten: %s", webrtc_id, exc.message)

    async def forward_candidate(self, request: Request, webrtc_id: str, user_id: str | None) -> Response | None:
        """The owner's answer to a candidate for a call held by another worker; None when the call
        is not known elsewhere (or the request was already forwarded once)."""
        if self.store is None or was_forwarded(request):
            return None
        peer = await self.store.get(webrtc_id)
        if peer is None or peer.worker_id == self.services.worker_id or peer.user_id != user_id:
            return None
        return await request.app.state.forwarder.forward(request, peer.address, owner=peer.worker_id)  # type: ignore[no-any-return]
