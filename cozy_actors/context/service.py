"""ContextService: per turn, fetch knowledge, profile and memory in parallel within a budget.

Each engine runs under its own timeout; a late or failing one gives nothing and a degrade reason
("memory: timeout after 0.40 s") that reaches the reply's `cozy` metadata, the log and
`cozy_context_degraded_total`. So personalization can make a turn richer, never slower than its
slowest allowed engine, and never failed. After the turn, memory/profile learn from it through the
background queue (async mode) or a detached task (sync mode) — never before the reply is out.

Voice turns prefetch: when the VAD hears the user pause, the speculative final transcript is
decoded at once, and `prefetch()` starts fetching its context while the silence window runs; the
turn that starts at end of speech with the same words takes that fetch instead of starting one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from cozy_actors.config.models import ContextConfig
from cozy_actors.observability.metrics import (
    CONTEXT_DEGRADED,
    CONTEXT_FETCH,
    CONTEXT_UPDATE_LATENCY,
    CONTEXT_UPDATES,
    TURN_STAGE,
    labelled,
)

from .base import ContextItem, ContextQuery, KnowledgeEngine, MemoryEngine, ProfileEngine, TurnRecord, last_user_text
from .budget import Assembled, assemble

log = logging.getLogger("cozy.context")
UPDATE_TOPIC = "context.update"
PREFETCH_TTL_S = 10.0  # a prefetch nobody took by then is dropped (the user went on talking)
PREFETCH_MAX = 1024  # prefetches held at once, across all sessions


@dataclass
class Prepared:
    messages: list[dict[str, Any]]
    reasons: list[str]
    assembled: Assembled | None = None


class ContextService:
    def __init__(
        self,
        config: ContextConfig,
        *,
        knowledge: KnowledgeEngine | None = None,
        profile: ProfileEngine | None = None,
        memory: MemoryEngine | None = None,
        queue: Any = None,
    ) -> None:
        self.config = config
        self.engines: dict[str, Any] = {
            name: e for name, e in (("knowledge", knowledge), ("profile", profile), ("memory", memory)) if e is not None
        }
        self.timeouts = {
            "knowledge": config.knowledge_timeout_s,
            "profile": config.profile_timeout_s,
            "memory": config.memory_timeout_s,
        }
        self.queue = queue
        # Which of these session ids are live (not deleted)? Set by the services; the built-in
        # engines also check in their own transaction, this spares the others (remote services).
        self.live_sessions: Callable[[list[str]], Awaitable[set[str]]] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._prefetched: dict[ContextQuery, tuple[float, asyncio.Task[tuple[list[ContextItem], list[str]]]]] = {}
        if queue is not None:
            queue.register(UPDATE_TOPIC, self.apply_updates)

    def applies(self, personality: Any, use_personalization: bool = True) -> bool:
        """Personalization runs only when config, request and personality all allow it."""
        mem = personality.memory
        return bool(self.config.enabled and use_personalization and mem.enabled and mem.use_personalization)

    def query(self, text: str, user_id: str | None, personality_id: str = "") -> ContextQuery:
        return ContextQuery(
            user_id=user_id,
            text=text,
            personality_id=personality_id,
            datasets=tuple(self.config.datasets),
            limit=self.config.max_items,
        )

    def prefetch(self, *, text: str, user_id: str | None, personality_id: str = "") -> None:
        """Start fetching the context of `text` now; a turn asking for the same words soon takes it."""
        query = self.query(text, user_id, personality_id)
        if not text or query in self._prefetched:
            return
        now = time.monotonic()
        for key, (at, task) in list(self._prefetched.items()):  # oldest first (insertion order)
            if now - at <= PREFETCH_TTL_S and len(self._prefetched) < PREFETCH_MAX:
                break
            del self._prefetched[key]
            task.cancel()
        self._prefetched[query] = (now, asyncio.get_running_loop().create_task(self._fetch_now(query)))

    async def fetch(self, query: ContextQuery, *, keep: bool = False) -> tuple[list[ContextItem], list[str]]:
        """All engines at once, each within its timeout; returns the items and the degrade reasons.
        A prefetch of the same query is taken (`keep`: and left for the next asker)."""
        hit = self._prefetched.get(query) if keep else self._prefetched.pop(query, None)
        if hit is not None and time.monotonic() - hit[0] <= PREFETCH_TTL_S:
            return await asyncio.shield(hit[1])  # a cancelled turn leaves the fetch to finish alone
        return await self._fetch_now(query)

    async def _fetch_now(self, query: ContextQuery) -> tuple[list[ContextItem], list[str]]:
        names = [n for n in self.engines if n == "knowledge" or query.user_id]
        results = await asyncio.gather(*(self._one(n, query) for n in names))
        items: list[ContextItem] = []
        reasons: list[str] = []
        for got, reason in results:
            items.extend(got)
            if reason:
                reasons.append(reason)
        return items, reasons

    async def _one(self, name: str, query: ContextQuery) -> tuple[list[ContextItem], str | None]:
        timeout = self.timeouts[name]
        started = time.perf_counter()
        outcome, reason = "ok", None
        items: list[ContextItem] = []
        try:
            async with asyncio.timeout(timeout):
                items = list(await self.engines[name].search(query))
        except TimeoutError:
            outcome, reason = "timeout", f"{name}: timeout after {timeout:.2f} s"
        except Exception as exc:  # an engine bug or outage degrades the turn, never fails it
            outcome, reason = "error", f"{name}: {type(exc).__name__}: {exc}"[:200]
        labelled(CONTEXT_FETCH, name, outcome).observe(time.perf_counter() - started)
        if reason:
            labelled(CONTEXT_DEGRADED, name, outcome).inc()
            log.warning("context degraded", extra={"engine": name, "reason": reason})
        return items, reason

    async def prepare(
        self,
        *,
        system: str,
        history: list[dict[str, Any]],
        new: list[dict[str, Any]],
        user_id: str | None,
        personality_id: str = "",
        ahead: bool = False,
    ) -> Prepared:
        """The turn's prompt with context, within `max_prompt_tokens`, and why it is degraded.
        `ahead`: a reply prepared at the speaker's pause (preemptive generation): not a turn's stage,
        and a prefetch it uses stays there for the turn itself."""
        started = time.perf_counter()
        query = self.query(last_user_text(new) or last_user_text(history), user_id, personality_id)
        items, reasons = await self.fetch(query, keep=ahead) if query.text else ([], [])
        done = assemble(system, history, new, items, self.config.max_prompt_tokens)
        if not ahead:
            labelled(TURN_STAGE, "context").observe(time.perf_counter() - started)
        return Prepared(done.messages, reasons, done)

    async def after_turn(self, record: TurnRecord) -> None:
        """Hand a finished turn to memory/profile; never raises, never waits for the engines."""
        if not record.user_id or not any(n in self.engines for n in ("memory", "profile")):
            return
        try:
            if self.config.update_mode == "async" and self.queue is not None:
                await self.queue.publish(UPDATE_TOPIC, record.payload())
                return
            task = asyncio.create_task(self.apply_updates([record.payload()]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        except Exception:
            log.exception("context update not queued")

    async def apply_updates(self, payloads: list[dict[str, Any]]) -> None:
        """The queue handler: a batch of turns to each learning engine; raising makes the queue retry."""
        records = await self._live([TurnRecord.from_payload(p) for p in payloads])
        size = self.config.update_batch_size
        for name in ("memory", "profile"):
            engine = self.engines.get(name)
            if engine is None:
                continue
            for i in range(0, len(records), size):
                started = time.perf_counter()
                try:
                    await engine.update(records[i : i + size])
                except Exception:
                    labelled(CONTEXT_UPDATES, name, "failed").inc(len(records[i : i + size]))
                    raise
                labelled(CONTEXT_UPDATES, name, "ok").inc(len(records[i : i + size]))
                labelled(CONTEXT_UPDATE_LATENCY, name).observe(time.perf_counter() - started)

    async def _live(self, records: list[TurnRecord]) -> list[TurnRecord]:
        """Drop the updates of deleted sessions (queued before the delete, applied after it)."""
        sids = sorted({r.session_id for r in records if r.session_id})
        if not sids or self.live_sessions is None:
            return records
        live = await self.live_sessions(sids)  # a storage error raises: the queue retries the batch
        return [r for r in records if not r.session_id or r.session_id in live]

    async def forget_session(self, user_id: str, session_id: str) -> list[str]:
        """A deleted session: each learning engine forgets what it taught (queued updates of it are
        dropped when applied, see postgres.live_records). Returns the engines that cannot forget
        (e.g. a plugin for a remote service without a delete API); the README says what remains."""
        kept: list[str] = []
        for name in ("memory", "profile"):
            engine = self.engines.get(name)
            if engine is None:
                continue
            forget = getattr(engine, "forget_session", None)
            if forget is None:
                kept.append(f"{name}:{engine.provider}")
                continue
            try:
                await forget(user_id, session_id)
            except Exception:  # the session is deleted either way; say what may remain
                log.exception("context: %s did not forget session %s", name, session_id)
                kept.append(f"{name}:{engine.provider}")
        return kept

    async def start(self) -> None:
        for engine in self.engines.values():
            await engine.initialize()

    async def close(self) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        for engine in self.engines.values():
            await engine.close()

    async def health(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, engine in self.engines.items():
            try:
                h = await asyncio.wait_for(engine.health_check(), 2)
                out[name] = {"ok": h.ok, "detail": h.detail, "provider": engine.provider}
            except Exception as exc:
                out[name] = {"ok": False, "detail": str(exc)[:200], "provider": engine.provider}
        return out
