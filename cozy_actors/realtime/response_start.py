"""Starting a Realtime response: `response.create`'s options, its context, in-band or out-of-band.

Why apart from the session: what a response sees (the conversation, or the `input` items it was
given), where its items go (the conversation, or nowhere for `conversation: "none"`) and how it
speaks are one decision made here; the session only holds the runs. An in-band response is the
session's single `response` (barge-in and `response.cancel` without an id reach it); out-of-band
ones run beside it, are never added to the conversation nor stored, and end on their own.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cozy_actors.context.voice import personalize
from cozy_actors.conversation.handle import TurnHandle
from cozy_actors.conversation.history import trim_past
from cozy_actors.conversation.primed import PrimedCall
from cozy_actors.conversation.turn import Turn, TurnSpec
from cozy_actors.engines.llm.base import LLMTextDelta
from cozy_actors.engines.tools.audit import ToolCaller
from cozy_core.errors import CozyError
from cozy_media.tts.synthesizer import SpeechSynthesizer

from .audio_out import SpeechOutput, output_rate
from .config import SessionConfig
from .items import Item, ItemError, RealtimeError, messages_of, validate_item
from .response import ResponseRun

if TYPE_CHECKING:
    from .session import RealtimeSession

_OVERRIDES = ("instructions", "output_modalities", "tools", "tool_choice", "max_output_tokens")


async def response_create(s: RealtimeSession, event: dict[str, Any]) -> None:
    opts = event.get("response") or {}  # its shape is checked by client_events.ResponseCreate
    in_band = opts.get("conversation") != "none"
    if in_band and s.response is not None:
        raise RealtimeError(
            "Conversation already has an active response in progress.",
            code="conversation_already_has_active_response",
        )
    update = {k: opts[k] for k in _OVERRIDES if opts.get(k) is not None}
    out = (opts.get("audio") or {}).get("output") or {}
    if any(v is not None for v in out.values()):
        update["audio"] = {"output": {k: v for k, v in out.items() if v is not None}}
    cfg = s.config.merged(update, "response")  # checked now, so a bad value is answered even when deferred
    context = input_context(s, opts["input"]) if opts.get("input") is not None else None
    metadata = opts.get("metadata")
    if not in_band:
        start_response(s, cfg, in_band=False, metadata=metadata, context=context)
        return

    def start() -> None:
        start_response(s, cfg, metadata=metadata, context=context)

    if s.voice is not None and s.voice.awaiting_transcript:
        # The user's words are still being transcribed: answer as soon as they are known.
        s.voice.defer(start)
        return
    start()


def input_context(s: RealtimeSession, raw: list[dict[str, Any]]) -> list[Item]:
    """`response.input`: new items, or references to items of the conversation, as the context."""
    out: list[Item] = []
    for i, entry in enumerate(raw):
        if entry.get("type") == "item_reference":
            ref = entry.get("id")
            item = s.items.get(ref) if isinstance(ref, str) else None
            if item is None:
                raise ItemError(f"item {ref!r} not found", f"response.input[{i}].id", code="item_not_found")
            out.append(item)
            continue
        try:
            out.append(validate_item(entry))
        except CozyError as exc:
            param = (exc.param or "item").replace("item", f"response.input[{i}]", 1)
            raise ItemError(exc.message, param, code=exc.code) from None
    return out


def start_response(
    s: RealtimeSession,
    cfg: SessionConfig,
    *,
    in_band: bool = True,
    metadata: dict[str, Any] | None = None,
    context: list[Item] | None = None,
) -> ResponseRun:
    r = s.resolved
    spec, learn = _turn_spec(s, cfg, in_band=in_band, context=context)
    if in_band:
        spec.primed, s.preemption.call = s.preemption.call, None  # started at the pause: if this turn's
    handle = TurnHandle(
        uuid.uuid4().hex,
        s.persist_id,
        r.personality.id,
        r.model,
        s.actor,
        Turn(spec, s.deps.catalog),
        "voice",
    )
    run = ResponseRun(
        handle,
        s.emit,
        speech=_speech_factory(s, cfg),
        modalities=list(cfg.output_modalities),
        conversation_id=s.conversation_id if in_band else None,
        metadata=metadata,
        on_item=s.items.add if in_band else None,
    )
    run.learn = learn
    run.trace = cfg.tracing
    if in_band:
        s.response = run
        if s.persist_id is not None and s.deps.checkpoints is not None:
            s.deps.checkpoints.open(run.state.id, s.persist_id, r.model, run.heard_text_now)
    task = asyncio.create_task(s.run_response(run), name=f"realtime-response:{s.id}")
    if in_band:
        s._task = task
    else:
        s.out_of_band[run.state.id] = (run, task)
    return run


class Preemption:
    """The reply prepared at the speaker's last pause: its model call, and the audio of its first
    sentence once that is known ((synthesizer key, text, synthesis task))."""

    def __init__(self) -> None:
        self.call: PrimedCall | None = None
        self.speech: tuple[Any, str, asyncio.Task[Any]] | None = None

    def drop(self) -> None:
        """The user went on talking (or the session ends): none of it is this turn's."""
        call, speech, self.call, self.speech = self.call, self.speech, None, None
        if call is not None:
            call.cancel()
        if speech is not None:
            speech[2].cancel()


