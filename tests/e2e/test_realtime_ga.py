"""GA Realtime conformance against a real `cozy serve` (issue 12, item 1), over a raw WebSocket so
the JSON itself is checked: every field works or is refused by name, no user audio echoed, items
in the conversation when announced, per-item done order, out-of-band responses, usage."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import websockets

from tests.e2e.conftest import ADMIN_KEY, CozyServer
from tests.support.events import Recorder

from .realtime_support import speech_clip  # noqa: F401

pytestmark = pytest.mark.timeout(90)

LONG = " ".join(["This is a long answer that keeps going for quite a while."] * 6)


def user_text(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


class Raw(Recorder[dict[str, Any]]):
    """A raw GA connection: every event kept as JSON (and its frame's size), waits by type."""

    def __init__(self, ws: Any) -> None:
        super().__init__()
        self.ws = ws
        self.sizes: list[int] = []
        self.follow(ws, self._decode)

    def _decode(self, frame: str | bytes) -> dict[str, Any]:
        self.sizes.append(len(frame))
        return json.loads(frame)

    async def send(self, event: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(event))

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]

    async def update(self, session: dict[str, Any]) -> dict[str, Any]:
        """session.update; returns the session.updated or the error that answered it."""
        n, errors = len(self.of("session.updated")), len(self.of("error"))
        await self.send({"type": "session.update", "session": {"type": "realtime", **session}})
        await self.until(lambda: len(self.of("session.updated")) != n or len(self.of("error")) != errors, 10)
        return self.of("error")[-1] if len(self.of("error")) > errors else self.of("session.updated")[-1]


def connect(server: CozyServer, beta: bool = False) -> Any:
    url = server.base_url.replace("http://", "ws://") + "/realtime?model=stub-model"
    headers = {"Authorization": f"Bearer {ADMIN_KEY}", **({"OpenAI-Beta": "realtime=v1"} if beta else {})}
    return websockets.connect(url, additional_headers=headers, max_size=None)


