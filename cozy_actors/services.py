"""Builds the process's services from settings, in dependency order, and tears them down.

The edge calls `start()` in its lifespan and reaches everything through this one object, so
tests and the CLI can build the same graph without HTTP.
"""

from __future__ import annotations

import logging
from typing import Any

from cozy_actors.admin import AdminService
from cozy_actors.auth.ephemeral import EphemeralKeys
from cozy_actors.cache.broadcast import make_broadcaster
from cozy_actors.config import Settings
from cozy_actors.context.build import ContextConfigError, build_context
from cozy_actors.context.knowledge_admin import KnowledgeAdmin
from cozy_actors.conversation.chat import ChatService
from cozy_actors.conversation.sessions import SessionService
from cozy_actors.engines.llm.router import LLMRouter
from cozy_actors.engines.registry import EngineRegistry, default_registry
from cozy_actors.engines.speech import SpeechConfigError, build_speech
from cozy_actors.engines.tools.engine import ToolsConfigError, ToolsEngine
from cozy_actors.infra import Infra
from cozy_actors.personalities import PersonalityStore
from cozy_actors.placement.lease import Placement
from cozy_actors.quotas import configure_quotas
from cozy_actors.realtime.persist import write_policy
from cozy_actors.realtime.service import RealtimeService
from cozy_actors.runtime import LoopLagMonitor, Supervisor, SupervisorPolicy
from cozy_actors.stt_streams import SttStreams
from cozy_actors.worker import sibling_workers, worker_id
from cozy_media.workers import configure_pool

log = logging.getLogger("cozy.services")


