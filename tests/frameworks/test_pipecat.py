"""Pipecat 1.14 (`pipecat-ai`) against `cozy serve`: the GA OpenAIRealtimeLLMService in a pipeline.

The pipeline is Pipecat's usual shape (user aggregator -> realtime LLM -> output -> assistant
aggregator) with a minimal output processor in place of a transport: it records the frames the
service pushes (audio, transcripts, interruptions, errors). The user's microphone is
InputAudioRawFrames queued at the pipeline's head. Pipecat treats any `error` event as fatal to
the connection, so an ErrorFrame fails the test; it also parses the echoed session with its own
models, so an echo it cannot build kills the session (nothing is spoken).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from pipecat.frames.frames import (
    EndFrame,
    ErrorFrame,
    Frame,
    InputAudioRawFrame,
    InterruptionFrame,
    LLMRunFrame,
    TTSAudioRawFrame,
    TTSStoppedFrame,
    TTSTextFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.openai.realtime.events import (
    AudioConfiguration,
    AudioInput,
    InputAudioTranscription,
    SessionProperties,
)
from pipecat.services.openai.realtime.llm import OpenAIRealtimeLLMService
from pipecat.workers.runner import WorkerRunner

from tests.e2e.realtime_support import words

from .conftest import API_KEY, INTERRUPTION, FrameworkServer, silence

FRAME = 4800  # 100 ms of PCM16 at 24 kHz
RATE = 24000


class Output(FrameProcessor):
    """Stands where an output transport would: records what the LLM service pushes downstream."""

    def __init__(self) -> None:
        super().__init__()
        self.frames: list[Frame] = []
        self.changed = asyncio.Event()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if direction == FrameDirection.DOWNSTREAM:
            self.frames.append(frame)
            self.changed.set()
        await self.push_frame(frame, direction)

    def of(self, kind: type) -> list[Any]:
        return [f for f in self.frames if isinstance(f, kind)]

    def spoken_text(self) -> str:
        return "".join(f.text for f in self.of(TTSTextFrame))


class RecordingRealtime(OpenAIRealtimeLLMService):
    """The stock service, with the GA events on its WebSocket recorded in both directions."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sent: list[dict[str, Any]] = []
        self.received: list[dict[str, Any]] = []

    async def send_client_event(self, event: Any) -> None:
        self.sent.append(event.model_dump(exclude_none=True))
        await super().send_client_event(event)

    async def _connect(self) -> None:
        await super()._connect()
        if self._websocket is not None:
            self._websocket = _Tap(self._websocket, self.received)


class _Tap:
    """Wraps the service's websocket: every message it iterates over is also kept, parsed."""

    def __init__(self, ws: Any, into: list[dict[str, Any]]) -> None:
        self._ws, self._into = ws, into

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ws, name)

    async def __aiter__(self) -> Any:
        async for message in self._ws:
            self._into.append(json.loads(message))
            yield message


async def until(out: Output, check: Callable[[], Any], timeout: float = 30.0) -> Any:
    try:
        async with asyncio.timeout(timeout):
            while not (result := check()):
                out.changed.clear()
                await out.changed.wait()
    except TimeoutError:
        raise AssertionError(f"not seen in {timeout:.0f} s; spoken so far: {out.spoken_text()!r}") from None
    return result


def responses_done(llm: RecordingRealtime) -> list[str]:
    return [e["response"]["status"] for e in llm.received if e["type"] == "response.done"]


async def microphone(worker: PipelineWorker, pcm: bytes, trailing_ms: int = 1200) -> None:
    audio = pcm + silence(trailing_ms)
    for at in range(0, len(audio), FRAME):
        await worker.queue_frame(InputAudioRawFrame(audio=audio[at : at + FRAME], sample_rate=RATE, num_channels=1))
        await asyncio.sleep(0.1)


async def test_openai_realtime_llm_service_two_turns_and_interruption(
    framework_server: FrameworkServer, question_pcm: bytes, interruption_pcm: bytes
) -> None:
    llm = RecordingRealtime(
        api_key=API_KEY,
        base_url=framework_server.realtime_url,
        settings=OpenAIRealtimeLLMService.Settings(
            model="stub-model",
            system_instruction="You are a test bot.",
            # Pipecat's own transcription default (model "gpt-realtime-whisper"), as its examples set it.
            session_properties=SessionProperties(
                audio=AudioConfiguration(input=AudioInput(transcription=InputAudioTranscription()))
            ),
        ),
    )
    context = LLMContext([{"role": "user", "content": "Hello from Pipecat."}])
    user, assistant = LLMContextAggregatorPair(context)
    out = Output()
    worker = PipelineWorker(
        Pipeline([user, llm, out, assistant]),
        params=PipelineParams(audio_in_sample_rate=RATE, audio_out_sample_rate=RATE),
        cancel_on_idle_timeout=False,
    )
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)

    async def conversation() -> None:
        try:
            # Turn 1: the context's text, run by LLMRunFrame.
            await worker.queue_frames([LLMRunFrame()])
            await until(out, lambda: "Echo: Hello from Pipecat." in out.spoken_text())
            await until(out, lambda: out.of(TTSStoppedFrame))
            assert sum(len(f.audio) for f in out.of(TTSAudioRawFrame)) > RATE  # > 0.5 s of speech
            # Turn 2: the user speaks; the server's VAD ends the turn and answers.
            await microphone(worker, question_pcm)
            await until(out, lambda: "Paris" in out.spoken_text().split("Echo: Hello from Pipecat.", 1)[1])
            turn2_audio = len(out.of(TTSAudioRawFrame))
            await until(out, lambda: len(out.of(TTSAudioRawFrame)) > turn2_audio + 5)  # turn 2's reply is playing
            # Interruption: the user talks over the reply.
            interruptions = len(out.of(InterruptionFrame))
            await microphone(worker, interruption_pcm)
            await until(out, lambda: len(out.of(InterruptionFrame)) > interruptions)
            expected = words(INTERRUPTION)
            await until(out, lambda: any(len(words(t) & expected) >= 3 for t in out.spoken_text().split("Echo: ")[3:]))
            await until(out, lambda: len(responses_done(llm)) >= 3)  # turn 3's reply ended
        except BaseException:
            await worker.cancel(reason="test failed")  # an EndFrame would wait for the pipeline to drain
            raise
        await worker.queue_frame(EndFrame())

    await asyncio.wait_for(asyncio.gather(runner.run(), conversation()), 120)

    assert out.of(ErrorFrame) == []
    assert [e for e in llm.received if e["type"] == "error"] == []
    assert responses_done(llm) == ["completed", "cancelled", "completed"]
    # Pipecat truncated the interrupted item at what it had played; the server confirmed it.
    truncates = [e for e in llm.sent if e["type"] == "conversation.item.truncate"]
    truncated = {e["item_id"] for e in llm.received if e["type"] == "conversation.item.truncated"}
    assert truncates and {t["item_id"] for t in truncates} <= truncated
    # Its session.update (instructions, Pipecat's transcription default) was applied, not refused.
    updated = [e["session"] for e in llm.received if e["type"] == "session.updated"]
    assert updated and all("You are a test bot." in s["instructions"] for s in updated)
    assert updated[-1]["audio"]["input"]["transcription"]["model"] == "gpt-realtime-whisper"
    heard = [
        e["transcript"] for e in llm.received if e["type"] == "conversation.item.input_audio_transcription.completed"
    ]
    assert len(heard) == 2 and {"weather", "paris"} <= words(heard[0]), heard
