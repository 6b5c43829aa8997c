"""What of OpenAI's GA Realtime protocol this server speaks: one entry per client event, server
event, session field and `response.create` field, each supported or refused, with why.

Why a registry: the README's conformance table is rendered from it (scripts/conformance.py), and
tests hold it to the code and to the openai SDK's own types (tests/unit/test_realtime_conformance.py):
the supported client events are exactly session.HANDLERS, the supported server events exactly the
ones the realtime sources name, every field path exists in SessionConfig / ResponseParams, and a
GA event or field the SDK gains without an entry here fails the test. So the table cannot drift.
"""

from __future__ import annotations

YES, NO = "supported", "refused"
NOT_SENT = "not sent"

CLIENT_EVENTS: dict[str, str] = {
    "session.update": "only present fields change; a bad or refused value is an `error` naming `param`, "
    "and the session keeps its previous configuration",
    "input_audio_buffer.append": "PCM16 24 kHz or G.711 8 kHz; bounded to the newest 60 s",
    "input_audio_buffer.commit": "error `input_audio_buffer_commit_empty` under 100 ms",
    "input_audio_buffer.clear": "also restarts the STT stream: cleared audio is never transcribed",
    "output_audio_buffer.clear": "answered with `output_audio_buffer.cleared`; over WebRTC unplayed reply "
    "audio is dropped",
    "conversation.item.create": "`previous_item_id` (`root` = first); message, function_call, function_call_output",
    "conversation.item.delete": "any item, also one of a response in progress",
    "conversation.item.retrieve": "the full item, with the input audio of the newest 4 audio items",
    "conversation.item.truncate": "cuts the reply's words by its own audio timeline (exact after a barge-in); "
    "an item still being spoken keeps the truncated words when it is done",
    "response.create": 'see the response fields below; `conversation: "none"` runs out-of-band beside the '
    "in-band response",
    "response.cancel": "without `response_id`: the in-band response; with it: that one (also out-of-band)",
}
"""Every GA client event; an event missing from session.HANDLERS is answered `invalid_event`."""

SERVER_EVENTS: dict[str, tuple[str, str]] = {
    "error": (YES, "`param` names the field; `event_id` echoes the client's"),
    "session.created": (YES, "the full effective configuration"),
    "session.updated": (YES, "the full effective configuration"),
    "conversation.item.added": (YES, "with `previous_item_id`; user audio is never echoed"),
    "conversation.item.done": (YES, "with `previous_item_id`, after the item's last delta"),
    "conversation.item.deleted": (YES, ""),
    "conversation.item.retrieved": (YES, ""),
    "conversation.item.truncated": (YES, ""),
    "conversation.item.input_audio_transcription.delta": (YES, "stable words while the user speaks"),
    "conversation.item.input_audio_transcription.completed": (YES, "not sent with `transcription: null`"),
    "conversation.item.input_audio_transcription.failed": (YES, "also when a pipeline rebuild drops a commit"),
    "input_audio_buffer.committed": (YES, ""),
    "input_audio_buffer.cleared": (YES, ""),
    "input_audio_buffer.speech_started": (YES, "server VAD (Silero)"),
    "input_audio_buffer.speech_stopped": (YES, "server VAD (Silero), or Smart Turn's end of turn"),
    "output_audio_buffer.cleared": (YES, "over WebRTC also on barge-in and on a cancelled reply"),
    "response.created": (YES, ""),
    "response.done": (YES, "`usage` always present, token details zeroed where not counted"),
    "response.output_item.added": (YES, "the item joins the conversation now (in-band)"),
    "response.output_item.done": (YES, "after that item's last delta; several calls each done in order"),
    "response.content_part.added": (YES, ""),
    "response.content_part.done": (YES, ""),
    "response.output_text.delta": (YES, ""),
    "response.output_text.done": (YES, ""),
    "response.output_audio.delta": (YES, "paced at real time plus a 200 ms lead"),
    "response.output_audio.done": (YES, ""),
    "response.output_audio_transcript.delta": (YES, ""),
    "response.output_audio_transcript.done": (YES, ""),
    "response.function_call_arguments.delta": (YES, ""),
    "response.function_call_arguments.done": (YES, ""),
    "conversation.item.created": (YES, "beta dialect only (the GA name is `conversation.item.added`)"),
    "conversation.created": (NOT_SENT, "GA servers announce no conversation object"),
    "rate_limits.updated": (NOT_SENT, "no per-token rate limits; quotas answer on the HTTP edge"),
    "input_audio_buffer.timeout_triggered": (
        YES,
        "`server_vad.idle_timeout_ms`: then the silent segment is committed and a response created",
    ),
    "input_audio_buffer.dtmf_event_received": (NOT_SENT, "SIP only; no SIP here"),
    "output_audio_buffer.started": (YES, "WebRTC calls only (`oai-events`): the reply's first frame left"),
    "output_audio_buffer.stopped": (YES, "WebRTC calls only (`oai-events`): the reply's last frame left"),
    "conversation.item.input_audio_transcription.segment": (NOT_SENT, "diarization models only"),
    "mcp_list_tools.in_progress": (NOT_SENT, "MCP tools in `tools` are refused"),
    "mcp_list_tools.completed": (NOT_SENT, "MCP tools in `tools` are refused"),
    "mcp_list_tools.failed": (NOT_SENT, "MCP tools in `tools` are refused"),
    "response.mcp_call_arguments.delta": (NOT_SENT, "MCP tools in `tools` are refused"),
    "response.mcp_call_arguments.done": (NOT_SENT, "MCP tools in `tools` are refused"),
    "response.mcp_call.in_progress": (NOT_SENT, "MCP tools in `tools` are refused"),
    "response.mcp_call.completed": (NOT_SENT, "MCP tools in `tools` are refused"),
    "response.mcp_call.failed": (NOT_SENT, "MCP tools in `tools` are refused"),
}