def preempt(s: RealtimeSession, text: str) -> None:
    """The speaker paused after `text`: start the model call that the end of speech would make
    (conversation/primed.py), for the response to adopt; nothing where no response would follow."""
    td = s.config.audio.input.turn_detection
    if td is None or not td.create_response or s.response is not None or not text:
        return
    spec, _ = _turn_spec(s, s.config, in_band=True, context=None, user_text=text)
    first_request = Turn(spec, s.deps.catalog).first_request
    s.preemption.call = PrimedCall(spec.engine, first_request, on_event=_first_sentence_speaker(s)).start()


def _turn_spec(
    s: RealtimeSession,
    cfg: SessionConfig,
    *,
    in_band: bool,
    context: list[Item] | None,
    user_text: str | None = None,
) -> tuple[TurnSpec, Any]:
    """What a response's turn is: its prompt (the conversation, or the response's own input; with
    `user_text`, the words a pause suggests the user's turn will end with) and its settings."""
    r = s.resolved
    system = r.personality.system_prompt + (f"\n\n{cfg.instructions}" if cfg.instructions else "")
    # The model sees the personality's recent history (as in text chat), or the response's own input.
    messages = messages_of(context) if context is not None else s.items.messages()
    if user_text is not None:
        messages = [*messages, {"role": "user", "content": user_text}]
    keep = r.personality.memory.max_history_messages
    history = messages if cfg.truncation == "disabled" else trim_past(messages, keep)
    spec = TurnSpec(
        engine=r.engine,
        model=r.model,
        messages=[{"role": "system", "content": system}, *history],
        server_tools=r.server_tools,
        client_tools=cfg.client_tools(),
        tool_choice=cfg.chat_tool_choice(),
        temperature=r.personality.llm.temperature,
        max_tokens=cfg.max_output_tokens if isinstance(cfg.max_output_tokens, int) else r.personality.llm.max_tokens,
        max_tool_iterations=s.deps.max_tool_iterations,
        tool_timeout_s=s.deps.tool_timeout_s,
        llm_timeout_s=s.deps.llm_timeout_s,
        caller=ToolCaller(s.memo.get("user_id"), session_id=s.persist_id or s.id, channel="realtime"),
    )
    learn = (
        personalize(spec, s.deps.context, r.personality, s.memo.get("user_id"), system, history, s.persist_id)
        if in_band
        else None
    )
    return spec, learn


def _synthesizer(s: RealtimeSession, cfg: SessionConfig) -> SpeechSynthesizer | None:
    """The reply's speech synthesizer (None: no audio): its voice, speed and rate per the session."""
    speech = s.deps.speech
    if speech is None or speech.tts is None or "audio" not in cfg.output_modalities:
        return None
    speech = speech.for_language(s.resolved.personality.voice.language)  # zh: its own TTS (espeak-ng cmn)
    out = cfg.audio.output
    wanted = out.voice if isinstance(out.voice, str) else str(out.voice.get("id", ""))
    try:
        voice = speech.resolve_voice(wanted)
    except CozyError:
        voice = speech.resolve_voice(s.resolved.personality.voice.voice)
    speed = out.speed * s.resolved.personality.voice.speed
    return speech.synthesizer(voice, min(4.0, max(0.25, speed)), sample_rate=output_rate(out.format.type))  # type: ignore[no-any-return]


def _speech_factory(s: RealtimeSession, cfg: SessionConfig) -> Callable[[Callable[[str], None]], SpeechOutput] | None:
    synth = _synthesizer(s, cfg)
    if synth is None:
        return None
    primed, s.preemption.speech = s.preemption.speech, None
    if primed is not None and primed[0] == (synth.engine, synth.voice, synth.speed, synth.sample_rate):
        synth.primed[primed[1]] = primed[2]  # the first sentence, synthesized during the pause
    elif primed is not None:
        primed[2].cancel()
    lead = s.deps.speech_lead_ms
    echo = s.voice.input.echo if s.voice is not None else None
    fmt = cfg.audio.output.format.type
    return lambda send: SpeechOutput(synth, fmt, send, lead_ms=lead, echo=echo)


def _first_sentence_speaker(s: RealtimeSession) -> Callable[[Any], None] | None:
    """For a primed model call: once its text makes the reply's first chunk, synthesize it now
    (the reply, if it says exactly that, speaks it without waiting for the TTS)."""
    synth = _synthesizer(s, s.config)
    if synth is None:
        return None
    chunker = synth.chunker
    chunker.reset()

    def on_event(ev: Any) -> None:
        if not isinstance(ev, LLMTextDelta) or s.preemption.speech is not None:
            return
        chunks = chunker.push(ev.text)
        if chunks:
            task = asyncio.get_running_loop().create_task(
                synth.engine.synthesize(chunks[0], voice=synth.voice, speed=synth.speed)
            )
            s.preemption.speech = ((synth.engine, synth.voice, synth.speed, synth.sample_rate), chunks[0], task)

    return on_event
