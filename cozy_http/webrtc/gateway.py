"""WebRTC calls on the Realtime actor: the fastrtc Stream, `POST {path}/webrtc/offer` and the /ui page.

fastrtc and gradio take seconds of CPU to import, so they load on the first call (or at start-up
with `webrtc.preload`), in a thread, never on the event loop. Only the offer endpoint is exposed:
`Stream.mount` would also add fastrtc's WebSocket and Twilio routes, whose handlers fastrtc never
shuts down (their sessions would live on until the idle timeout); the Realtime WebSocket already
serves WebSocket clients. The offer body and answers are fastrtc's, so its clients work unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import uuid
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import Receive, Scope, Send

from cozy_actors.auth.principal import Principal
from cozy_core.errors import CozyError

from ..api_schemas import json_response, parse_body
from ..auth import principal_of
from ..realtime.interruption_query import interruption_query
from .bridge import CallBridge
from .oai_calls import OpenAICalls
from .peers import PeerLocator
from .ui_worker import UiWorker

if TYPE_CHECKING:
    from cozy_actors.config import Settings
    from cozy_actors.services import CozyServices

log = logging.getLogger("cozy.webrtc")
_WEBRTC_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
_OFFLINE_ENV = {  # gradio and huggingface_hub must never phone home (no internet; and privacy)
    "GRADIO_ANALYTICS_ENABLED": "False",
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "GRADIO_SSR_MODE": "False",
}


class OfferBody(BaseModel):
    """fastrtc's signalling body: an SDP offer, or a trickled ICE candidate for a known call."""

    type: str
    webrtc_id: str = Field(min_length=1, max_length=128)
    sdp: str | None = None
    candidate: dict[str, Any] | None = None


def _failed(error: str, **meta: Any) -> Response:
    """fastrtc's failure shape (HTTP 200), which its clients and the Gradio component understand."""
    return json_response({"status": "failed", "meta": {"error": error, **meta}})


