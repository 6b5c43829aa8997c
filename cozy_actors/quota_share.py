"""Per-user quotas counted across the worker processes of one node (`cozy serve --workers N`).

Why: with N workers, per-process counts would let a user hold N times its share of live calls
and streams. A lease must stay a synchronous, never-failing call (it is taken inside the
supervisor's spawn and released in stop callbacks), so each worker keeps counting its own slots
exactly and mirrors them to PostgreSQL once a `interval_s`, in one statement that also reads
what the other live workers hold. A refusal looks at both; the price is that two workers may
each admit the last slot within one interval (a user can exceed its share by one slot per other
worker, for at most that long). Rows carry the worker id and are refreshed with every sync; a
worker killed outright stops refreshing, so its rows count for nothing after `ttl_s` and are
deleted: a dead worker never leaks a user's share. Of `conversations` a worker publishes only
those in a turn (`Quotas.publish`): an idle conversation actor is an evictable cache that only
its own worker can evict, so it counts where it lives, where it is evicted for a new one, and the
share holds for conversations in a turn across all workers. `llm_queue` stays per process: it is
the share of one local model's lane, and every worker has its own model.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter

from cozy_actors.config.limits import QuotaConfig
from cozy_actors.quotas import Kind, Quotas
from cozy_actors.storage.db import Database
from cozy_core.errors import CozyError

log = logging.getLogger("cozy.quotas")
SHARED: tuple[Kind, ...] = ("conversations", "realtime_sessions", "stt_streams")

# $1 this worker, $2/$3/$4 its (kind, owner, held) rows, $5 ttl: write ours, drop released and dead
# rows, and return what the other live workers hold (the snapshot predates our writes: not ours).
_SYNC = """
WITH mine AS (SELECT * FROM unnest($2::text[], $3::text[], $4::int[]) AS m(kind, owner, held)),
up AS (
    INSERT INTO quota_leases (kind, owner, worker_id, held, beat_at)
    SELECT kind, owner, $1, held, now() FROM mine
    ON CONFLICT (kind, owner, worker_id) DO UPDATE SET held = excluded.held, beat_at = now()),
gone AS (
    DELETE FROM quota_leases q
    WHERE (q.worker_id = $1 AND NOT EXISTS (SELECT 1 FROM mine m WHERE m.kind = q.kind AND m.owner = q.owner))
       OR q.beat_at < now() - make_interval(secs => $5))
SELECT kind, owner, sum(held)::int AS held FROM quota_leases
WHERE worker_id <> $1 AND beat_at >= now() - make_interval(secs => $5)
GROUP BY kind, owner
"""


class SharedQuotas(Quotas):
    def __init__(
        self, config: QuotaConfig, db: Database, *, worker_id: str, interval_s: float = 1.0, ttl_s: float = 5.0
    ) -> None:
        super().__init__(config)
        self.db = db
        self.worker_id = worker_id
        self.interval_s = interval_s
        self.ttl_s = ttl_s
        self._others: dict[str, Counter[str]] = {k: Counter() for k in SHARED}
        self._task: asyncio.Task[None] | None = None

    def elsewhere(self, kind: Kind, owner: str) -> int:
        others = self._others.get(kind)
        return others[owner] if others is not None else 0

    async def start(self) -> None:
        """Drop rows a previous process with this worker id left (it held nothing of ours), then sync
        once before returning: a worker knows the others' counts before it admits anyone, and the
        loop's syncs never race a first one."""
        with contextlib.suppress(CozyError):
            await self.db.execute("quota.reset", "DELETE FROM quota_leases WHERE worker_id = $1", self.worker_id)
        with contextlib.suppress(CozyError):
            await self.sync()
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="cozy-quota-share")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        with contextlib.suppress(CozyError):  # a graceful stop frees its share at once
            await self.db.execute("quota.close", "DELETE FROM quota_leases WHERE worker_id = $1", self.worker_id)

    async def sync(self) -> None:
        """Publish this worker's counts, learn the others' (one statement)."""
        rows = [(kind, owner, n) for kind in SHARED for owner, n in self.published(kind).items() if n > 0]
        kinds, owners, held = ([r[i] for r in rows] for i in range(3))
        found = await self.db.fetch("quota.sync", _SYNC, self.worker_id, kinds, owners, held, self.ttl_s)
        others: dict[str, Counter[str]] = {k: Counter() for k in SHARED}
        for row in found:
            if row["kind"] in others:
                others[row["kind"]][row["owner"]] = int(row["held"])
        self._others = others

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.sync()
            except CozyError as exc:  # the database is down: keep the last view, try again
                log.debug("quota sync: %s", exc)
            except Exception:
                log.exception("quota sync failed")
