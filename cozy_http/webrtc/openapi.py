"""OpenAPI entry of the WebRTC offer endpoint (its path comes from `api.webrtc.path`)."""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/schemas/Error"}
_QUERY = [
    {"name": "cozy_personality_id", "in": "query", "schema": {"type": "string"}, "description": "Who answers."},
    {"name": "model", "in": "query", "schema": {"type": "string"}, "description": "A configured model."},
    {
        "name": "cozy_session_id",
        "in": "query",
        "schema": {"type": "string"},
        "description": "Store the call's turns under this session and resume its history (yours only).",
    },
    {
        "name": "cozy_interruption",
        "in": "query",
        "schema": {"type": "string", "enum": ["pause", "cancel"]},
        "description": "Speech over a reply: pause, then decide (default here) or cancel at once. Also "
        "cozy_interruption_min_words, _min_speech_ms, _resume_after_ms, _backchannels (see README).",
    },
    {
        "name": "cozy_echo_cancellation",
        "in": "query",
        "schema": {"type": "string", "enum": ["on", "off", "auto"]},
        "description": "Cancel the reply's echo in the caller's input (default: the personality's; auto = on).",
    },
]


def openapi_paths(path: str) -> dict[str, Any]:
    """`POST {path}/webrtc/offer`: FastRTC's signalling body and answers."""
    body = {
        "type": "object",
        "required": ["type", "webrtc_id"],
        "properties": {
            "type": {"type": "string", "enum": ["offer", "ice-candidate"]},
            "webrtc_id": {
                "type": "string",
                "minLength": 1,
                "maxLength": 128,
                "description": "Chosen by the client; keys the call.",
            },
            "sdp": {"type": "string", "description": "The SDP offer: an audio track and a data channel 'text'."},
            "candidate": {"type": "object", "description": "A trickled ICE candidate (type ice-candidate)."},
        },
    }
    answer = {
        "oneOf": [
            {
                "type": "object",
                "properties": {"sdp": {"type": "string"}, "type": {"type": "string", "enum": ["answer"]}},
            },
            {
                "type": "object",
                "description": "FastRTC's refusals (also for a candidate: status success|failed)",
                "properties": {"status": {"type": "string"}, "meta": {"type": "object"}},
            },
        ]
    }
    return {
        f"{path}/webrtc/offer": {
            "post": {
                "summary": "Start a WebRTC voice call (FastRTC signalling) with a personality",
                "tags": ["webrtc"],
                "parameters": _QUERY,
                "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
                "responses": {
                    "200": {"description": "SDP answer", "content": {"application/json": {"schema": answer}}},
                    "default": {"description": "Error", "content": {"application/json": {"schema": _ERROR}}},
                },
            }
        }
    }
