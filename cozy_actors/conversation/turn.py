"""One assistant turn: LLM stream plus the tool loop, independent of the transport.

Text chat turns the events into SSE; voice will feed the same TextDeltas to the sentence chunker
and TTS. Server-owned tool calls are executed and fed back (up to `max_tool_iterations` rounds);
calls to client-declared tools are streamed out as they arrive and end the turn with
`finish_reason="tool_calls"`, exactly as OpenAI does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from cozy_actors.engines.llm.base import (
    LLMEngine,
    LLMFinish,
    LLMRequest,
    LLMTextDelta,
    LLMToolCallDelta,
    LLMUsage,
)
from cozy_actors.engines.tools.audit import ToolCaller
from cozy_actors.engines.tools.base import Tool, ToolCatalog
from cozy_actors.observability.metrics import TURN_STAGE, labelled
from cozy_core.engines import EngineError, EngineTimeout

from .events import ServerToolCall, TextDelta, ToolCallDelta, TurnDone, TurnEvent, TurnFailed
from .primed import PrimedCall

MAX_ITERATIONS_MARKER = "max_tool_iterations"


@dataclass
class TurnSpec:
    """Everything one turn needs, resolved by the conversation before it starts."""

    engine: LLMEngine
    model: str  # the configured model id reported to the client
    messages: list[dict[str, Any]]  # the full prompt
    server_tools: dict[str, Tool] = field(default_factory=dict)
    client_tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: Any = None
    temperature: float | None = None
    max_tokens: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    max_tool_iterations: int = 10
    tool_timeout_s: float = 10.0
    llm_timeout_s: float = 120.0
    degrade_reasons: list[str] = field(default_factory=list)
    caller: ToolCaller | None = None  # who the turn runs for: the audit event of each server tool call
    quota_owner: str | None = None  # LLMRequest.owner: whose per-user queue quota its model calls count in
    # Personalization: rebuilds `messages` with context (ContextService.prepare) inside the turn's own
    # task, so the actor stays responsive; returns (messages, degrade reasons). Voice turns' accept
    # `ahead=True`: preemptive generation's copy (not a turn stage; leaves the prefetch for the turn).
    prepare: Callable[..., Awaitable[tuple[list[dict[str, Any]], list[str]]]] | None = None
    # Preemptive generation (primed.py): the first model call, started at the speaker's pause; used
    # only if it is exactly the request this turn makes.
    primed: PrimedCall | None = None


@dataclass(slots=True)
class _Call:
    id: str = ""
    name: str = ""
    arguments: str = ""
    client_index: int | None = None  # set once routed to the client
    routed: bool = False


class Turn:
    def __init__(self, spec: TurnSpec, catalog: ToolCatalog) -> None:
        self.spec = spec
        self.catalog = catalog
        self.text = ""  # everything the assistant said in this turn, across tool rounds

    def _tools_param(self) -> list[dict[str, Any]] | None:
        spec = self.spec
        if not spec.engine.supports_tools:
            return None
        tools = [t.schema() for t in spec.server_tools.values()]
        tools += [t for t in spec.client_tools if _tool_name(t) not in spec.server_tools]
        return tools or None

    def request(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> LLMRequest:
        """The model call of one round (also what a primed call must equal to be adopted)."""
        spec = self.spec
        return LLMRequest(
            messages=messages,
            tools=tools,
            tool_choice=spec.tool_choice if tools else None,
            temperature=spec.temperature,
            max_tokens=spec.max_tokens,
            extra=spec.extra,
            owner=spec.quota_owner,
        )

    async def first_request(self) -> LLMRequest:
        """The turn's first model call, context included (what preemptive generation primes)."""
        messages = list(self.spec.messages)
        if self.spec.prepare is not None:
            messages, _ = await self.spec.prepare(ahead=True)
        return self.request(messages, self._tools_param())

    async def events(self) -> AsyncIterator[TurnEvent]:
        """Run the turn; the last event is always TurnDone or TurnFailed (unless cancelled)."""
        spec = self.spec
        started = time.perf_counter()
        messages = list(spec.messages)
        if spec.prepare is not None:
            messages, reasons = await spec.prepare()
            spec.degrade_reasons.extend(reasons)
        new_messages: list[dict[str, Any]] = []
        usage = LLMUsage()
        tools = self._tools_param()
        iterations = 0
        while True:
            calls: dict[int, _Call] = {}
            client_count = 0
            round_text: list[str] = []
            finish = "stop"
            request = self.request(messages, tools)
            primed, spec.primed = spec.primed, None
            stream = primed.adopt(spec.engine, request) if primed is not None else None
            llm_start = time.perf_counter()
            first = True
            try:
                async with asyncio.timeout(spec.llm_timeout_s):
                    async for ev in stream or spec.engine.stream_chat(request):
                        if first:
                            labelled(TURN_STAGE, "llm_first_token").observe(time.perf_counter() - llm_start)
                            first = False
                        if isinstance(ev, LLMTextDelta):
                            round_text.append(ev.text)
                            self.text += ev.text
                            yield TextDelta(ev.text)
                        elif isinstance(ev, LLMToolCallDelta):
                            call = calls.setdefault(ev.index, _Call())
                            call.id += ev.id or ""
                            call.name += ev.name or ""
                            call.arguments += ev.arguments
                            if not call.routed and call.name:
                                call.routed = True
                                if call.name not in spec.server_tools:
                                    call.client_index = client_count
                                    client_count += 1
                                    yield ToolCallDelta(call.client_index, call.id, call.name, call.arguments)
                                    continue
                            if call.client_index is not None and ev.arguments:
                                yield ToolCallDelta(call.client_index, None, None, ev.arguments)
                        elif isinstance(ev, LLMUsage):
                            usage.prompt_tokens += ev.prompt_tokens
                            usage.completion_tokens += ev.completion_tokens
                        elif isinstance(ev, LLMFinish):
                            finish = ev.reason
            except TimeoutError:
                err = EngineTimeout(f"model {spec.model} did not finish within {spec.llm_timeout_s:g} s")
                yield TurnFailed(err.code, str(err), 504, self.text)
                return
            except EngineTimeout as err:
                yield TurnFailed(err.code, str(err), 504, self.text)
                return
            except EngineError as err:
                yield TurnFailed(err.code, str(err), err.status, self.text, getattr(err, "headers", None))
                return
            labelled(TURN_STAGE, "llm_total").observe(time.perf_counter() - llm_start)
            text = "".join(round_text)
            if client_count:
                # Client tools end the turn; server calls mixed into the same round are dropped
                # (the client's next request lets the model ask for them again).
                client_calls = sorted((c for c in calls.values() if c.client_index is not None), key=_by_index)
                new_messages.append(_assistant(text, client_calls))
                yield self._done("tool_calls", usage, iterations, None, new_messages, started)
                return
            server_calls = [calls[i] for i in sorted(calls) if calls[i].name in spec.server_tools]
            if not server_calls:
                new_messages.append({"role": "assistant", "content": text})
                yield self._done(finish, usage, iterations, None, new_messages, started)
                return
            if iterations >= spec.max_tool_iterations:
                new_messages.append({"role": "assistant", "content": text})
                yield self._done("stop", usage, iterations, MAX_ITERATIONS_MARKER, new_messages, started)
                return
            iterations += 1
            assistant = _assistant(text, server_calls)
            messages.append(assistant)
            new_messages.append(assistant)
            for call in server_calls:
                tool_start = time.perf_counter()
                result = await self.catalog.execute(
                    spec.server_tools[call.name],
                    call.arguments,
                    timeout=spec.tool_timeout_s,
                    caller=spec.caller,
                    call_id=call.id,
                )
                labelled(TURN_STAGE, "tool").observe(time.perf_counter() - tool_start)
                tool_msg = {"role": "tool", "tool_call_id": call.id, "content": result.content}
                messages.append(tool_msg)
                new_messages.append(tool_msg)
                yield ServerToolCall(call.name, call.id, result.ok, result.latency_s)

    def _done(
        self,
        finish: str,
        usage: LLMUsage,
        iterations: int,
        stop_reason: str | None,
        new_messages: list[dict[str, Any]],
        started: float,
    ) -> TurnDone:
        labelled(TURN_STAGE, "turn_total").observe(time.perf_counter() - started)
        reasons = list(self.spec.degrade_reasons)
        return TurnDone(
            finish_reason=finish,
            usage=usage,
            model=self.spec.model,
            tool_iterations=iterations,
            stop_reason=stop_reason,
            new_messages=new_messages,
            degraded=bool(reasons),
            degrade_reasons=reasons,
        )


def _tool_name(tool: dict[str, Any]) -> str:
    return str((tool.get("function") or {}).get("name", ""))


def _by_index(call: _Call) -> int:
    return call.client_index or 0


def _assistant(text: str, calls: list[_Call]) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": text or None,
        "tool_calls": [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}} for c in calls
        ],
    }
