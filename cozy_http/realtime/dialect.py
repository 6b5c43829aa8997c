"""GA ↔ beta Realtime wire names and session shapes (a wire concern: the actor speaks GA only).

A client that sends `OpenAI-Beta: realtime=v1` (or offers the `openai-beta.realtime-v1`
subprotocol) gets beta event names and the flat beta session object.
"""

from __future__ import annotations

from typing import Any

_GA_TO_BETA = {
    "response.output_audio.delta": "response.audio.delta",
    "response.output_audio.done": "response.audio.done",
    "response.output_audio_transcript.delta": "response.audio_transcript.delta",
    "response.output_audio_transcript.done": "response.audio_transcript.done",
    "response.output_text.delta": "response.text.delta",
    "response.output_text.done": "response.text.done",
    "conversation.item.added": "conversation.item.created",
}
_BETA_DROP = frozenset({"conversation.item.done"})
_FORMATS_BETA = {"audio/pcm": "pcm16", "audio/pcmu": "g711_ulaw", "audio/pcma": "g711_alaw"}
_FORMATS_GA = {v: k for k, v in _FORMATS_BETA.items()}
_PART_BETA = {"output_text": "text", "output_audio": "audio"}


def outgoing_beta(event: dict[str, Any]) -> dict[str, Any] | None:
    """A GA server event as a beta client expects it (None: not sent to beta clients)."""
    etype = event["type"]
    if etype in _BETA_DROP:
        return None
    event["type"] = _GA_TO_BETA.get(etype, etype)
    if "session" in event:
        event["session"] = session_to_beta(event["session"])
    if "item" in event:
        event["item"] = _item_to_beta(event["item"])
    if "response" in event:
        resp = dict(event["response"])
        resp["modalities"] = resp.pop("output_modalities", None)
        resp["output"] = [_item_to_beta(i) for i in resp.get("output") or ()]
        event["response"] = resp
    return event


def _item_to_beta(item: dict[str, Any]) -> dict[str, Any]:
    if item.get("type") != "message" or item.get("role") != "assistant":
        return item
    item = dict(item)
    item["content"] = [{**p, "type": _PART_BETA.get(p.get("type"), p.get("type"))} for p in item.get("content") or ()]
    return item


def session_to_beta(session: dict[str, Any]) -> dict[str, Any]:
    audio = session.get("audio") or {}
    inp, out = audio.get("input") or {}, audio.get("output") or {}
    return {
        "object": "realtime.session",
        "id": session.get("id"),
        "model": session.get("model"),
        "modalities": session.get("output_modalities"),
        "instructions": session.get("instructions"),
        "voice": out.get("voice"),
        "input_audio_format": _FORMATS_BETA.get((inp.get("format") or {}).get("type"), "pcm16"),
        "output_audio_format": _FORMATS_BETA.get((out.get("format") or {}).get("type"), "pcm16"),
        "input_audio_transcription": inp.get("transcription"),
        "turn_detection": inp.get("turn_detection"),
        "input_audio_noise_reduction": inp.get("noise_reduction"),
        "tools": session.get("tools"),
        "tool_choice": session.get("tool_choice"),
        "max_response_output_tokens": session.get("max_output_tokens"),
        "speed": out.get("speed"),
    }


def incoming_beta(event: dict[str, Any]) -> dict[str, Any]:
    """A beta client event in GA shape (only session.update and response.create differ)."""
    if event.get("type") == "session.update" and isinstance(event.get("session"), dict):
        event["session"] = session_from_beta(event["session"])
    elif event.get("type") == "response.create" and isinstance(event.get("response"), dict):
        resp = dict(event["response"])
        if "modalities" in resp:
            resp["output_modalities"] = _modalities(resp.pop("modalities"))
        if "max_response_output_tokens" in resp:
            resp["max_output_tokens"] = resp.pop("max_response_output_tokens")
        out = {}
        if "voice" in resp:
            out["voice"] = resp.pop("voice")
        if "output_audio_format" in resp:
            out["format"] = {"type": _format_ga(resp.pop("output_audio_format"))}
        if out:
            resp["audio"] = {"output": out}
        event["response"] = resp
    return event


def _modalities(value: Any) -> Any:
    # Beta allowed ["text", "audio"]; GA takes one: audio (with its transcript) covers both.
    if isinstance(value, list) and "audio" in value:
        return ["audio"]
    return value


_BETA_SESSION_KEYS = frozenset(
    {
        "object",
        "id",
        "type",
        "model",
        "instructions",
        "tools",
        "tool_choice",
        "modalities",
        "max_response_output_tokens",
        "input_audio_format",
        "input_audio_transcription",
        "turn_detection",
        "input_audio_noise_reduction",
        "output_audio_format",
        "voice",
        "speed",
    }
)


def _format_ga(value: Any) -> Any:
    """A beta format name in GA; anything else passes through for the session to refuse."""
    return _FORMATS_GA.get(value, value) if isinstance(value, str) else value


def session_from_beta(s: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "realtime"}
    audio: dict[str, Any] = {}
    inp: dict[str, Any] = {}
    outp: dict[str, Any] = {}
    for key in ("model", "instructions", "tools", "tool_choice"):
        if key in s:
            out[key] = s[key]
    if "modalities" in s:
        out["output_modalities"] = _modalities(s["modalities"])
    if "max_response_output_tokens" in s:
        out["max_output_tokens"] = s["max_response_output_tokens"]
    if "input_audio_format" in s:
        inp["format"] = {"type": _format_ga(s["input_audio_format"])}
    if "input_audio_transcription" in s:
        inp["transcription"] = s["input_audio_transcription"]
    if "turn_detection" in s:
        inp["turn_detection"] = s["turn_detection"]
    if "input_audio_noise_reduction" in s:
        inp["noise_reduction"] = s["input_audio_noise_reduction"]
    if "output_audio_format" in s:
        outp["format"] = {"type": _format_ga(s["output_audio_format"])}
    if "voice" in s:
        outp["voice"] = s["voice"]
    if "speed" in s:
        outp["speed"] = s["speed"]
    if inp:
        audio["input"] = inp
    if outp:
        audio["output"] = outp
    if audio:
        out["audio"] = audio
    for key in s.keys() - _BETA_SESSION_KEYS:  # unknown keys go on, for the session to refuse by name
        out[key] = s[key]
    return out
