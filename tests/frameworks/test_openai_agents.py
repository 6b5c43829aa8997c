"""The OpenAI Agents SDK (`openai-agents`) against `cozy serve`: RealtimeAgent + RealtimeRunner.

The SDK validates every server event against the openai SDK's GA types and turns anything it
cannot parse into an error event, so "no error events" is part of every check here. It runs
with its own defaults (semantic_vad, gpt-4o-mini-transcribe, voice "ash", model
"gpt-realtime-2.1", a second session.update with tracing "auto"); only the URL points at us.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from agents import function_tool
from agents.realtime import RealtimeAgent, RealtimeRunner, RealtimeSession

from tests.e2e.realtime_support import words

from .conftest import API_KEY, INTERRUPTION, FrameworkServer, silence

FRAME = 4800  # 100 ms of PCM16 at 24 kHz
INSTRUCTIONS = "You are the framework test agent."
LONG_REQUEST = (
    "Please tell me a long story about a lighthouse keeper and her cat, who watched the ships "
    "sail by every night and counted each one of them until the morning came."
)


class Recorder:
    """Every session event, as the SDK hands them to an application, with arrival times."""

    def __init__(self, session: RealtimeSession) -> None:
        self.events: list[tuple[float, Any]] = []
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._pump(session))

    async def _pump(self, session: RealtimeSession) -> None:
        async for event in session:
            self.events.append((time.monotonic(), event))
            self._changed.set()

    def of(self, kind: str) -> list[Any]:
        return [e for _, e in self.events if e.type == kind]

    def raw(self, server_type: str) -> list[dict[str, Any]]:
        """Raw GA server events of one type (the SDK exposes each as a raw_model_event)."""
        out = []
        for e in self.of("raw_model_event"):
            if e.data.type == "raw_server_event" and e.data.data.get("type") == server_type:
                out.append(e.data.data)
        return out

    def errors(self) -> list[Any]:
        """Error events at both levels: the session's and the model's (validation failures)."""
        model = [e.data for e in self.of("raw_model_event") if e.data.type in ("error", "exception")]
        return [*self.of("error"), *model]

    async def until(self, check: Callable[[], Any], timeout: float = 30.0) -> Any:
        try:
            async with asyncio.timeout(timeout):
                while not (result := check()):
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"not seen in {timeout:.0f} s; last events: {self.summary()}") from None
        return result

    def summary(self, last: int = 40) -> list[str]:
        """The last server event types (with transcripts and errors), for failure messages."""
        out = []
        for e in self.of("raw_model_event")[-last:]:
            if e.data.type == "raw_server_event":
                d = e.data.data
                if d.get("type") != "response.output_audio.delta" and not d.get("type", "").endswith(
                    "transcript.delta"
                ):
                    out.append(f"{d.get('type')} {d.get('transcript') or d.get('error') or ''}".strip())
            elif e.data.type in ("error", "exception"):
                out.append(f"model {e.data.type}: {e.data}")
        return out

    async def close(self) -> None:
        self._task.cancel()


class Microphone:
    """A live microphone: 100 ms chunks at real-time pace, silence between utterances (as a real
    one sends). semantic_vad (the SDK's default) decides the end of a turn on audio time, so a
    client that stops sending after speaking would leave an "incomplete" utterance open."""

    def __init__(self, session: RealtimeSession) -> None:
        self._session = session
        self._pending = bytearray()
        self._sent = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        quiet = silence(100)
        while True:
            chunk = bytes(self._pending[:FRAME]) or quiet
            del self._pending[:FRAME]
            await self._session.send_audio(chunk)
            if not self._pending:
                self._sent.set()
            await asyncio.sleep(0.1)

    async def say(self, pcm: bytes) -> None:
        """Queue a clip and return once it has been sent."""
        self._sent.clear()
        self._pending += pcm
        await self._sent.wait()

    async def close(self) -> None:
        self._task.cancel()


def transcripts(rec: Recorder) -> list[str]:
    return [e["transcript"] for e in rec.raw("response.output_audio_transcript.done")]


async def test_realtime_agent_text_tool_audio_and_interruption(
    framework_server: FrameworkServer, question_pcm: bytes, interruption_pcm: bytes
) -> None:
    cities: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        cities.append(city)
        return f"sunny in {city}"

    agent = RealtimeAgent(name="cozy-test", instructions=INSTRUCTIONS, tools=[get_weather])
    runner = RealtimeRunner(agent)
    session = await runner.run(
        model_config={"url": f"{framework_server.realtime_url}?model=stub-model", "api_key": API_KEY}
    )
    async with session:
        rec = Recorder(session)
        mic: Microphone | None = None
        try:
            # The agent's configuration was applied, not refused: instructions and tool echoed.
            def configured() -> bool:
                for s in (u["session"] for u in rec.raw("session.updated")):
                    if s["instructions"] == INSTRUCTIONS and [t["name"] for t in s["tools"]] == ["get_weather"]:
                        return True
                return False

            await rec.until(configured)

            # 1. A text turn whose reply is a call of the agent's function tool.
            await session.send_message('CALL get_weather {"city": "Paris"}')
            await rec.until(lambda: rec.of("tool_end"))
            tool_end = rec.of("tool_end")[0]
            assert tool_end.tool.name == "get_weather" and tool_end.output == "sunny in Paris"
            assert cities == ["Paris"]
            await rec.until(lambda: "Tool get_weather returned: sunny in Paris" in transcripts(rec))
            assert rec.of("audio"), "the tool's answer was spoken"

            # 2. An audio turn: speech streamed with send_audio, the server's turn detection ends it.
            mic = Microphone(session)
            await rec.until(lambda: len(rec.of("agent_end")) >= 2)
            await mic.say(question_pcm)
            done = await rec.until(lambda: rec.raw("conversation.item.input_audio_transcription.completed"))
            heard = done[0]["transcript"]
            assert {"weather", "paris"} <= words(heard), heard
            await rec.until(lambda: any(t.startswith("Echo: ") and "Paris" in t for t in transcripts(rec)))
            await rec.until(lambda: len(rec.of("agent_end")) >= 3)

            # 3. An interruption: the user talks over a long spoken reply.
            await session.send_message(LONG_REQUEST)
            first_audio = len(rec.of("audio"))
            await rec.until(lambda: len(rec.of("audio")) > first_audio + 5)  # the reply is playing
            reply_item = rec.of("audio")[-1].item_id
            await mic.say(interruption_pcm)
            interrupted = await rec.until(lambda: [e for e in rec.of("audio_interrupted") if e.item_id == reply_item])
            assert interrupted
            cancelled = [d for d in rec.raw("response.done") if d["response"]["status"] == "cancelled"]
            assert cancelled and cancelled[0]["response"]["status_details"]["reason"] == "turn_detected"
            # The SDK truncates the interrupted item at what it played; we confirm the cut.
            truncated = await rec.until(
                lambda: [t for t in rec.raw("conversation.item.truncated") if t["item_id"] == reply_item]
            )
            assert 0 < truncated[0]["audio_end_ms"] < 60_000
            # ... and the interrupting speech became the next turn.
            expected = words(INTERRUPTION)
            await rec.until(
                lambda: any(
                    len(words(e["transcript"]) & expected) >= 3
                    for e in rec.raw("conversation.item.input_audio_transcription.completed")
                )
            )
            await rec.until(lambda: any(t.startswith("Echo: ") and "moment" in t.lower() for t in transcripts(rec)))

            assert rec.errors() == []
        finally:
            if mic is not None:
                await mic.close()
            await rec.close()
