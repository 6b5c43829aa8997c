"""Placement: which worker process (on which node) owns a live conversation (DESIGN, Placement).

The owner holds the conversation's lease in PostgreSQL, with a fencing token that every write of
that conversation carries; a worker that lost the lease has its writes refused. This module is
the contract the conversation actors, the realtime service and the edge share.
"""

from __future__ import annotations

from dataclasses import dataclass

from cozy_core.errors import CozyError

__all__ = ["Lease", "LeaseLost", "OwnedElsewhere", "Owner"]


@dataclass(frozen=True, slots=True)
class Owner:
    """The worker that holds a conversation's lease: where to forward its requests."""

    worker_id: str
    address: str  # internal base URL of that worker, e.g. http://10.0.0.5:41234
    kind: str  # "turn" (a text turn in flight, released when it ends) | "call" (a live voice call)


@dataclass(frozen=True, slots=True)
class Lease:
    """This worker owns `session_id` until released or its heartbeat lapses; `token` fences writes.
    `version` is the session's message count when the lease was taken (stale history check)."""

    session_id: str
    token: int
    version: int
    kind: str


class OwnedElsewhere(CozyError):
    """Another live worker owns the conversation: the edge forwards the request to `owner`."""

    def __init__(self, session_id: str, owner: Owner) -> None:
        super().__init__(
            f"session {session_id} is live on another worker ({owner.worker_id})",
            code="RESOURCE_SESSION_BUSY",
            status=409,
            param="cozy.session_id",
        )
        self.session_id = session_id
        self.owner = owner


class LeaseLost(CozyError):
    """A write from a worker whose lease was taken over: refused, so two owners never interleave."""

    def __init__(self, session_id: str) -> None:
        super().__init__(
            f"session {session_id} is now owned by another worker; this write was refused",
            code="RESOURCE_SESSION_BUSY",
            status=409,
            param="cozy.session_id",
        )
        self.session_id = session_id
