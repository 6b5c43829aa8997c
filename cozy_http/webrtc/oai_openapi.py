"""OpenAPI entries of OpenAI's WebRTC flow: calls, hang-up and client secrets (oai_calls.py)."""

from __future__ import annotations

from typing import Any

_ERROR = {"description": "Error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_SESSION = {
    "type": "object",
    "description": "A GA Realtime session config (as in session.update); validated, a bad field is a 400 naming it. "
    "Audio formats other than audio/pcm 24 kHz are refused (the wire is Opus).",
}
_SDP_ANSWER = {
    "description": "The SDP answer; `Location: /v1/realtime/calls/{call_id}` names the call",
    "headers": {"Location": {"schema": {"type": "string"}}},
    "content": {"application/sdp": {"schema": {"type": "string"}}},
}
_CALL_ID = {"name": "call_id", "in": "path", "required": True, "schema": {"type": "string"}}


def openai_paths() -> dict[str, Any]:
    offer = {
        "type": "object",
        "required": ["sdp"],
        "properties": {"sdp": {"type": "string", "description": "The SDP offer"}, "session": _SESSION},
    }
    form = {
        "type": "object",
        "required": ["sdp"],
        "properties": {"sdp": {"type": "string"}, "session": {"type": "string", "description": "JSON session"}},
    }
    secret_body = {
        "type": "object",
        "properties": {
            "expires_after": {
                "type": "object",
                "properties": {
                    "anchor": {"type": "string", "enum": ["created_at"]},
                    "seconds": {"type": "integer", "minimum": 10, "maximum": 7200, "default": 600},
                },
            },
            "session": _SESSION,
        },
    }
    secret = {
        "type": "object",
        "required": ["value", "expires_at", "session"],
        "properties": {
            "value": {"type": "string", "description": "`ek_...`: starts ONE session until it expires"},
            "expires_at": {"type": "integer", "description": "Unix seconds"},
            "session": {"type": "object"},
        },
    }
    return {
        "/v1/realtime/calls": {
            "post": {
                "summary": "Start an OpenAI Realtime WebRTC call: SDP offer in, SDP answer out",
                "description": "Authenticate with an ephemeral key (`ek_...`, its session applies) or an API key. "
                "Events travel on the data channel `oai-events`; audio is the Opus track both ways. Query: "
                "`model`, `cozy_personality_id`, `cozy_session_id`, `cozy_interruption` (default `pause`), "
                "`cozy_echo_cancellation` as on WS /v1/realtime.",
                "tags": ["realtime"],
                "parameters": [
                    {"name": n, "in": "query", "schema": {"type": "string"}}
                    for n in (
                        "model",
                        "cozy_personality_id",
                        "cozy_session_id",
                        "cozy_interruption",
                        "cozy_echo_cancellation",
                    )
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/sdp": {"schema": {"type": "string"}},
                        "multipart/form-data": {"schema": form},
                        "application/json": {"schema": offer},
                    },
                },
                "responses": {"201": _SDP_ANSWER, "default": _ERROR},
            }
        },
        "/v1/realtime/calls/{call_id}/hangup": {
            "post": {
                "summary": "End a WebRTC call (its owner or an admin)",
                "tags": ["realtime"],
                "parameters": [_CALL_ID],
                "responses": {"200": {"description": "The call ended"}, "default": _ERROR},
            }
        },
        "/v1/realtime/client_secrets": {
            "post": {
                "summary": "Make an ephemeral key for a browser: one session as you, with this config",
                "tags": ["realtime"],
                "requestBody": {"content": {"application/json": {"schema": secret_body}}},
                "responses": {
                    "200": {"description": "The key", "content": {"application/json": {"schema": secret}}},
                    "default": _ERROR,
                },
            }
        },
    }
