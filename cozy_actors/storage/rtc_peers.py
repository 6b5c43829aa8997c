"""Where each WebRTC peer connection lives (table `rtc_peers`, migration 0005).

Why: a FastRTC client trickles its ICE candidates as separate HTTP requests, which a load balancer
(or `--workers N` on one port) may hand to any worker; only the worker that answered the offer has
the peer connection. Each call's row names that worker's internal address, so the edge forwards a
candidate there (cozy_http/forward.py) instead of answering "unknown connection".
"""

from __future__ import annotations

from dataclasses import dataclass

from .db import Database

MAX_AGE_S = 6 * 3600  # a row older than any call may be (webrtc time limits are far shorter)


@dataclass(frozen=True, slots=True)
class RtcPeer:
    webrtc_id: str
    worker_id: str
    address: str
    user_id: str | None


class RtcPeers:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def put(self, peer: RtcPeer) -> None:
        """This worker holds the call now (an id reused after a dead worker's call is taken over)."""
        await self.db.execute(
            "rtc_peers.put",
            """INSERT INTO rtc_peers (webrtc_id, worker_id, address, user_id) VALUES ($1, $2, $3, $4)
               ON CONFLICT (webrtc_id) DO UPDATE SET worker_id = excluded.worker_id,
                   address = excluded.address, user_id = excluded.user_id, created_at = now()""",
            peer.webrtc_id,
            peer.worker_id,
            peer.address,
            peer.user_id,
        )

    async def get(self, webrtc_id: str) -> RtcPeer | None:
        row = await self.db.fetchrow(
            "rtc_peers.get",
            """SELECT webrtc_id, worker_id, address, user_id FROM rtc_peers
               WHERE webrtc_id = $1 AND created_at > now() - make_interval(secs => $2)""",
            webrtc_id,
            MAX_AGE_S,
        )
        return RtcPeer(row["webrtc_id"], row["worker_id"], row["address"], row["user_id"]) if row else None

    async def drop(self, webrtc_id: str, worker_id: str) -> None:
        """The call ended here; a newer row of another worker for the same id is left alone."""
        await self.db.execute(
            "rtc_peers.drop", "DELETE FROM rtc_peers WHERE webrtc_id = $1 AND worker_id = $2", webrtc_id, worker_id
        )