REFUSED = [
    ({"audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}}}, "session.audio.input.format"),
    ({"audio": {"output": {"format": {"type": "audio/pcmu", "rate": 24000}}}}, "session.audio.output.format"),
    ({"audio": {"input": {"noise_reduction": {"type": "loud"}}}}, "session.audio.input.noise_reduction.type"),
    ({"audio": {"input": {"transcription": {"model": "nova-3"}}}}, "session.audio.input.transcription"),
    ({"include": ["item.input_audio_transcription.logprobs"]}, "session.include"),
    ({"prompt": {"id": "pmpt_1"}}, "session.prompt"),
    ({"reasoning": {"effort": "low"}}, "session.reasoning"),
    ({"parallel_tool_calls": False}, "session.parallel_tool_calls"),
    ({"truncation": {"type": "retention_ratio", "retention_ratio": 0.5}}, "session.truncation"),
    ({"tool_choice": {"type": "function", "name": "not_a_tool"}}, "session.tool_choice"),
    ({"tool_choice": {"type": "mcp", "server_label": "x"}}, "session.tool_choice"),
    ({"misspelled": True}, "session.misspelled"),
]


async def test_unsupported_fields_are_refused_by_name_and_the_session_keeps_its_values(
    cozy_server: CozyServer,
) -> None:
    async with connect(cozy_server) as ws:
        rt = Raw(ws)
        await rt.wait("session.created")
        before = rt.of("session.created")[0]["session"]
        for update, param in REFUSED:
            answer = await rt.update(update)
            assert answer["type"] == "error" and answer["error"]["param"].startswith(param), (update, answer)
        accepted = {
            "tracing": "auto",
            "truncation": "disabled",
            "audio": {
                "input": {"transcription": {"model": "gpt-4o-mini-transcribe"}, "format": {"type": "audio/pcmu"}}
            },
        }
        after = (await rt.update(accepted))["session"]
        assert after["tracing"] == "auto" and after["truncation"] == "disabled"
        assert after["audio"]["input"]["format"] == {"type": "audio/pcmu", "rate": 8000}
        assert after["audio"]["input"]["noise_reduction"] is None and after["include"] is None
        assert {k: v for k, v in after.items() if k not in accepted} == {
            k: v for k, v in before.items() if k not in accepted
        }
        # Tracing, once on, cannot change (as OpenAI documents).
        answer = await rt.update({"tracing": {"workflow_name": "other"}})
        assert answer["type"] == "error" and answer["error"]["param"] == "session.tracing"
        # The beta dialect refuses the same field under its own name's GA path.
    async with connect(cozy_server, beta=True) as ws:
        rt = Raw(ws)
        await rt.wait("session.created")
        await rt.send({"type": "session.update", "session": {"input_audio_noise_reduction": {"kind": "far_field"}}})
        err = (await rt.wait("error"))[0]
        assert err["error"]["param"].startswith("session.audio.input.noise_reduction")
        oob = {"conversation": "none", "modalities": ["text"], "voice": "ash", "input": [user_text("beta side")]}
        await rt.send({"type": "response.create", "response": oob})
        done = (await rt.wait("response.done"))[0]["response"]
        assert done["modalities"] == ["text"] and done["output"][0]["content"][0]["text"] == "Echo: beta side"
        assert not rt.of("conversation.item.created")  # out-of-band in the beta dialect too


async def test_forced_function_tool_choice_reaches_chat_completions_in_its_shape(cozy_server: CozyServer) -> None:
    weather = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}
    async with connect(cozy_server) as ws:
        rt = Raw(ws)
        session = {"output_modalities": ["text"], "tools": [weather]}
        assert (await rt.update({**session, "tool_choice": {"type": "function", "name": "get_weather"}}))["session"][
            "tool_choice"
        ] == {"type": "function", "name": "get_weather"}
        await rt.send({"type": "conversation.item.create", "item": user_text('CALL get_weather {"city": "Oslo"}')})
        await rt.send({"type": "response.create"})
        done = (await rt.wait("response.done"))[0]
        assert done["response"]["output"][0]["name"] == "get_weather"
        assert cozy_server.upstream.requests()[-1]["tool_choice"] == {
            "type": "function",
            "function": {"name": "get_weather"},
        }


async def test_announced_assistant_item_is_in_the_conversation(cozy_server: CozyServer) -> None:
    """previous_item_id on every added/done; retrieve and truncate work while the reply is spoken;
    the item's done comes after its last audio delta; a truncate after a barge-in-like cut is exact."""
    async with connect(cozy_server) as ws:
        rt = Raw(ws)
        await rt.update({"audio": {"input": {"turn_detection": None}}})
        await rt.send({"type": "conversation.item.create", "item": user_text(LONG)})
        user_id = (await rt.wait("conversation.item.added"))[0]["item"]["id"]
        await rt.send({"type": "response.create"})
        await rt.wait("response.output_audio.delta", 3)
        added = rt.of("conversation.item.added")[1]
        assert added["previous_item_id"] == user_id and added["item"]["status"] == "in_progress"
        item_id = added["item"]["id"]
        await rt.send({"type": "conversation.item.retrieve", "item_id": item_id})
        retrieved = (await rt.wait("conversation.item.retrieved"))[0]
        assert retrieved["item"]["id"] == item_id
        await rt.send(
            {"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0, "audio_end_ms": 200}
        )
        assert (await rt.wait("conversation.item.truncated"))[0]["audio_end_ms"] == 200
        await rt.send({"type": "response.cancel"})
        done = (await rt.wait("response.done"))[0]
        assert done["response"]["status"] == "cancelled"
        usage = done["response"]["usage"]  # present, with zeroed details, on a cancelled response too
        assert usage["input_token_details"]["cached_tokens"] == 0 and "output_token_details" in usage
        types = rt.types()
        last_delta = max(i for i, t in enumerate(types) if t == "response.output_audio.delta")
        assert types.index("response.output_item.done") > last_delta
        item_done = rt.of("conversation.item.done")[-1]
        assert item_done["previous_item_id"] == user_id
        heard = item_done["item"]["content"][0]["transcript"]
        assert len(heard.split()) <= 4  # 200 ms of speech: the words of the truncate, not the whole reply
        # A second truncate cuts the original reply by time again, not the already-cut words.
        await rt.send(
            {"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0, "audio_end_ms": 100}
        )
        await rt.wait("conversation.item.truncated", 2)
        await rt.send({"type": "conversation.item.retrieve", "item_id": item_id})
        again = (await rt.wait("conversation.item.retrieved", 2))[1]["item"]["content"][0]["transcript"]
        assert heard.startswith(again)


async def test_several_function_calls_are_each_done_in_order(cozy_server: CozyServer) -> None:
    tools = [{"type": "function", "name": n, "parameters": {"type": "object"}} for n in ("one", "two")]
    async with connect(cozy_server) as ws:
        rt = Raw(ws)
        await rt.update({"output_modalities": ["text"], "tools": tools})
        await rt.send({"type": "conversation.item.create", "item": user_text('CALL one {"a": 1}\nCALL two {"b": 2}')})
        await rt.send({"type": "response.create"})
        await rt.wait("response.done")
        seq = [
            (e["type"], e.get("item_id") or e.get("item", {}).get("id"))
            for e in rt.events
            if e["type"].startswith("response.function_call") or e["type"].startswith("response.output_item")
        ]
        ids = [i for t, i in seq if t == "response.output_item.added"]
        assert len(ids) == 2
        first_done = seq.index(("response.output_item.done", ids[0]))
        assert first_done < seq.index(("response.output_item.added", ids[1]))
        assert all(i == ids[0] for _, i in seq[: first_done + 1])  # call one: added, deltas, done, then two


async def test_out_of_band_response_beside_the_in_band_one(cozy_server: CozyServer) -> None:
    async with connect(cozy_server) as ws:
        rt = Raw(ws)
        await rt.update({"audio": {"input": {"turn_detection": None}}})
        await rt.send({"type": "conversation.item.create", "item": user_text(LONG)})
        await rt.send({"type": "response.create"})
        await rt.wait("response.output_audio.delta", 2)
        in_band = rt.of("response.created")[0]["response"]["id"]
        items_before = len(rt.of("conversation.item.added"))
        await rt.send(
            {
                "type": "response.create",
                "response": {
                    "conversation": "none",
                    "output_modalities": ["text"],
                    "metadata": {"purpose": "classify"},
                    "input": [user_text("is this spam?")],
                },
            }
        )
        await rt.wait("response.created", 2)
        oob = rt.of("response.created")[1]["response"]
        assert oob["conversation_id"] is None and oob["metadata"] == {"purpose": "classify"}
        done = next(d for d in await rt.wait("response.done") if d["response"]["id"] == oob["id"])
        assert done["response"]["output"][0]["content"][0]["text"] == "Echo: is this spam?"
        prompt = cozy_server.upstream.requests()[-1]["messages"]
        assert [m["role"] for m in prompt] == ["system", "user"]  # its input was its whole context
        assert len(rt.of("conversation.item.added")) == items_before  # nothing joined the conversation
        await rt.send({"type": "conversation.item.retrieve", "item_id": done["response"]["output"][0]["id"]})
        assert (await rt.wait("error"))[0]["error"]["code"] == "item_not_found"
        # The in-band response went on meanwhile and is the one response.cancel reaches.
        await rt.send({"type": "response.cancel"})
        final = (await rt.wait("response.done", 2))[1]["response"]
        assert final["id"] == in_band and final["status"] == "cancelled"


async def test_committed_utterance_is_not_echoed_and_null_transcription_sends_no_events(
    cozy_server: CozyServer,
    speech_clip: bytes,  # noqa: F811
) -> None:
    async with connect(cozy_server) as ws:
        rt = Raw(ws)
        await rt.update(
            {"output_modalities": ["text"], "audio": {"input": {"turn_detection": None, "transcription": None}}}
        )
        for at in range(0, len(speech_clip), 4800):
            await rt.send(
                {"type": "input_audio_buffer.append", "audio": base64.b64encode(speech_clip[at : at + 4800]).decode()}
            )
        await rt.send({"type": "input_audio_buffer.commit"})
        await rt.send({"type": "response.create"})
        done = (await rt.wait("response.done", timeout=40))[0]
        text = done["response"]["output"][0]["content"][0]["text"].lower()
        assert "time is it" in text  # the words reached the model
        assert not [t for t in rt.types() if "input_audio_transcription" in t]
        for etype in ("conversation.item.added", "conversation.item.done"):
            user = next(e for e in rt.of(etype) if e["item"]["role"] == "user")
            assert all("audio" not in part for part in user["item"]["content"]), user
        assert max(rt.sizes) < 20_000  # the 2-second utterance (190 KB of base64) is never sent back


async def test_clear_and_rebuild_reset_the_stt_stream(cozy_server: CozyServer, speech_clip: bytes) -> None:  # noqa: F811
    async with connect(cozy_server) as ws:
        rt = Raw(ws)
        await rt.update({"output_modalities": ["text"], "audio": {"input": {"turn_detection": None}}})
        chunks = [base64.b64encode(speech_clip[at : at + 4800]).decode() for at in range(0, len(speech_clip), 4800)]
        for chunk in chunks:
            await rt.send({"type": "input_audio_buffer.append", "audio": chunk})
        await rt.send({"type": "input_audio_buffer.clear"})
        await rt.wait("input_audio_buffer.cleared")
        silence = base64.b64encode(b"\0\0" * 24 * 500).decode()
        await rt.send({"type": "input_audio_buffer.append", "audio": silence})
        await rt.send({"type": "input_audio_buffer.commit"})
        done = (await rt.wait("conversation.item.input_audio_transcription.completed", timeout=40))[0]
        assert "time" not in done["transcript"].lower()  # the cleared words were never transcribed
        # A session.update that rebuilds the pipeline while a commit awaits its transcript: the
        # deferred response.create starts anyway, instead of waiting forever.
        for chunk in chunks:
            await rt.send({"type": "input_audio_buffer.append", "audio": chunk})
        await rt.send({"type": "input_audio_buffer.commit"})
        await rt.send({"type": "response.create"})
        await rt.send(
            {
                "type": "session.update",
                "session": {
                    "type": "realtime",
                    "audio": {"input": {"transcription": {"model": "whisper-1", "language": "en"}}},
                },
            }
        )
        assert (await rt.wait("response.done", timeout=30))[0]["response"]["status"] == "completed"
        failed = (await rt.wait("conversation.item.input_audio_transcription.failed"))[0]
        assert failed["error"]["code"] == "transcription_cancelled"


async def test_noise_reduction_keeps_the_words_in_noise(cozy_server: CozyServer, speech_clip: bytes) -> None:  # noqa: F811
    """RNNoise on the input: the question is still heard through white noise at about 6 dB SNR."""
    import numpy as np

    clean = np.frombuffer(speech_clip, dtype="<i2").astype(np.float64)
    noise = np.random.default_rng(7).standard_normal(len(clean)) * np.sqrt((clean**2).mean()) / 2
    noisy = np.clip(clean + noise, -32768, 32767).astype("<i2").tobytes()
    async with connect(cozy_server) as ws:
        rt = Raw(ws)
        answer = await rt.update(
            {
                "output_modalities": ["text"],
                "audio": {"input": {"turn_detection": None, "noise_reduction": {"type": "near_field"}}},
            }
        )
        assert answer["session"]["audio"]["input"]["noise_reduction"] == {"type": "near_field"}
        for at in range(0, len(noisy), 4800):
            await rt.send(
                {"type": "input_audio_buffer.append", "audio": base64.b64encode(noisy[at : at + 4800]).decode()}
            )
        await rt.send({"type": "input_audio_buffer.commit"})
        done = (await rt.wait("conversation.item.input_audio_transcription.completed", timeout=40))[0]
        # Most of the question's words come through the noise (tiny.en has heard "time" as "kind"
        # there once in a CI run: the denoiser keeps the speech, the model is the limit).
        heard = set(done["transcript"].lower().replace("?", "").split())
        assert len(heard & set("what time is it in paris right now".split())) >= 6, done["transcript"]


async def test_session_model_switches_to_a_configured_model_and_the_echo_names_the_one_that_answers(
    cozy_server: CozyServer,
) -> None:
    """`session.model`: a configured model takes over the next responses; an unknown name (the
    Agents SDK sends `gpt-realtime-2.1`) keeps the current one, and the echo never claims a model
    that does not answer."""
    from tests.e2e.conftest import LOCAL_MODEL

    async with connect(cozy_server) as ws:
        rt = Raw(ws)
        assert (await rt.wait("session.created"))[0]["session"]["model"] == "stub-model"
        assert (await rt.update({"model": "gpt-realtime-2.1"}))["session"]["model"] == "stub-model"
        await rt.update({"output_modalities": ["text"]})
        await rt.send({"type": "conversation.item.create", "item": user_text("first")})
        await rt.send({"type": "response.create"})
        first = (await rt.wait("response.done"))[0]["response"]
        assert first["output"][0]["content"][0]["text"] == "Echo: first"
        assert (await rt.update({"model": LOCAL_MODEL}))["session"]["model"] == LOCAL_MODEL
        cozy_server.upstream.clear()
        await rt.send({"type": "conversation.item.create", "item": user_text("second")})
        await rt.send({"type": "response.create"})
        second = (await rt.wait("response.done", count=2, timeout=60))[1]["response"]
        assert second["status"] == "completed", second
        # The local model answered (the tiny model may well copy the pattern "Echo: ..." of the
        # history, so its words prove nothing; the stub seeing no request does).
        assert not cozy_server.upstream.requests()
        assert second["output"][0]["content"][0]["text"]
