"""Conversation leases in PostgreSQL: who owns a session, with a fencing token every write carries.

Why PostgreSQL, even when Redis is configured: a lease only makes one owner if a worker that lost
it cannot still write. That is a property of the *write*, so the store that takes the write must
check the fence in the same statement (`PgSessionStore.append(..., fence=)` refuses unless the
session row's `owner_token` matches). A Redis lease cannot fence a PostgreSQL write: between
"my Redis key is still mine" and the INSERT, the key can expire and another worker can take the
conversation (a GC pause, a stalled loop, a partition), and both write. Keeping the lease on the
session row makes acquire, fence check and write one atomic step, needs no second system, and
works on the embedded default (several workers, no Redis).

Liveness: each worker UPSERTs its row in `workers` once per `heartbeat_s` (one statement per
worker, not per session); a lease whose worker's heartbeat is older than `ttl_s` is free, so a
killed worker's conversations are taken over within `ttl_s`. `close()` deletes the row: its
leases free at once. Every operation here is one SQL statement (conditional UPDATE ... RETURNING).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from cozy_actors.storage.db import Database
from cozy_actors.storage.sessions import INSERT_MESSAGES
from cozy_core.aio import cancel_and_wait
from cozy_core.errors import CozyError, NotFound

from . import Lease, LeaseLost, OwnedElsewhere, Owner

log = logging.getLogger("cozy.placement")

# Live owner of a session row `s` (as seen by the statement): its worker beats, and the lease is
# from this incarnation of that worker (token taken after the worker's start).
_LIVE = "w.heartbeat_at > now() - make_interval(secs => $4) AND s.owner_token >= w.epoch"


# Taken when free, when its owner is dead, or when this worker holds it (a new token: the old
# holder's writes are refused) - except that a text turn on the worker holding the session's call
# rides on the call's lease (the second branch returns it), so a typed message never ends the call.
# With $6 (a jsonb array of messages: a turn's user words) they are stored in the same statement
# when the lease is taken, so a turn costs no more statements than before placement; the count
# returned is the one before them (what the turn compares with the history it holds).
def _acquire_sql(append: bool) -> str:
    count = "s.message_count + jsonb_array_length($6::jsonb), updated_at = now()" if append else "s.message_count"
    ins = f", ins AS ({INSERT_MESSAGES.format(source='upd', param='$6')})" if append else ""
    before = "message_count - jsonb_array_length($6::jsonb)" if append else "message_count"
    return f"""
WITH upd AS (
    UPDATE sessions s SET owner_worker = $2, owner_token = nextval('session_owner_tokens'), owner_kind = $3,
           message_count = {count}
    WHERE s.id = $1 AND s.deleted_at IS NULL
      AND NOT (s.owner_worker IS NOT DISTINCT FROM $2 AND s.owner_kind IS NOT DISTINCT FROM 'call'
               AND $3 = 'turn' AND s.owner_token >= $5)
      AND (s.owner_worker IS NULL OR s.owner_worker = $2
           OR NOT EXISTS (SELECT 1 FROM workers w WHERE w.id = s.owner_worker AND {_LIVE}))
    RETURNING s.id, s.owner_token, s.message_count){ins}
SELECT true AS acquired, owner_token, {before} AS message_count, $3::text AS owner_kind,
       $2::text AS owner_worker, NULL::text AS address FROM upd