SESSION_FIELDS: dict[str, tuple[str, str]] = {
    "type": (YES, "`realtime`; `transcription` sessions are refused"),
    "model": (
        YES,
        "a configured model switches the session's LLM; another name keeps the current one "
        "(as chat does); the echo names the model that answers",
    ),
    "instructions": (YES, "appended to the personality's system prompt"),
    "output_modalities": (YES, "`audio` (with transcript) or `text`"),
    "max_output_tokens": (YES, "int or `inf` (the personality's limit)"),
    "tools": (YES, "function tools; MCP tools refused"),
    "tool_choice": (
        YES,
        "`auto`/`none`/`required`, or a forced function (sent in chat-completions shape); MCP refused",
    ),
    "include": (NO, "only `[]`/null: no transcription logprobs"),
    "parallel_tool_calls": (NO, "only `true`/null: the model may always call several tools"),
    "prompt": (NO, "only null: no stored prompt templates"),
    "reasoning": (NO, "only null"),
    "tracing": (YES, "`auto` or a config: one `realtime.trace` log record per response; fixed once set"),
    "truncation": (
        YES,
        "`auto` (the personality's history window) or `disabled` (all of it); `retention_ratio` refused",
    ),
    "audio.input.format": (YES, "`audio/pcm` at 24000 only, `audio/pcmu`/`audio/pcma` at 8000 only"),
    "audio.input.transcription": (YES, "null: no transcription events (the words still reach the model)"),
    "audio.input.transcription.model": (
        YES,
        "OpenAI's transcription model names (also Pipecat's `gpt-realtime-whisper`), each the bundled STT; "
        "others refused",
    ),
    "audio.input.transcription.language": (YES, ""),
    "audio.input.transcription.prompt": (YES, "Whisper's initial prompt"),
    "audio.input.transcription.delay": (NO, "only null; not echoed"),
    "audio.input.transcription.keywords": (NO, "only null; not echoed"),
    "audio.input.transcription.languages": (NO, "only null; not echoed"),
    "audio.input.noise_reduction": (
        YES,
        "RNNoise (pyrnnoise's librnnoise, in the worker pool) for both "
        "`near_field` and `far_field`; refused when the wheel is missing",
    ),
    "audio.input.turn_detection": (
        YES,
        "`server_vad` (Silero; `idle_timeout_ms` supported), `semantic_vad` (Silero pauses + Smart Turn v3.2, "
        "`eagerness` caps the wait at 8/4/2 s), or null (manual commit)",
    ),
    "audio.output.format": (YES, "as the input format"),
    "audio.output.voice": (YES, "a bundled voice or an OpenAI voice name mapped to one"),
    "audio.output.speed": (YES, "0.25 to 4"),
}
"""GA session fields by path; `audio.*` containers are listed through their fields."""

RESPONSE_FIELDS: dict[str, tuple[str, str]] = {
    "instructions": (YES, ""),
    "output_modalities": (YES, ""),
    "tools": (YES, "as the session's"),
    "tool_choice": (YES, "as the session's"),
    "max_output_tokens": (YES, ""),
    "audio": (YES, "`output.format`, `output.voice` for this response"),
    "conversation": (
        YES,
        "`auto`, or `none`: out-of-band (not added, not stored, not cancelled by barge-in); conversation ids refused",
    ),
    "input": (YES, "items or `item_reference`s: the response's whole context"),
    "metadata": (YES, "echoed in response.created/done"),
    "parallel_tool_calls": (NO, "only `true`/null"),
    "prompt": (NO, "only null"),
    "reasoning": (NO, "only null"),
}

CONTAINERS = frozenset({"audio", "audio.input", "audio.output", "audio.input.transcription"})
"""Session paths listed through their fields rather than as one row."""


def table() -> str:
    """The README's conformance section (markdown), rendered from the registry above."""
    lines = ["#### Client events", "", "| event | | notes |", "| --- | --- | --- |"]
    from .session import HANDLERS  # here: the registry module itself stays import-light

    for name in sorted(CLIENT_EVENTS):
        lines.append(f"| `{name}` | {YES if name in HANDLERS else NO} | {CLIENT_EVENTS[name]} |")
    for title, rows in (
        ("Server events", SERVER_EVENTS),
        ("Session fields", SESSION_FIELDS),
        ("`response.create` fields", RESPONSE_FIELDS),
    ):
        lines += ["", f"#### {title}", "", "| name | | notes |", "| --- | --- | --- |"]
        lines += [f"| `{name}` | {status} | {note} |" for name, (status, note) in sorted(rows.items())]
    return "\n".join(lines) + "\n"
