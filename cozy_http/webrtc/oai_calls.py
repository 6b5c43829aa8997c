"""OpenAI's WebRTC flow on the Realtime actor: `POST /v1/realtime/calls` (SDP offer -> answer),
`POST /v1/realtime/calls/{call_id}/hangup`, `POST /v1/realtime/client_secrets` (ephemeral keys),
and the sideband attach that `WS /v1/realtime?call_id=` uses (cozy_http/realtime/transport.py).

Why beside the FastRTC gateway and not in it: the signalling (SDP in the body, `Location` with the
call id) and the data channel (`oai-events`, the Realtime events themselves) are OpenAI's; the
actor, its session and the bridge that moves audio and barge-in are the same (bridge.py), and so
are the limits (`api.webrtc`: concurrency, connect timeout, ICE servers; no public STUN). Which
worker holds a call is recorded like a FastRTC call (rtc_peers), so a hang-up reaching another
worker is forwarded there and a sideband WebSocket there is refused naming the owner.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import TYPE_CHECKING, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from cozy_actors.auth.principal import Principal
from cozy_actors.quotas import ServerFull
from cozy_actors.realtime.config import SessionConfig
from cozy_actors.realtime.items import RealtimeError
from cozy_actors.runtime import ActorRef
from cozy_core.errors import CozyError

from ..api_schemas import json_response, parse_body
from ..auth import principal_of
from ..forward import was_forwarded
from ..realtime.interruption_query import interruption_query
from ..routes.chat import read_json
from .bridge import CallBridge

if TYPE_CHECKING:
    from .gateway import WebRTCGateway
    from .oai_peer import OpenAICall

log = logging.getLogger("cozy.webrtc")
CALLS_PATH = "/v1/realtime/calls"
_PCM24 = ({"type": "audio/pcm", "rate": 24000}, {"type": "audio/pcm"})


class ExpiresAfter(BaseModel):
    model_config = ConfigDict(extra="forbid")
    anchor: Literal["created_at"] = "created_at"
    seconds: int = Field(600, ge=10, le=7200)


class ClientSecretBody(BaseModel):
    """OpenAI's `ClientSecretCreateParams`: how long the key lives and the session it starts."""

    model_config = ConfigDict(extra="forbid")
    expires_after: ExpiresAfter = ExpiresAfter()
    session: dict[str, Any] = {}


def format_refusal(audio: Any, where: str) -> tuple[str, str] | None:
    """(message, param) when `audio` sets a format other than audio/pcm 24 kHz: over WebRTC the wire
    is Opus and the session's side of the track is PCM16 24 kHz, so nothing else can apply."""
    if not isinstance(audio, dict):
        return None
    for side in ("input", "output"):
        fmt = (audio.get(side) or {}).get("format") if isinstance(audio.get(side), dict) else None
        if fmt is not None and fmt not in _PCM24:
            param = f"{where}.{side}.format"
            return f"a WebRTC call's audio is Opus on the wire and audio/pcm 24 kHz in the session: '{param}'", param
    return None


def pinned_format(event: Any) -> tuple[str, str] | None:
    """(message, param) when a client event of a call (data channel or sideband) is a session.update
    that would change the audio format."""
    if not isinstance(event, dict) or event.get("type") != "session.update":
        return None
    session = event.get("session")
    return format_refusal(session.get("audio"), "session.audio") if isinstance(session, dict) else None


def _invalid(message: str, param: str | None) -> CozyError:
    return CozyError(message, code="VALIDATION_ERROR", status=400, param=param)