UNION ALL
SELECT false, s.owner_token, s.message_count, s.owner_kind, s.owner_worker, w.address
FROM sessions s LEFT JOIN workers w ON w.id = s.owner_worker AND {_LIVE}
WHERE s.id = $1 AND s.deleted_at IS NULL AND NOT EXISTS (SELECT 1 FROM upd)
"""


_ACQUIRE, _ACQUIRE_APPEND = _acquire_sql(False), _acquire_sql(True)
_OWNER = f"""
SELECT s.owner_worker, s.owner_kind, w.address FROM sessions s
JOIN workers w ON w.id = s.owner_worker AND {_LIVE.replace("$4", "$2")}
WHERE s.id = $1 AND s.deleted_at IS NULL
"""
_RELEASE = (
    "UPDATE sessions SET owner_worker = NULL, owner_token = NULL, owner_kind = NULL WHERE id = $1 AND owner_token = $2"
)
_REGISTER = """
INSERT INTO workers (id, address, heartbeat_at, epoch) VALUES ($1, $2, now(), nextval('session_owner_tokens'))
ON CONFLICT (id) DO UPDATE SET address = EXCLUDED.address, heartbeat_at = now(), epoch = EXCLUDED.epoch
RETURNING epoch
"""
_BEAT = """
INSERT INTO workers (id, address, heartbeat_at, epoch) VALUES ($1, $2, now(), $3)
ON CONFLICT (id) DO UPDATE SET address = EXCLUDED.address, heartbeat_at = now()
"""


class Placement:
    """This worker's leases on conversations (DESIGN, Placement). See the module docstring."""

    def __init__(
        self, db: Database, *, worker_id: str, address: str, ttl_s: float = 5.0, heartbeat_s: float = 1.0
    ) -> None:
        if heartbeat_s >= ttl_s:
            raise ValueError("the heartbeat must be more frequent than the ttl")
        self.db = db
        self.worker_id = worker_id
        self.address = address  # may be set (e.g. by the CLI) until start()
        self.ttl_s = ttl_s
        self.heartbeat_s = heartbeat_s
        self.epoch = 0
        self._task: asyncio.Task[None] | None = None
        self._releases: set[asyncio.Task[None]] = set()

    @property
    def me(self) -> Owner:
        return Owner(self.worker_id, self.address, "")

    async def start(self) -> None:
        """Register this worker (its row in `workers`) and keep its heartbeat going."""
        self.epoch = int(await self.db.fetchval("placement.register", _REGISTER, self.worker_id, self.address))
        if self._task is None:
            self._task = asyncio.create_task(self._heartbeat(), name="cozy-placement-heartbeat")

    async def close(self) -> None:
        """Stop beating and drop the row: every lease this worker still holds is free at once."""
        task, self._task = self._task, None
        await cancel_and_wait(task)
        if self._releases:
            await asyncio.wait(list(self._releases), timeout=2.0)
        with contextlib.suppress(CozyError):
            await self.db.execute("placement.close", "DELETE FROM workers WHERE id = $1", self.worker_id)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            try:
                await self.db.execute("placement.heartbeat", _BEAT, self.worker_id, self.address, self.epoch)
            except CozyError as exc:  # leases lapse after ttl_s; fenced writes keep that safe
                log.warning("placement heartbeat failed: %s", exc)

    async def acquire(self, session_id: str, kind: str, *, append: list[dict[str, Any]] | None = None) -> Lease:
        """Own `session_id` (kind "turn" or "call"); raises OwnedElsewhere when another live worker
        holds it, NotFound when the session is unknown or deleted. A "turn" on the worker that
        holds the session's call gets the call's lease (kind "call": the turn must not release it).
        `append`: messages stored with the lease, in the same statement, when it is taken (the
        returned lease has the kind asked for; its version is the count before them). A ridden or
        refused lease stores nothing."""
        if kind not in ("turn", "call"):
            raise ValueError(f"unknown lease kind {kind!r}")
        args: tuple[Any, ...] = (session_id, self.worker_id, kind, self.ttl_s, self.epoch)
        sql = _ACQUIRE if append is None else _ACQUIRE_APPEND
        if append is not None:
            args += (append,)
        for _ in range(3):
            row = await self.db.fetchrow("placement.acquire", sql, *args)
            if row is None:
                raise NotFound(f"session {session_id!r} not found", param="cozy.session_id")
            if row["acquired"]:
                return Lease(session_id, int(row["owner_token"]), int(row["message_count"]), kind)
            if row["owner_worker"] == self.worker_id and row["owner_kind"] == "call" and kind == "turn":
                return Lease(session_id, int(row["owner_token"]), int(row["message_count"]), "call")
            if row["address"] is not None:
                raise OwnedElsewhere(session_id, Owner(row["owner_worker"], row["address"], row["owner_kind"]))
            # Free as of this statement's snapshot, taken by a concurrent acquire meanwhile: look again.
        raise LeaseLost(session_id)

    async def release(self, lease: Lease) -> None:
        """Let go (only if it is still ours: a taken-over lease is left to its new owner)."""
        await self.db.execute("placement.release", _RELEASE, lease.session_id, lease.token)

    def release_later(self, lease: Lease) -> None:
        """release() from sync code (an actor's stop callback); failures are logged, not raised."""
        task = asyncio.get_running_loop().create_task(self._release_quietly(lease))
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)

    async def _release_quietly(self, lease: Lease) -> None:
        try:
            await self.release(lease)
        except CozyError as exc:  # the lease lapses with the heartbeat check anyway
            log.warning("lease on %s not released: %s", lease.session_id, exc)

    async def owner_of(self, session_id: str) -> Owner | None:
        """The live worker holding `session_id` (this one included), or None when it is free."""
        row = await self.db.fetchrow("placement.owner", _OWNER, session_id, self.ttl_s)
        if row is None:
            return None
        return Owner(row["owner_worker"], row["address"], row["owner_kind"])

    async def address_of(self, worker_id: str) -> str | None:
        """The internal address of `worker_id` if it is live (None: unknown, or silent past the ttl)."""
        return await self.db.fetchval(  # type: ignore[no-any-return]
            "placement.address",
            "SELECT address FROM workers WHERE id = $1 AND heartbeat_at > now() - make_interval(secs => $2)",
            worker_id,
            self.ttl_s,
        )

    def stats(self) -> dict[str, Any]:
        return {"worker_id": self.worker_id, "address": self.address, "ttl_s": self.ttl_s}
