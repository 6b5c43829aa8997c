"""LiveKit Agents 1.8 (`livekit-plugins-openai`) against `cozy serve`, with no LiveKit server.

`openai.realtime.RealtimeModel(base_url=...)` opens `/v1/realtime` itself; its RealtimeSession is
driven directly, as AgentSession would: chat context and tools pushed with update_chat_ctx /
update_tools, replies asked for with generate_reply, the tool's output sent back as a
FunctionCallOutput. LiveKit mirrors the server's conversation in its own chat context, placing
items by `previous_item_id`, and matches replies to requests by `response.metadata`.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
from livekit.agents import llm
from livekit.agents.llm import function_tool
from livekit.plugins.openai import realtime

from .conftest import API_KEY, FrameworkServer

RATE = 24000


async def reply(session: realtime.RealtimeSession) -> tuple[str, int, list[llm.FunctionCall]]:
    """generate_reply and read it to the end: (text, audio samples, function calls)."""
    generation = await asyncio.wait_for(session.generate_reply(), 15)
    text, samples = "", 0
    async for message in generation.message_stream:
        text += "".join([t async for t in message.text_stream])
        async for frame in message.audio_stream:
            assert frame.sample_rate == RATE and frame.num_channels == 1
            samples += frame.samples_per_channel
    calls = [c async for c in generation.function_stream]
    return text, samples, calls


async def add_user_message(session: realtime.RealtimeSession, text: str) -> None:
    ctx = session.chat_ctx.copy()
    ctx.add_message(role="user", content=text)
    await session.update_chat_ctx(ctx)


async def test_realtime_model_generate_reply_and_tool(framework_server: FrameworkServer) -> None:
    cities: list[str] = []

    @function_tool
    async def get_weather(city: str) -> str:
        """The weather in a city."""
        cities.append(city)
        return f"sunny in {city}"

    async with aiohttp.ClientSession() as http:
        model = realtime.RealtimeModel(
            base_url=framework_server.http_base, api_key=API_KEY, model="stub-model", http_session=http
        )
        session = model.session()
        errors: list[Any] = []
        server_events: list[dict[str, Any]] = []
        session.on("error", errors.append)
        session.on("openai_server_event_received", server_events.append)
        try:
            await session.update_instructions("You are the LiveKit test agent.")
            await session.update_tools([get_weather])

            # generate_reply on a user message: the reply is text and 24 kHz audio.
            await add_user_message(session, "Hello from LiveKit.")
            text, samples, calls = await reply(session)
            assert text == "Echo: Hello from LiveKit." and calls == []
            assert samples > RATE // 2

            # A tool: the model calls it, LiveKit runs it and sends the output, the model answers.
            await add_user_message(session, 'CALL get_weather {"city": "Paris"}')
            _, _, calls = await reply(session)
            assert [(c.name, json.loads(c.arguments)) for c in calls] == [("get_weather", {"city": "Paris"})]
            ctx = session.chat_ctx.copy()
            for call in calls:
                output = await get_weather(**json.loads(call.arguments))
                ctx.items.append(
                    llm.FunctionCallOutput(call_id=call.call_id, name=call.name, output=output, is_error=False)
                )
            await session.update_chat_ctx(ctx)
            text, samples, calls = await reply(session)
            assert text == "Tool get_weather returned: sunny in Paris" and calls == [] and samples > 0
            assert cities == ["Paris"]

            # LiveKit's mirror of the conversation is in the server's order.
            kinds = [(i.type, getattr(i, "role", None)) for i in session.chat_ctx.items]
            assert kinds == [
                ("message", "user"),
                ("message", "assistant"),
                ("message", "user"),
                ("function_call", None),
                ("function_call_output", None),
                ("message", "assistant"),
            ], kinds
            assert errors == []
            assert [e for e in server_events if e["type"] == "error"] == []
            updated = [e["session"] for e in server_events if e["type"] == "session.updated"]
            assert "You are the LiveKit test agent." in updated[-1]["instructions"]
            assert [t["name"] for t in updated[-1]["tools"]] == ["get_weather"]
        finally:
            await session.aclose()
            await model.aclose()