class WebRTCGateway:
    def __init__(self, settings: Settings, services: CozyServices) -> None:
        self.cfg = settings.api.webrtc
        self.services = services
        self.auth_enabled = settings.security.auth_enabled
        self.stream: Any = None
        self.ui_app: Any = None
        self.calls: dict[str, CallBridge] = {}  # webrtc_id -> live call
        self.pending: dict[str, CallBridge] = {}  # opened by the offer route, not yet claimed by a handler
        self.owners: dict[str, str] = {}  # webrtc_id -> user id: only the offerer may trickle candidates
        self.page_tokens: dict[str, str] = {}  # /ui login name -> the token it signed in with (re-checked per call)
        self._loading: asyncio.Task[None] | None = None
        self._ui_stop = asyncio.Event()
        self._ui_task: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self.peers = PeerLocator(services)  # which worker holds each call: ICE candidates reach it
        self.ui_worker = UiWorker(services)  # under --workers N, /ui is served by one of them
        self.openai = OpenAICalls(self)  # OpenAI's flow: POST /v1/realtime/calls, oai-events, sideband

    # --- wiring -------------------------------------------------------------------------------
    def routes(self) -> list[BaseRoute]:
        routes: list[BaseRoute] = [Route(f"{self.cfg.path}/webrtc/offer", self.offer, methods=["POST"])]
        routes += self.openai.routes()
        if self.cfg.ui_path:
            routes.append(Mount(self.cfg.ui_path, app=self.ui_asgi))
        return routes

    def public_paths(self) -> list[str]:
        """The page is public to the bearer middleware: browsers cannot send the header, so the
        page has its own sign-in, and its offers need it (Gradio's login, checked by our auth)."""
        return [self.cfg.ui_path] if self.cfg.ui_path else []

    def openapi_paths(self) -> dict[str, Any]:
        from .oai_openapi import openai_paths
        from .openapi import openapi_paths

        return {**openapi_paths(self.cfg.path), **openai_paths()}

    async def start(self) -> None:
        if self.cfg.preload:
            self._loading = asyncio.create_task(self._load(), name="webrtc-load")

    async def stop(self) -> None:
        await self.openai.stop()
        live = list(self.calls.values()) + list(self.pending.values())
        for bridge in live:
            await bridge.close("server shutting down")
        if live:
            await asyncio.sleep(0.2)  # their end_stream messages go out
        for task in list(self._closing):
            task.cancel()
        if self.stream is not None:
            for pc in list(self.stream.pcs.values()):
                with contextlib.suppress(Exception):
                    await pc.close()
        self._ui_stop.set()
        if self._ui_task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ui_task, 5)
        if self._loading is not None and not self._loading.done():
            self._loading.cancel()

    async def ready(self) -> None:
        """Load fastrtc once; every caller waits for the same load. 503 when it cannot load."""
        if self._loading is None:
            self._loading = asyncio.create_task(self._load(), name="webrtc-load")
        try:
            await asyncio.shield(self._loading)
        except Exception as exc:
            raise CozyError(f"WebRTC is unavailable: {exc}", code="SERVICE_UNAVAILABLE", status=503) from exc

    async def _load(self) -> None:
        for key, value in _OFFLINE_ENV.items():
            os.environ.setdefault(key, value)
        self.stream, self.ui_app = await asyncio.to_thread(self._build)
        if self.ui_app is not None:
            started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._ui_task = asyncio.create_task(self._hold_ui_lifespan(started), name="webrtc-ui")
            await started
        log.info("webrtc ready: offers at %s/webrtc/offer, page at %s", self.cfg.path, self.cfg.ui_path or "-")

    def _build(self) -> tuple[Any, Any]:
        from fastrtc import Stream

        from .handler import CallHandler

        ice = {"iceServers": list(self.cfg.ice_servers)}
        stream = Stream(
            CallHandler(self),
            modality="audio",
            mode="send-receive",
            concurrency_limit=self.cfg.concurrency_limit,
            time_limit=self.cfg.time_limit_s,
            rtc_configuration=ice,
            server_rtc_configuration=ice,
            verbose=False,
        )
        native_offer = stream.handle_offer

        async def handle_offer(body: dict[str, Any], set_outputs: Any) -> Any:
            answer = await native_offer(body, set_outputs)
            pc = stream.pcs.get(body.get("webrtc_id"))
            if body.get("type") == "offer" and pc is not None:
                low_latency_input(pc)  # no RTP can arrive before the peer has the answer
            return answer

        stream.handle_offer = handle_offer  # the page's WebRTC component is pointed at this one too
        ui = None
        if self.cfg.ui_path:
            from .ui import build_page

            ui = build_page(self, stream)
        return stream, ui

    async def _hold_ui_lifespan(self, started: asyncio.Future[None]) -> None:
        """Gradio's lifespan (its event queue) is entered and left on this one task."""
        try:
            async with self.ui_app.router.lifespan_context(self.ui_app):
                started.set_result(None)
                await self._ui_stop.wait()
        except Exception as exc:
            if not started.done():
                started.set_exception(exc)
            raise

    async def ui_asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The /ui mount: on the page's worker (ui_worker.py), after the lazy load, the Gradio app."""
        if scope["type"] not in ("http", "websocket") or await self.ui_worker.forwarded(scope, receive, send):
            return
        try:
            await self.ready()
        except CozyError as exc:
            if scope["type"] == "http":
                await JSONResponse({"error": {"message": exc.message, "code": exc.code}}, 503)(scope, receive, send)
            return
        await self.ui_app(scope, receive, send)

    # --- signalling ---------------------------------------------------------------------------
    async def offer(self, request: Request) -> Response:
        """POST {path}/webrtc/offer: SDP offer -> answer, with the call's session already open.
        Query: `cozy_personality_id`, `model`, `cozy_session_id`, `cozy_interruption[_...]`,
        `cozy_echo_cancellation` (as on /v1/realtime)."""
        principal = principal_of(request)
        body = await parse_body(request, OfferBody)
        await self.ready()
        stream, wid = self.stream, body.webrtc_id
        if body.type == "ice-candidate":
            if wid not in self.owners:  # held by another worker? then it answers
                there = await self.peers.forward_candidate(request, wid, principal.user_id)
                if there is not None:
                    return there  # type: ignore[return-value]
            if self.owners.get(wid) != principal.user_id:
                return _failed("unknown_connection")
            return _as_response(await stream.handle_offer(body.model_dump(), stream.set_additional_outputs(wid)))
        if body.type != "offer" or not body.sdp:
            raise CozyError(
                "'type' must be 'offer' (with 'sdp') or 'ice-candidate'",
                code="VALIDATION_ERROR",
                status=400,
                param="type",
            )
        if "\nm=audio " not in body.sdp or "\nm=application " not in body.sdp:
            raise CozyError(
                "the offer needs an audio track (the microphone) and a data channel (label 'text')",
                code="VALIDATION_ERROR",
                status=400,
                param="sdp",
            )
        if not _WEBRTC_ID.match(wid):
            raise CozyError(
                "'webrtc_id' must be 1-128 letters, digits or _.:-",
                code="VALIDATION_ERROR",
                status=400,
                param="webrtc_id",
            )
        if wid in stream.pcs or wid in self.calls or wid in self.pending:
            return _failed("connection_already_exists")
        if len(stream.pcs) + len(self.openai.calls) >= stream.concurrency_limit:  # one limit for both flows
            return _failed("concurrency_limit_reached", limit=stream.concurrency_limit)
        q = request.query_params
        bridge = await self.open_call(
            wid,
            principal,
            personality_id=q.get("cozy_personality_id"),
            model=q.get("model"),
            session_id=q.get("cozy_session_id"),
            interruption=interruption_query(q),
            echo_cancellation=q.get("cozy_echo_cancellation"),
        )
        self.pending[wid] = bridge
        bridge.expire_unless_attached(self.cfg.connect_timeout_s + 5)
        try:
            answer = await stream.handle_offer(body.model_dump(), stream.set_additional_outputs(wid))
        except Exception as exc:
            await self._drop_pc(wid)
            await bridge.close("offer failed")
            raise CozyError(f"invalid SDP offer: {exc}", code="VALIDATION_ERROR", status=400, param="sdp") from exc
        if isinstance(answer, Response):
            await bridge.close("offer refused")
        else:
            await self.peers.record(wid, principal.user_id)
        return _as_response(answer)

    def claim(self, webrtc_id: str) -> CallBridge | None:
        """The handler of `webrtc_id` takes the call its offer opened (None: a /ui page call)."""
        return self.pending.pop(webrtc_id, None)

    async def open_call(
        self,
        webrtc_id: str,
        principal: Principal,
        *,
        personality_id: str | None,
        model: str | None = None,
        session_id: str | None = None,
        interruption: dict[str, Any] | None = None,
        echo_cancellation: str | None = None,
    ) -> CallBridge:
        """Start the call's Realtime actor (404 personality, 503 at capacity: CozyError)."""
        bridge = CallBridge(webrtc_id, on_closed=self._closed)
        ref = await self.services.realtime.open(
            bridge.on_event,
            model=model,
            personality_id=personality_id,
            session_id=session_id or f"call_{uuid.uuid4().hex}",  # every call's turns are kept
            user_id=principal.user_id,
            key_id=principal.key_id,
            principal=principal,
            interruption=interruption,  # None: the personality's (pause: the server plays the reply)
            echo_cancellation=echo_cancellation,
            server_playback=True,
        )
        personality = self.services.personalities.get(personality_id)
        bridge.bind(ref, self.session_config(personality.voice.voice if personality else None))
        self.calls[webrtc_id] = bridge
        self.owners[webrtc_id] = principal.user_id
        return bridge

    def session_config(self, voice: str | None) -> dict[str, Any]:
        """The session of a call: server VAD with barge-in, PCM 24 kHz both ways, spoken replies."""
        output: dict[str, Any] = {"format": {"type": "audio/pcm", "rate": 24000}}
        if voice:
            output["voice"] = voice
        return {
            "type": "realtime",
            "output_modalities": ["audio"],
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": 24000},
                    "turn_detection": {
                        "type": "server_vad",
                        "silence_duration_ms": self.cfg.silence_duration_ms,
                        "create_response": True,
                        "interrupt_response": True,
                    },
                },
                "output": output,
            },
        }

    async def page_principal(self, user: Any) -> Principal:
        """Who a /ui call is for: the page's sign-in, re-checked now (a revoked key stops working)."""
        if not self.auth_enabled:
            return await self.services.auth.authenticate(None)
        token = self.page_tokens.get(user) if isinstance(user, str) else None
        if token is None:
            raise CozyError("sign in to the call page first", code="AUTH_MISSING_TOKEN", status=401)
        return await self.services.auth.authenticate(token, path=self.cfg.ui_path or "")

    def _closed(self, bridge: CallBridge) -> None:
        wid = bridge.webrtc_id
        if self.calls.get(wid) is bridge:
            del self.calls[wid]
        if self.pending.get(wid) is bridge:
            del self.pending[wid]
        if self.owners.pop(wid, None) is not None:
            self.peers.forget(wid)
        self.hang_up(wid)

    def hang_up(self, webrtc_id: str) -> None:
        """Close a call's peer connection soon (its last data-channel messages get out first)."""
        if self.stream is not None and webrtc_id in self.stream.pcs:
            task = asyncio.get_running_loop().create_task(self._drop_pc(webrtc_id, grace_s=0.5))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def _drop_pc(self, webrtc_id: str, grace_s: float = 0.0) -> None:
        """Close a call's peer connection (after `grace_s`, so the end-of-stream message gets out)."""
        if grace_s:
            await asyncio.sleep(grace_s)
        pc = self.stream.pcs.get(webrtc_id) if self.stream is not None else None
        if pc is not None:
            with contextlib.suppress(Exception):
                await pc.close()
            self.stream.clean_up(webrtc_id)


def low_latency_input(pc: Any) -> None:
    """aiortc holds every received audio frame until 4 more have arrived (an 80 ms jitter buffer);
    a frame is complete as soon as the next one starts, and reordering is handled by the gaps, so
    1 is enough: 60 ms sooner for the end-of-turn decision and for barge-in."""
    from aiortc.jitterbuffer import JitterBuffer

    for receiver in pc.getReceivers():
        if receiver.track is not None and receiver.track.kind == "audio" and hasattr(receiver, _JITTER):
            setattr(receiver, _JITTER, JitterBuffer(capacity=16, prefetch=1))


_JITTER = "_RTCRtpReceiver__jitter_buffer"


def _as_response(result: Any) -> Response:
    return result if isinstance(result, Response) else json_response(result)