class OpenAICalls:
    def __init__(self, gateway: WebRTCGateway) -> None:
        self.gateway = gateway
        self.services = gateway.services
        self.cfg = gateway.cfg
        self.calls: dict[str, OpenAICall] = {}  # call_id -> live call on this worker
        self._peer_mod: asyncio.Task[Any] | None = None
        self._closing: set[asyncio.Task[None]] = set()

    def routes(self) -> list[BaseRoute]:
        return [
            Route(CALLS_PATH, self.create_call, methods=["POST"]),
            Route(CALLS_PATH + "/{call_id}/hangup", self.hangup, methods=["POST"]),
            Route("/v1/realtime/client_secrets", self.client_secrets, methods=["POST"]),
        ]

    async def stop(self) -> None:
        for call in list(self.calls.values()):
            await call.bridge.close("server shutting down")
        if self._closing:
            await asyncio.wait(list(self._closing), timeout=2.0)

    async def _peers(self) -> Any:
        """oai_peer (aiortc, PyAV) is imported once, in a thread: the first call must not stall the loop."""
        if self._peer_mod is None:
            self._peer_mod = asyncio.ensure_future(asyncio.to_thread(_import_peer))
        try:
            return await asyncio.shield(self._peer_mod)
        except ImportError as exc:
            raise CozyError(f"WebRTC is unavailable: {exc}", code="SERVICE_UNAVAILABLE", status=503) from exc

    # --- session config -----------------------------------------------------------------------
    def call_config(self, sessions: list[dict[str, Any]], voice: str | None) -> dict[str, Any]:
        """The session a call starts with: the call defaults (server VAD with barge-in, spoken replies,
        the personality's voice), then each of `sessions` in turn; validated like session.update (400)."""
        config = SessionConfig().merged(self.gateway.session_config(voice))
        for session in sessions:
            if refusal := format_refusal(session.get("audio"), "session.audio"):
                raise _invalid(*refusal)
            try:
                config = config.merged(session)
            except RealtimeError as exc:
                raise _invalid(exc.message, exc.param) from None
        out = config.model_dump(mode="json")
        if not any("model" in session for session in sessions):
            out.pop("model")  # the session's model is then the personality's
        return out

    # --- routes -------------------------------------------------------------------------------
    async def create_call(self, request: Request) -> Response:
        """POST /v1/realtime/calls: the SDP offer (raw `application/sdp`, or multipart / JSON with
        `sdp` and `session`) -> 201, the SDP answer, `Location: /v1/realtime/calls/{call_id}`.
        A call refused (bad offer or session, full server) gives its ephemeral key back."""
        try:
            return await self._create_call(request)
        except BaseException:
            await self.services.ephemeral_keys.give_back(getattr(request.state, "ephemeral_key", None))
            raise

    async def _create_call(self, request: Request) -> Response:
        principal = principal_of(request)
        sdp, body_session = await _read_offer(request)
        key_session = getattr(request.state, "ephemeral_session", None) or {}  # then the page's refines it
        q = request.query_params
        personality_id = q.get("cozy_personality_id")
        personality = self.services.personalities.get(personality_id)
        config = self.call_config([key_session, body_session], personality.voice.voice if personality else None)
        if "\nm=audio " not in sdp.replace("\r\n", "\n"):
            raise _invalid("the offer needs an audio track (the microphone)", "sdp")
        live = len(self.calls) + (len(self.gateway.stream.pcs) if self.gateway.stream is not None else 0)
        if live >= self.cfg.concurrency_limit:
            raise ServerFull(
                f"too many WebRTC calls ({self.cfg.concurrency_limit}); retry shortly",
                self.services.settings.app.quotas.retry_after_s,
            )
        peer = await self._peers()
        call_id = f"rtc_{uuid.uuid4().hex[:24]}"
        bridge = CallBridge(call_id, on_closed=self._closed)
        limits = self.services.settings.api.realtime
        call = peer.OpenAICall(
            call_id,
            bridge,
            ice_servers=list(self.cfg.ice_servers),
            max_message=limits.max_message_bytes,
            max_outbox=limits.max_outbox_bytes,
        )
        call.user_id = principal.user_id
        try:
            await call.take_offer(sdp)
        except Exception as exc:
            await call.pc.close()
            raise _invalid(f"invalid SDP offer: {exc}", "sdp") from exc
        try:
            ref = await self.services.realtime.open(
                call.emit,
                model=config.get("model") or q.get("model"),  # OpenAI's guide passes `?model=`
                personality_id=personality_id,
                session_id=q.get("cozy_session_id") or f"call_{uuid.uuid4().hex}",  # every call's turns are kept
                user_id=principal.user_id,
                key_id=principal.key_id,
                principal=principal,
                config=config,
                interruption=interruption_query(q),  # default: the personality's (pause)
                echo_cancellation=q.get("cozy_echo_cancellation"),
                server_playback=True,
            )
        except BaseException:
            await call.pc.close()
            raise
        bridge.bind(ref, None)  # opened with its config: session.created already carries it
        self.calls[call_id] = call
        bridge.expire_unless_attached(self.cfg.connect_timeout_s)
        if self.cfg.time_limit_s:
            call.limit(self.cfg.time_limit_s)
        try:
            answer = await call.answer()
        except Exception as exc:
            await bridge.close("offer failed")
            raise _invalid(f"cannot answer this SDP offer: {exc}", "sdp") from exc
        await self.gateway.peers.record(call_id, principal.user_id)
        log.info("openai webrtc call %s for user %s", call_id, principal.user_id)
        location = f"{CALLS_PATH}/{call_id}"
        return Response(answer, status_code=201, media_type="application/sdp", headers={"location": location})

    async def hangup(self, request: Request) -> Response:
        """POST /v1/realtime/calls/{call_id}/hangup: the call's owner or an admin ends it."""
        principal = principal_of(request)
        call_id = request.path_params["call_id"]
        call = self.calls.get(call_id)
        if call is None or not _may_use(call.user_id, principal):
            elsewhere = await self._owner_elsewhere(request, call_id, principal)
            if elsewhere is not None:
                return await request.app.state.forwarder.forward(request, elsewhere[1], owner=elsewhere[0])  # type: ignore[no-any-return]
            raise _not_found(call_id)
        await call.bridge.close("hung up")
        return Response(status_code=200)

    async def client_secrets(self, request: Request) -> Response:
        """POST /v1/realtime/client_secrets: an `ek_...` key that starts one session as the caller."""
        principal = principal_of(request)
        body = await parse_body(request, ClientSecretBody, empty_ok=True)
        config = self.call_config([body.session], None)  # refused now, not when the page uses it
        value, expires_at = await self.services.ephemeral_keys.create(
            principal, body.session, body.expires_after.seconds
        )
        self.services.infra.audit.record(
            "realtime.client_secret",
            outcome="ok",
            user_id=principal.user_id,
            detail={"expires_at": expires_at, "key_id": principal.key_id},
        )
        shown = {"object": "realtime.session", **config, "expires_at": expires_at}
        return json_response({"value": value, "expires_at": expires_at, "session": shown})

    # --- sideband -----------------------------------------------------------------------------
    async def attach(self, call_id: str, principal: Principal | None, emit: Any) -> tuple[ActorRef, Any]:
        """A sideband transport joins the call: (the call's actor, detach). Its owner or an admin only."""
        call = self.calls.get(call_id)
        if call is None or call.bridge.ref is None or call.bridge.closed or not _may_use(call.user_id, principal):
            where = await self._owner_elsewhere(None, call_id, principal)
            if where is not None:
                raise CozyError(
                    f"call {call_id} is live on worker {where[0]}, which did not take the relayed sideband; "
                    "retry shortly",
                    code="RESOURCE_SESSION_BUSY",
                    status=409,
                    param="call_id",
                )
            raise _not_found(call_id)

        def sideband(event: dict[str, Any]) -> None:
            if event.get("type") != "response.output_audio.delta":  # the call's audio is on its track
                emit(event)

        return call.bridge.ref, call.emit.subscribe(sideband)

    async def held_elsewhere(self, call_id: str, principal: Principal | None) -> str | None:
        """The internal address of another worker holding this call (the caller's, or any for an
        admin) when it is not live here: where its sideband WebSocket is relayed."""
        call = self.calls.get(call_id)
        if call is not None and call.bridge.ref is not None and not call.bridge.closed:
            return None
        where = await self._owner_elsewhere(None, call_id, principal)
        return where[1] if where is not None else None

    async def _owner_elsewhere(
        self, request: Request | None, call_id: str, principal: Principal | None
    ) -> tuple[str, str] | None:
        """(worker id, address) of another live worker holding the call, if the caller may use it."""
        store = self.gateway.peers.store
        if store is None or (request is not None and was_forwarded(request)):
            return None
        try:
            peer = await store.get(call_id)
        except CozyError:
            return None
        if peer is None or peer.worker_id == self.services.worker_id or not _may_use(peer.user_id, principal):
            return None
        return peer.worker_id, peer.address

    def _closed(self, bridge: CallBridge) -> None:
        call = self.calls.pop(bridge.webrtc_id, None)
        if call is None:
            return
        self.gateway.peers.forget(bridge.webrtc_id)
        task = asyncio.get_running_loop().create_task(call.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)


