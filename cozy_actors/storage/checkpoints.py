"""Crash checkpoints of streaming replies: what a node killed mid-turn (SIGKILL, OOM) leaves behind.

Why: a reply is stored when its turn ends; a process that dies mid-turn never reaches that point.
So every node saves the text of its open turns every `checkpoint_interval_s` in one batched
statement (which also serves as the turns' heartbeat), and the final append writes the turn's
tombstone in the same statement as the message (PgSessionStore.append). A checkpoint nobody has
touched for `orphan_turn_after_s` belongs to a dead node: any node's sweep turns it into an
`incomplete: true` assistant message, exactly what a graceful stop would have stored. The user's
message needs none of this: it is stored before the model is called.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from cozy_core.errors import CozyError

from .db import Database

log = logging.getLogger("cozy.storage")

_SAVE = """
INSERT INTO turn_checkpoints (id, session_id, model, content)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
ON CONFLICT (id) DO UPDATE SET content = excluded.content, updated_at = now()
WHERE NOT turn_checkpoints.done
"""
# Orphans become incomplete messages of their (live) session in one statement; tombstones older
# than the orphan age are only dropped (no checkpoint write can still be in flight for them).
_SWEEP = """
WITH gone AS (
    DELETE FROM turn_checkpoints WHERE updated_at < now() - make_interval(secs => $1) AND NOT (id = ANY($2::text[]))
    RETURNING id, session_id, model, content, done, updated_at),
ins AS (
    INSERT INTO messages (session_id, role, content, model, incomplete)
    SELECT g.session_id, 'assistant', to_jsonb(g.content), g.model, true
    FROM gone g JOIN sessions s ON s.id = g.session_id AND s.deleted_at IS NULL
    WHERE NOT g.done AND g.content <> ''
    ORDER BY g.updated_at
    RETURNING session_id)
UPDATE sessions SET message_count = message_count + c.n, updated_at = now()
FROM (SELECT session_id, count(*) AS n FROM ins GROUP BY session_id) c
WHERE sessions.id = c.session_id
RETURNING c.n
"""


class TurnCheckpoints:
    """This node's open turns, saved every interval; also sweeps dead nodes' orphans."""

    def __init__(
        self, db: Database, *, interval_s: float = 1.0, orphan_after_s: float = 15.0, max_open_s: float = 7200.0
    ) -> None:
        self.db = db
        self.interval_s = interval_s
        self.orphan_after_s = orphan_after_s
        self.max_open_s = max_open_s  # a turn open this long was lost (its actor crashed): let it orphan
        self._open: dict[str, tuple[str, str | None, Callable[[], str], float]] = {}
        self._task: asyncio.Task[None] | None = None
        self.recovered = 0  # orphaned replies stored as incomplete by this node (tests, logs)

    def open(self, turn_id: str, session_id: str, model: str | None, text: Callable[[], str]) -> None:
        """Checkpoint this turn from now on; `text()` is read once an interval (never per token)."""
        self._open[turn_id] = (session_id, model, text, time.monotonic())

    def close(self, turn_id: str) -> None:
        """The turn is being finalized (its append carries `checkpoint=turn_id`): stop saving it."""
        self._open.pop(turn_id, None)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="cozy-turn-checkpoints")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    async def save(self) -> None:
        """One statement for every open turn: its text so far, and the heartbeat that keeps it live."""
        too_old = time.monotonic() - self.max_open_s
        for tid in [t for t, entry in self._open.items() if entry[3] < too_old]:
            del self._open[tid]  # never finalized: swept as incomplete once it is orphan_after_s old
        rows = [(tid, sid, model, text()) for tid, (sid, model, text, _) in list(self._open.items())]
        if rows:
            ids, sids, models, texts = (list(col) for col in zip(*rows, strict=True))
            await self.db.execute("checkpoint.save", _SAVE, ids, sids, models, texts)

    async def sweep(self) -> int:
        """Store dead nodes' cut-off replies as incomplete; returns how many."""
        rows = await self.db.fetch("checkpoint.sweep", _SWEEP, self.orphan_after_s, list(self._open))
        n = sum(int(r["n"]) for r in rows)
        if n:
            self.recovered += n
            log.warning("stored %d reply(ies) cut off by a crashed node as incomplete", n)
        return n

    async def _loop(self) -> None:
        while True:
            for step in (self.save, self.sweep):
                try:
                    await step()
                except CozyError as exc:  # the database is down: try again next interval
                    log.debug("turn checkpoints: %s", exc)
                except Exception:
                    log.exception("turn checkpoints failed")
            await asyncio.sleep(self.interval_s)