class StartupError(Exception):
    """The server cannot start; `problems` are `file: key: reason` lines."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class CozyServices:
    def __init__(self, settings: Settings, *, registry: EngineRegistry | None = None) -> None:
        self.settings = settings
        self.registry = registry
        self.started = False

    def build(self) -> None:
        """Construct everything that needs no I/O; raises StartupError on bad configuration."""
        s = self.settings
        from cozy_actors.engines.llm.router import LLMConfigError
        from cozy_actors.personalities import PersonalityError

        if self.registry is None:
            self.registry = default_registry(load_plugins=s.engines.plugins_enabled)
        engines_file = s.files.get("engines") or "config/engines.yaml"
        try:
            self.llms = LLMRouter(s.engines.llm, self.registry)
        except LLMConfigError as exc:
            raise StartupError([f"{engines_file}: {p}" for p in exc.problems]) from exc
        try:
            self.speech = build_speech(s.engines, self.registry)
        except SpeechConfigError as exc:
            raise StartupError([f"{engines_file}: {p}" for p in exc.problems]) from exc
        self.personalities = PersonalityStore(s.personalities_dir, s.app.default_personality)
        try:
            self.personalities.reload()
        except PersonalityError as exc:
            raise StartupError(exc.problems) from exc
        tools_file = s.files.get("tools") or "config/tools.yaml"
        try:
            self.tools = ToolsEngine(s.tools)  # built-ins now; MCP servers connect in start()
        except ToolsConfigError as exc:
            raise StartupError([f"{tools_file}: {p}" for p in exc.problems]) from exc
        self.catalog = self.tools.catalog
        self.infra = Infra(s)  # PostgreSQL (embedded or DATABASE_URL), Redis or in-process, auth, audit
        self.tools.audit = self.infra.audit  # every tool call is a tool.call audit event
        self.store = self.infra.sessions
        self.auth = self.infra.auth
        self.ephemeral_keys = EphemeralKeys(self.infra.db, self.infra.users)  # `ek_...` client secrets
        context_file = s.files.get("context") or "config/context.yaml"
        try:  # personalization engines; update topic registered on the queue before it starts
            self.context = build_context(s.context, self.registry, db=self.infra.db, queue=self.infra.queue)
        except ContextConfigError as exc:
            raise StartupError([f"{context_file}: {p}" for p in exc.problems]) from exc
        # One live owner per conversation across workers and nodes: leases on the session rows.
        self.worker_id = worker_id()  # COZY_WORKER_ID under `--workers N`, else host-pid
        api, pl = s.api, s.storage.placement
        address = api.internal_url or f"http://{api.host}:{api.port}"  # api.yaml reads COZY_INTERNAL_URL
        self.placement = Placement(
            self.infra.db, worker_id=self.worker_id, address=address, ttl_s=pl.ttl_s, heartbeat_s=pl.heartbeat_s
        )
        self.ratelimit = self.infra.ratelimit
        # Per-user fair share (chat, realtime, STT stream, local LLM): live calls and streams counted
        # across every process on the database, `--workers N` siblings and other nodes alike; one
        # process on its own embedded database has nobody to share with.
        shared = None
        if sibling_workers() > 1 or self.infra.embedded is None:
            from cozy_actors.quota_share import SharedQuotas

            shared = SharedQuotas(s.app.quotas, self.infra.db, worker_id=self.worker_id)
        self.quotas = configure_quotas(s.app.quotas, shared)
        sess = s.app.sessions
        self.loadmon = LoopLagMonitor()
        self.supervisor = Supervisor(
            SupervisorPolicy(
                max_restarts=sess.max_restarts,
                restart_window_s=sess.restart_window_s,
                backoff_initial_s=sess.backoff_initial_s,
                backoff_max_s=sess.backoff_max_s,
                max_duration_s=sess.max_duration_s,
                idle_timeout_s=sess.idle_timeout_s,
                mailbox_size=sess.mailbox_size,
                overflow=sess.overflow,
                max_actors=sess.max_sessions,
                max_loop_lag_s=sess.max_loop_lag_ms / 1000 if sess.max_loop_lag_ms else None,
            ),
            loadmon=self.loadmon,
        )
        self.chat = ChatService(
            app=s.app,
            supervisor=self.supervisor,
            personalities=self.personalities,
            llms=self.llms,
            catalog=self.catalog,
            store=self.store,
            audit=self.infra.audit,
            context=self.context,
            quotas=self.quotas,
            checkpoints=self.infra.checkpoints,
            placement=self.placement,
        )
        self.knowledge = KnowledgeAdmin(self.context, self.auth, self.infra.audit)
        self.sessions = SessionService(self.store, self.supervisor, self.personalities, self.infra.audit)
        self.sessions.context = self.context
        self.context.live_sessions = self.store.live_ids  # queued updates of deleted sessions are dropped
        # Cluster notices (Redis pub/sub, else PostgreSQL LISTEN/NOTIFY): what an admin changes on one
        # worker or node, every one applies.
        self.broadcast = make_broadcaster(self.infra.redis, self.infra.db)
        self.auth.broadcast = self.broadcast
        self.broadcast.on("personalities.reload", self._reload_personalities)
        self.broadcast.on("tools.refresh", self._refresh_tools)
        self.broadcast.on("auth.forget", self._forget_auth)
        self.broadcast.on("session.deleted", self.sessions.on_deleted_elsewhere)
        self.sessions.broadcast = self.broadcast
        self.admin = AdminService(
            s,
            auth=self.auth,
            audit=self.infra.audit,
            audit_store=self.infra.audit_store,
            personalities=self.personalities,
            tools=self.tools,
            broadcast=self.broadcast,
        )

        self.auth.on_end_sessions = self._end_sessions
        self.stt_streams = SttStreams(s.api.stt_stream, sess, self.loadmon)  # WS /v1/audio/stt/stream
        self.realtime = RealtimeService(
            app=s.app,
            supervisor=self.supervisor,
            personalities=self.personalities,
            llms=self.llms,
            catalog=self.catalog,
            store=self.store,
            speech=self.speech,
            context=self.context,
            limits=s.api.realtime,
            quotas=self.quotas,
            checkpoints=self.infra.checkpoints,
            write_policy=write_policy(s.storage.durability),
            placement=self.placement,
            broadcast=self.broadcast,
        )
        self.sessions.realtime = self.realtime
        self.broadcast.on("session.takeover", self.realtime.on_takeover)  # a reconnect elsewhere takes the call

    # --- another node's notices (data None: we may have missed some while disconnected) --------
    async def _reload_personalities(self, data: dict[str, Any] | None) -> None:
        from cozy_actors.personalities import PersonalityError

        try:
            self.personalities.reload()
        except PersonalityError as exc:  # the sending node validated the same files; keep ours
            log.error("personalities not reloaded on notice: %s", "; ".join(exc.problems[:5]))

    async def _refresh_tools(self, data: dict[str, Any] | None) -> None:
        from cozy_actors.config import load_settings

        await self.tools.refresh(load_settings(self.settings.config_dir).tools)

    async def _forget_auth(self, data: dict[str, Any] | None) -> None:
        if data is None:
            self.auth.forget_all()
            return
        self.auth.forget(user_id=data.get("user_id"), key_id=data.get("key_id"))
        if data.get("end_sessions"):
            self._end_sessions(data.get("user_id"), data.get("key_id"))

    def _end_sessions(self, user_id: str | None, key_id: str | None) -> None:
        """A revoked key or disabled user: its live voice sessions and transcription streams end."""
        self.realtime.end_sessions(user_id=user_id, key_id=key_id)
        self.stt_streams.end_sessions(user_id=user_id, key_id=key_id)

    async def start(self) -> None:
        if not hasattr(self, "chat"):
            self.build()
        self.pool = configure_pool(self.settings.app.inference_workers)
        self.loadmon.start()
        await self.infra.start()
        try:
            await self.placement.start()  # heartbeat row: this worker may own conversations from now on
            await self.llms.initialize()
        except BaseException:
            await self.placement.close()
            await self.infra.stop()
            raise
        await self.context.start()
        self.speech.start()  # models load in the pool in the background; /ready waits for them
        await self.tools.start()  # MCP servers, each within its connect_timeout_s; a failed one is only reported
        await self.broadcast.start()
        await self.quotas.start()
        self.started = True
        log.info("services started", extra={"default_model": self.llms.default_id})

    async def stop(self) -> None:
        if not self.started:
            return
        self.started = False
        await self.broadcast.close()
        self.stt_streams.end_all()  # each gets its final error event while the actors drain
        await self.supervisor.shutdown(timeout=10.0)
        await self.quotas.close()  # after the actors released their slots
        await self.loadmon.stop()
        await self.llms.close()
        await self.speech.close()
        await self.tools.close()  # stops stdio MCP server processes
        await self.context.close()  # detached sync-mode updates finish; queued ones flush in infra.stop
        await self.placement.close()  # drops this worker's row: its leases are free at once
        await self.infra.stop()  # after the actors: their last messages and audit events are flushed

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready = started and every loaded engine healthy."""
        checks: dict[str, Any] = {}
        ok = self.started
        for model_id, health in (await self.llms.health()).items():
            checks[f"llm:{model_id}"] = {"ok": health.ok, "detail": health.detail}
            ok = ok and health.ok
        for kind, health in (await self.speech.health()).items():
            checks[f"speech:{kind}"] = {"ok": health.ok, "detail": health.detail}
            ok = ok and health.ok
        checks["supervisor"] = self.supervisor.stats()
        for name, health in self.tools.health().items():
            checks[f"tools:mcp:{name}"] = health  # reported, not gating: tools of a down server are just not offered
        for name, health in (await self.context.health()).items():
            checks[f"context:{name}"] = health  # reported, not gating: a down engine only degrades turns
        infra_ok, infra_checks = await self.infra.readiness()
        checks.update(infra_checks)
        return ok and infra_ok, checks