def _may_use(owner: str | None, principal: Principal | None) -> bool:
    return principal is not None and (principal.is_admin or owner == principal.user_id)


def _not_found(call_id: str) -> CozyError:
    return CozyError(f"no live call {call_id!r} of yours", code="RESOURCE_NOT_FOUND", status=404, param="call_id")


def _import_peer() -> Any:
    from . import oai_peer

    return oai_peer


async def _read_offer(request: Request) -> tuple[str, dict[str, Any]]:
    """(SDP offer, session config) from `application/sdp`, `multipart/form-data` or JSON."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    session: Any = None
    if ctype == "application/sdp":
        sdp: Any = (await request.body()).decode("utf-8", "replace")
    elif ctype == "multipart/form-data":
        form = await request.form()
        sdp, session = form.get("sdp"), form.get("session")
        if isinstance(sdp, UploadFile):
            sdp = (await sdp.read()).decode("utf-8", "replace")
        if isinstance(session, UploadFile):
            session = await session.read()
        if session is not None:
            try:
                session = orjson.loads(session)
            except orjson.JSONDecodeError as exc:
                raise _invalid(f"'session' is not JSON: {exc}", "session") from None
    elif ctype == "application/json":
        raw = await read_json(request)
        if not isinstance(raw, dict):
            raise _invalid("request body must be a JSON object", None)
        sdp, session = raw.get("sdp"), raw.get("session")
    else:
        raise _invalid("send the SDP offer as application/sdp, or multipart/form-data with 'sdp' and 'session'", "sdp")
    if not isinstance(sdp, str) or not sdp.strip():
        raise _invalid("'sdp' (the SDP offer) is missing", "sdp")
    if session is not None and not isinstance(session, dict):
        raise _invalid("'session' must be a JSON object (a GA session config)", "session")
    return sdp, session or {}
