"""The fastrtc handler of a call: a thin adapter between fastrtc's audio loop and the call's bridge.

Not `ReplyOnPause`: that one runs its own VAD (a model from the hub) and only stops talking once
the caller's new utterance has ended. Here VAD, STT, the turn and paced TTS all live in the
Realtime actor; this class moves frames and makes barge-in drop queued audio at once.
Imports fastrtc: loaded lazily by the gateway.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import av
import numpy as np
from fastrtc import AdditionalOutputs, AsyncStreamHandler, get_current_context, wait_for_item

from cozy_core.errors import CozyError

from .bridge import CLOSE, SESSION_RATE, CallBridge, encode_message

if TYPE_CHECKING:
    from .gateway import WebRTCGateway

log = logging.getLogger("cozy.webrtc")
# fastrtc resamples every incoming frame anyway (PyAV, to `input_sample_rate`): asking it for the
# session's 24 kHz saves a second pass, and soxr's HQ stream filter would hold back ~30 ms of speech.
INPUT_RATE = SESSION_RATE


class CallHandler(AsyncStreamHandler):
    def __init__(self, gateway: WebRTCGateway) -> None:
        super().__init__(expected_layout="mono", output_sample_rate=SESSION_RATE, input_sample_rate=INPUT_RATE)
        self.gateway = gateway
        self.bridge: CallBridge | None = None

    def copy(self) -> CallHandler:
        """fastrtc builds one handler per peer connection from the template."""
        return CallHandler(self.gateway)

    async def start_up(self) -> None:
        """Claim the call the offer route opened or, for the /ui page, open it from the page's inputs."""
        webrtc_id = get_current_context().webrtc_id
        bridge = self.gateway.claim(webrtc_id)
        from_page = bridge is None
        if bridge is None:
            try:
                bridge = await self._open_from_page(webrtc_id)
            except CozyError as exc:
                self._fail(exc.message, webrtc_id)
                return
        self.bridge = bridge
        bridge.attach(self, show_conversation=from_page)  # only the page reads fastrtc's side data

    async def _open_from_page(self, webrtc_id: str) -> CallBridge:
        try:
            async with asyncio.timeout(self.gateway.cfg.connect_timeout_s):
                await self.wait_for_args()  # the page answers fastrtc's send_input with its inputs
        except TimeoutError:
            raise CozyError("the call page sent no call settings", code="TIMEOUT", status=408) from None
        args = list(self.latest_args[1:])
        if len(args) != 2 or not isinstance(args[0], str | None):
            raise CozyError("this call was not started from the call page", code="VALIDATION_ERROR", status=400)
        personality_id, user = args
        principal = await self.gateway.page_principal(user)
        return await self.gateway.open_call(webrtc_id, principal, personality_id=personality_id)

    def _fail(self, message: str, webrtc_id: str) -> None:
        log.info("webrtc call refused: %s", message)
        self.post({"type": "error", "message": message})
        self.post({"type": "end_stream", "data": message})
        self.gateway.hang_up(webrtc_id)

    def resample(self, frame: Any) -> Any:
        """fastrtc's resampler, without its fixed output frame size: at 24 kHz that size (the input
        frame's 960 samples) would hold every 20 ms frame back until a second one arrived."""
        if self._resampler is None:
            self._resampler = av.AudioResampler(format="s16", layout="mono", rate=self.input_sample_rate)
        yield from self._resampler.resample(frame)

    async def receive(self, frame: tuple[int, np.ndarray]) -> None:
        bridge = self.bridge
        if bridge is not None:
            bridge.feed(frame[1])

    async def emit(self) -> Any:
        """Next reply chunk for fastrtc (which re-frames it to 20 ms and paces it), the page's
        conversation view (AdditionalOutputs, from `side_output`), or None."""
        if self.bridge is None:
            await asyncio.sleep(0.05)
            return None
        item = await wait_for_item(self.bridge.out, 0.05)
        if item is CLOSE:
            # fastrtc's CloseStream would make the audio track return None to aiortc's sender (a logged
            # traceback); the gateway closes the peer connection instead, after this message.
            self.post({"type": "end_stream", "data": self.bridge.reason or "call ended"})
            return None
        return item

    async def shutdown(self) -> None:
        """fastrtc calls this when the peer connection closes: the session ends with it."""
        if self.bridge is not None:
            await self.bridge.close("peer connection closed")

    # --- Peer (what the bridge calls) ---------------------------------------------------------
    def clear_output(self) -> None:
        if self._clear_queue is not None:
            self._clear_queue()  # fastrtc's queue of encoded, not yet sent frames

    def side_output(self, html: str) -> AdditionalOutputs:
        """Returned by `emit` like audio: fastrtc queues it for the page and tells the page to fetch it."""
        return AdditionalOutputs(html)

    def post(self, message: dict[str, Any]) -> None:
        channel = self.channel
        if channel is not None and channel.readyState == "open":
            channel.send(encode_message(message))
