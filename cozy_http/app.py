"""The Starlette application: routes, middleware, error handlers and the services lifespan."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from importlib.metadata import PackageNotFoundError, version

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from cozy_actors.config import Settings
from cozy_actors.services import CozyServices
from cozy_core.errors import CozyError

from .auth import AuthMiddleware
from .body_limit import BodyLimitMiddleware
from .client_address import ClientAddress
from .errors import handle_cozy_error, handle_http_exception, handle_unexpected
from .forward import Forwarder
from .middleware import RequestContextMiddleware
from .openapi import build_openapi, docs, openapi_json
from .realtime.transport import realtime_endpoint
from .routes import admin, audio, audio_stream, chat, knowledge, meta, sessions, speech
from .uploads import FORM_OVERHEAD
from .webrtc import WebRTCGateway

log = logging.getLogger("cozy.http")


def package_version() -> str:
    try:
        return version("cozy-engine")
    except PackageNotFoundError:
        return "0.0.0"


UPLOAD_ROUTES = ("/v1/audio/transcriptions", "/v1/audio/stt")


def body_caps(settings: Settings) -> dict[str, int]:
    """Per-route body caps: the uploads follow their file limit unless `api.max_body_bytes_by_route` says."""
    upload = settings.engines.audio.max_upload_bytes + FORM_OVERHEAD
    return {**dict.fromkeys(UPLOAD_ROUTES, upload), **settings.api.max_body_bytes_by_route}


def create_app(settings: Settings, services: CozyServices | None = None) -> Starlette:
    """Build the app; `services.build()` runs here so bad configuration fails before binding."""
    services = services or CozyServices(settings)
    services.build()
    webrtc = WebRTCGateway(settings, services) if settings.api.webrtc.enabled else None
    forwarder = Forwarder(
        services.worker_id,
        secret=services.auth.secret,  # shared by every worker and node (JWT_SECRET_KEY)
        retry_after_s=settings.app.quotas.retry_after_s,
        read_timeout_s=settings.app.turn.llm_timeout_s + 30.0,  # a non-streamed reply arrives whole
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await services.start()
        try:
            if webrtc is not None:
                await webrtc.start()
            yield
        finally:
            if webrtc is not None:
                await webrtc.stop()  # calls end before the actors' supervisor goes
            await services.stop()
            await forwarder.close()

    routes = [
        Route("/v1/chat/completions", chat.chat_completions, methods=["POST"]),
        Route("/v1/audio/transcriptions", audio.transcriptions, methods=["POST"]),
        Route("/v1/audio/stt", audio.stt, methods=["POST"]),
        WebSocketRoute("/v1/audio/stt/stream", audio_stream.stt_stream),
        Route("/v1/audio/speech", speech.speech, methods=["POST"]),
        Route("/v1/audio/tts", speech.tts, methods=["POST"]),
        Route("/v1/audio/tts/stream", speech.tts_stream, methods=["POST"]),
        WebSocketRoute("/v1/realtime", realtime_endpoint),
        Route("/v1/models", meta.list_models, methods=["GET"]),
        Route("/v1/models/{model:path}", meta.get_model, methods=["GET"]),
        Route("/v1/personalities", meta.list_personalities, methods=["GET"]),
        Route("/v1/personalities/{personality_id}", meta.get_personality, methods=["GET"]),
        Route("/v1/chat/sessions", sessions.create_session, methods=["POST"]),
        Route("/v1/chat/sessions", sessions.list_sessions, methods=["GET"]),
        Route("/v1/chat/sessions/{session_id}", sessions.get_session, methods=["GET"]),
        Route("/v1/chat/sessions/{session_id}", sessions.delete_session, methods=["DELETE"]),
        Route("/v1/chat/sessions/{session_id}/messages", sessions.list_messages, methods=["GET"]),
        Route("/v1/auth/token", admin.issue_token, methods=["POST"]),
        Route("/v1/personalities/reload", admin.reload_personalities, methods=["POST"]),
        Route("/v1/tools", admin.list_tools, methods=["GET"]),
        Route("/v1/tools/refresh", admin.refresh_tools, methods=["POST"]),
        Route("/v1/admin/config", admin.get_config, methods=["GET"]),
        Route("/v1/admin/audit", admin.list_audit, methods=["GET"]),
        Route("/v1/admin/users", admin.create_user, methods=["POST"]),
        Route("/v1/admin/users", admin.list_users, methods=["GET"]),
        Route("/v1/admin/users/{user_id}", admin.get_user, methods=["GET"]),
        Route("/v1/admin/users/{user_id}", admin.update_user, methods=["PATCH"]),
        Route("/v1/admin/users/{user_id}/keys", admin.list_keys, methods=["GET"]),
        Route("/v1/admin/users/{user_id}/keys", admin.create_key, methods=["POST"]),
        Route("/v1/admin/users/{user_id}/keys/{key_id}", admin.revoke_key, methods=["DELETE"]),
        Route("/v1/knowledge/{dataset}", knowledge.add_documents, methods=["POST"]),
        Route("/v1/knowledge/{dataset}/search", knowledge.search, methods=["GET"]),
        Route("/health", meta.health, methods=["GET"]),
        Route("/ready", meta.ready, methods=["GET"]),
        Route("/metrics", meta.metrics, methods=["GET"]),
    ]
    if webrtc is not None:
        routes += webrtc.routes()  # POST {path}/webrtc/offer and the /ui call page
    if settings.api.docs_enabled:
        routes += [
            Route("/openapi.json", openapi_json, methods=["GET"]),
            Route("/docs", docs, methods=["GET"]),
        ]
        with contextlib.suppress(ImportError):
            import swagger_ui_bundle

            routes.append(Mount("/docs/static", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path)))
    worker = services.worker_id  # the placement's name for this process
    middleware = [Middleware(RequestContextMiddleware, access_log=settings.observability.access_log, worker_id=worker)]
    if settings.api.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=settings.api.cors_origins,
                allow_methods=["*"],
                allow_headers=["*"],
                expose_headers=["x-request-id"],
            )
        )
    # Bodies are capped before auth does any work (public routes too); a 413 still gets CORS headers.
    middleware.append(
        Middleware(BodyLimitMiddleware, default=settings.api.max_body_bytes, by_route=body_caps(settings))
    )
    # Innermost: CORS preflights are answered without a token; everything else not public needs one.
    public = [*settings.security.public_paths, *(webrtc.public_paths() if webrtc else [])]  # /ui signs in itself
    client_address = ClientAddress(settings.security.trusted_proxies)  # one rule for every per-address limit
    middleware.append(Middleware(AuthMiddleware, services=services, public_paths=public, client_address=client_address))
    app = Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={
            CozyError: handle_cozy_error,
            HTTPException: handle_http_exception,
            Exception: handle_unexpected,
        },
    )
    app.state.services = services
    app.state.settings = settings
    app.state.webrtc = webrtc
    app.state.forwarder = forwarder  # requests for conversations owned by another worker (forward.py)
    app.state.client_address = client_address
    app.state.openapi = build_openapi(package_version())
    if webrtc is not None:
        app.state.openapi["paths"].update(webrtc.openapi_paths())
    return app
