"""The /ui call page: a small Gradio Blocks around fastrtc's WebRTC component.

The page is served by Gradio from its wheel (no CDN; fonts are the system's). Sign-in is Gradio's
login form, checked by our auth service: a user name with that user's password, or with one of
their API keys (browsers cannot send a bearer header, and the page's offers go through Gradio's
own API, which the login protects). The component's connections are the Stream's, so the page
and `POST .../webrtc/offer` share one concurrency limit and one set of calls.

The live conversation (transcripts, interruptions, latencies) rides fastrtc's own side-data path:
the call's handler returns AdditionalOutputs from `emit`, fastrtc queues them and sends
`fetch_output` on the call's data channel, and the component's `state_change` event streams them
into an HTML block over Gradio's queue. No extra connection, nothing per audio frame.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import gradio as gr
from fastapi import FastAPI
from fastrtc import WebRTC

from cozy_actors.auth import tokens
from cozy_core.errors import CozyError

from .conversation import CSS, EMPTY

if TYPE_CHECKING:
    from .gateway import WebRTCGateway

INTRO = """## CozyEngine voice call
Pick a personality, press the button and talk; interrupt whenever you like.
Allow the microphone when the browser asks."""
POLL_S = 0.2  # how soon a finished call's view stream notices it is over
SIGN_IN = "Sign in with your CozyEngine user name and password, or your user name and one of your API keys."


def build_page(gateway: WebRTCGateway, stream: Any) -> FastAPI:
    """The Gradio app to mount at `webrtc.ui_path` (its lifespan must run: the gateway does it)."""
    personalities = gateway.services.personalities

    def choices() -> list[tuple[str, str]]:
        return [(f"{p.name} ({p.id})", p.id) for p in personalities.all()]

    theme = gr.themes.Default(
        font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]
    )  # the default theme would load Google Fonts
    ice = {"iceServers": list(gateway.cfg.ice_servers)}
    with gr.Blocks(title="CozyEngine call", theme=theme, analytics_enabled=False, css=CSS) as page:
        gr.Markdown(INTRO)
        personality = gr.Dropdown(choices(), value=personalities.default_id, label="Personality")
        call = WebRTC(
            label="Call",
            modality="audio",
            mode="send-receive",
            rtc_configuration=ice,
            server_rtc_configuration=ice,
            time_limit=gateway.cfg.time_limit_s,
            button_labels={"start": "Start call", "stop": "Hang up", "waiting": "Connecting"},
            full_screen=False,
        )
        conversation = gr.HTML(
            EMPTY, label="Conversation", show_label=True, container=True, elem_id="cozy-conversation",
            max_height=420, autoscroll=True,
        )  # fmt: skip

        async def call_settings(webrtc_id: Any, personality_id: str | None, request: gr.Request) -> None:
            """fastrtc asks for the page's inputs when a call starts (`send_input` -> tick)."""
            wid = _webrtc_id(webrtc_id)
            if wid:
                stream.set_input(wid, personality_id, request.username)

        call.tick(
            call_settings,
            inputs=[call, personality],
            outputs=None,
            concurrency_limit=None,
            show_progress="hidden",
            show_api=False,
        )

        async def conversation_views(webrtc_id: Any) -> AsyncIterator[str]:
            """The call's conversation views as they come (`fetch_output` -> state_change), newest only."""
            outputs = call.additional_outputs.get(_webrtc_id(webrtc_id) or "")
            while outputs is not None and not outputs.quit.is_set():
                try:
                    latest = await asyncio.wait_for(outputs.queue.get(), POLL_S)
                except TimeoutError:
                    continue
                while not outputs.queue.empty():
                    latest = outputs.queue.get_nowait()  # a view is the whole conversation: skip stale ones
                yield latest.args[0]

        # fastrtc's on_additional_outputs, with its loop ending as the call does (see above) and
        # without the default concurrency limit of 1 (one page's view would hold up all others).
        call.state_change(
            conversation_views,
            inputs=[call],
            outputs=[conversation],
            trigger_mode="once",
            concurrency_limit=None,
            show_progress="hidden",
            show_api=False,
        )
        page.load(lambda: gr.update(choices=choices()), outputs=personality, show_api=False)

    # One pool of peer connections: the component's offers and inputs go to the Stream.
    call.handle_offer = stream.handle_offer  # type: ignore[method-assign]
    call.set_input = stream.set_input  # type: ignore[method-assign]
    # ... and one table of side-data queues: the Stream's clean_up (the call is over) ends the
    # page's view stream, as the page's own quit_output_stream (hang up) does.
    call.additional_outputs = stream.additional_outputs

    async def login(username: str, password: str) -> bool:
        return await _login(gateway, username, password)

    return gr.mount_gradio_app(
        FastAPI(openapi_url=None, docs_url=None, redoc_url=None),
        page,
        path="",
        root_path=gateway.cfg.ui_path,
        auth=login if gateway.auth_enabled else None,
        auth_message=SIGN_IN,
        show_api=False,
        ssr_mode=False,
    )


def _webrtc_id(value: Any) -> str | None:
    """The component's value: the call's id, or WebRTCData holding it."""
    return value if isinstance(value, str) else getattr(value, "webrtc_id", None)


async def _login(gateway: WebRTCGateway, username: str, password: str) -> bool:
    """Gradio's login check: an API key/JWT of user `username`, else `username` + password."""
    auth = gateway.services.auth
    token: str | None = None
    if password.startswith(tokens.KEY_PREFIX) or tokens.looks_like_jwt(password):
        try:
            principal = await auth.authenticate(password, path=gateway.cfg.ui_path or "")
            token = password if principal.name == username else None
        except CozyError:
            token = None
    if token is None:
        try:
            token = (await auth.passwords.login(username, password)).access_token
        except CozyError:
            return False
    gateway.page_tokens[username] = token
    return True
