"""Deterministic OpenAI-compatible LLM upstream for tests and benchmarks.

Real HTTP and real SSE (Starlette on uvicorn), so the code under test talks to it exactly as it
would talk to a hosted model.  What it answers is scripted by directives in the conversation
(see ``DIRECTIVES``); every request body is kept so tests can assert what was sent upstream.

Run: ``python -m tests.support.stub_llm --host 127.0.0.1 --port 0 [--ttft-ms N] [--token-ms N]
[--tokens N]``; it prints ``STUB_LISTENING http://127.0.0.1:<port>/v1`` once it accepts requests.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import re
import socket
import sys
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

MODEL_ID = "stub-model"
MODEL = {"id": MODEL_ID, "object": "model", "created": 1_700_000_000, "owned_by": "stub"}
MAX_RECORDED = 200

DIRECTIVES = """\
Directives are read from the LAST message when it is a user message (LOOP: from the last user
message anywhere). The reply is the first rule below that applies:
  FAIL <status>        that HTTP status with an OpenAI error body (code "stub_<status>")
  LOOP <tool> <json>   call <tool> on every round, also after tool results (max-iteration tests)
  CALL <tool> <json>   call <tool>; one CALL per line, several lines -> parallel calls 0, 1, ...
  (last message is a tool result)  "Tool <name> returned: <content>", one line per trailing result
  SYSTEM?              the system/developer message content(s), newline-joined (if there is one)
  (--tokens N given)   "tok0 tok1 ... tok<N-1>"
  (otherwise)          "Echo: <last user text>"
Modifiers, combined with any of the above:
  SLEEP <seconds>      wait that long before answering (before any byte is sent)
  FAIL_MIDSTREAM       stream: role + 2 content chunks, then drop the connection (no [DONE]);
                       non-stream: headers + part of the body, then drop the connection
Tools are only called when offered in `tools` (and tool_choice is not "none"); arguments are sent
verbatim (not validated), "{}" when absent; ids are "call_<n>", unique for the stub's lifetime.
max_tokens / max_completion_tokens truncate text replies (finish_reason "length").
Usage: prompt_tokens = whitespace words in all message texts; completion_tokens = text pieces
(words) or tool-argument fragments emitted.
"""

_CALL_RE = re.compile(r"\bCALL[ \t]+([A-Za-z0-9_.:-]+)[ \t]*([^\r\n]*)")
_LOOP_RE = re.compile(r"\bLOOP[ \t]+([A-Za-z0-9_.:-]+)[ \t]*([^\r\n]*)")
_FAIL_RE = re.compile(r"\bFAIL[ \t]+(\d{3})\b")
_SLEEP_RE = re.compile(r"\bSLEEP[ \t]+(\d+(?:\.\d+)?)")
_PIECE_RE = re.compile(r"\s*\S+\s*$|\s*\S+")
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}
_ids = itertools.count(1)


@dataclass(slots=True)
class Plan:
    """What one request will be answered with, decided before any I/O."""

    text: str = ""
    calls: list[tuple[str, str]] = field(default_factory=list)
    sleep_s: float = 0.0
    fail_status: int | None = None
    fail_midstream: bool = False
    max_pieces: int | None = None


def text_of(content: Any) -> str:
    """Flatten string or content-part message content to plain text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def pieces(text: str) -> list[str]:
    """Split text into word-sized stream pieces that concatenate back to exactly ``text``."""
    return _PIECE_RE.findall(text)


def fragments(arguments: str) -> list[str]:
    """Split tool arguments into >= 2 fragments, as a real model streams them."""
    if len(arguments) <= 16:
        mid = (len(arguments) + 1) // 2
        return [arguments[:mid], arguments[mid:]]
    return [arguments[i : i + 8] for i in range(0, len(arguments), 8)]


def _offered(body: dict[str, Any]) -> set[str]:
    if body.get("tool_choice") == "none":
        return set()
    names = set()
    for tool in body.get("tools") or []:
        fn = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(fn, dict) and fn.get("name"):
            names.add(fn["name"])
    return names


def _calls(regex: re.Pattern[str], text: str, offered: set[str]) -> list[tuple[str, str]]:
    return [(m[1], m[2].strip() or "{}") for m in regex.finditer(text) if m[1] in offered]


def _tool_summary(messages: list[dict[str, Any]]) -> str:
    names: dict[str, str] = {}
    for msg in messages:
        for call in msg.get("tool_calls") or []:
            names[call.get("id", "")] = (call.get("function") or {}).get("name", "unknown")
    trailing: list[dict[str, Any]] = []
    for msg in reversed(messages):
        if msg.get("role") != "tool":
            break
        trailing.insert(0, msg)
    return "\n".join(
        f"Tool {names.get(m.get('tool_call_id', ''), m.get('name') or 'unknown')} returned: {text_of(m.get('content'))}"
        for m in trailing
    )


def make_plan(body: dict[str, Any], tokens: int | None = None) -> Plan:
    """Decide the reply from the directives in the conversation (see DIRECTIVES)."""
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    last = messages[-1] if messages else {}
    role = last.get("role")
    user_text = text_of(last.get("content")) if role == "user" else ""
    last_user = next((text_of(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    plan = Plan(max_pieces=limit if isinstance(limit, int) and limit > 0 else None)
    if sleep := _SLEEP_RE.search(user_text):
        plan.sleep_s = float(sleep[1])
    if fail := _FAIL_RE.search(user_text):
        plan.fail_status = int(fail[1])
        return plan
    plan.fail_midstream = "FAIL_MIDSTREAM" in user_text
    offered = _offered(body)
    plan.calls = _calls(_LOOP_RE, last_user, offered) or _calls(_CALL_RE, user_text, offered)
    if plan.calls:
        return plan
    system = [text_of(m.get("content")) for m in messages if m.get("role") in ("system", "developer")]
    if role == "tool":
        plan.text = _tool_summary(messages)
    elif "SYSTEM?" in user_text and system:
        plan.text = "\n".join(system)
    elif tokens is not None:
        plan.text = " ".join(f"tok{i}" for i in range(tokens))
    else:
        plan.text = f"Echo: {last_user}"
    return plan


def error_body(status: int, message: str, code: str | None = None) -> bytes:
    """OpenAI error body (all four keys present, as the spec requires)."""
    kind = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return orjson.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}})


def _json(body: bytes, status: int = 200) -> Response:
    return Response(body, status, media_type="application/json")


class _Chunked(Response):
    """Body sent as it is produced; a ``None`` item drops the connection (FAIL_MIDSTREAM).
    No disconnect-listener task, unlike StreamingResponse, so it stays cheap under load."""

    def __init__(self, events: AsyncIterator[bytes | None], headers: dict[str, str]) -> None:
        self.events = events
        self.status_code = 200
        self.background = None
        self.init_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        async for data in self.events:
            if data is None:
                return  # returning with more_body pending makes uvicorn drop the connection
            await send({"type": "http.response.body", "body": data, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _truncated_json() -> AsyncIterator[bytes | None]:
    yield b'{"id":"chatcmpl-'
    yield None


STUB_TRANSCRIPT = "What time is it in Paris right now?"
_SSE_HEADERS = {"content-type": "text/event-stream", "cache-control": "no-cache"}
_ABORT_MESSAGE = "ASGI callable returned without completing response."


class StubLLM:
    """The stub's state and handlers; ``app`` is the Starlette application."""

    def __init__(self, ttft_ms: float = 0.0, token_ms: float = 0.0, tokens: int | None = None) -> None:
        self.ttft = ttft_ms / 1000
        self.token = token_ms / 1000
        self.tokens = tokens
        self.recorded: deque[Any] = deque(maxlen=MAX_RECORDED)
        self.app = Starlette(
            routes=[
                Route("/v1/models", self.models, methods=["GET"]),
                Route("/v1/models/{model:path}", self.model, methods=["GET"]),
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
                Route("/v1/audio/transcriptions", self.transcriptions, methods=["POST"]),
                Route("/v1/audio/speech", self.speech, methods=["POST"]),
                Route("/_stub/requests", self.requests, methods=["GET", "DELETE"]),
            ]
        )

    async def transcriptions(self, request: Request) -> Response:
        """Instant STT stand-in (benchmarks' `--engines stub`): a fixed transcript for any audio."""
        await request.body()
        return _json(orjson.dumps({"text": STUB_TRANSCRIPT}))

    async def speech(self, request: Request) -> Response:
        """Instant TTS stand-in: a quiet 220 Hz tone, 60 ms per input character, as raw 24 kHz PCM16."""
        body = orjson.loads(await request.body())
        n = int(24000 * 0.06 * max(1, len(str(body.get("input", "")))))
        t = np.arange(n, dtype=np.float32) / 24000
        tone = (np.sin(2 * np.pi * 220 * t) * 3000).astype("<i2")
        return Response(tone.tobytes(), media_type="application/octet-stream")

    async def models(self, request: Request) -> Response:
        """Advertise the single stub model."""
        return _json(orjson.dumps({"object": "list", "data": [MODEL]}))

    async def model(self, request: Request) -> Response:
        """Describe one model; 404 for anything but the stub model."""
        if (name := request.path_params["model"]) != MODEL_ID:
            return _json(error_body(404, f"The model '{name}' does not exist", "model_not_found"), 404)
        return _json(orjson.dumps(MODEL))

    async def requests(self, request: Request) -> Response:
        """List (GET) or forget (DELETE) the recorded chat request bodies, oldest first."""
        if request.method == "DELETE":
            self.recorded.clear()
            return Response(status_code=204)
        return _json(orjson.dumps(list(self.recorded)))

    async def chat(self, request: Request) -> Response:
        """Answer a chat completion as scripted by the conversation's directives."""
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return _json(error_body(400, "Request body is not valid JSON"), 400)
        self.recorded.append(body)
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return _json(error_body(400, "'messages' is required"), 400)
        plan = make_plan(body, self.tokens)
        if plan.sleep_s:
            await asyncio.sleep(plan.sleep_s)
        if (status := plan.fail_status) is not None:
            return _json(error_body(status, f"Stub failure: FAIL {status}", f"stub_{status}"), status)
        model = body.get("model") or MODEL_ID
        words = sum(len(text_of(m.get("content")).split()) for m in body["messages"] if isinstance(m, dict))
        if body.get("stream"):
            usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return _Chunked(self._stream(plan, model, words, usage), _SSE_HEADERS)
        if plan.fail_midstream:
            return _Chunked(_truncated_json(), {"content-type": "application/json", "content-length": "200"})
        return await self._complete(plan, model, words)

    def _text(self, plan: Plan) -> tuple[list[str], str]:
        parts = pieces(plan.text)
        if plan.max_pieces is not None and len(parts) > plan.max_pieces:
            return parts[: plan.max_pieces], "length"
        return parts, "stop"

    async def _complete(self, plan: Plan, model: str, prompt: int) -> Response:
        """Non-streaming ``chat.completion``."""
        message: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": None, "refusal": None}
        if plan.calls:
            calls = [(f"call_{next(_ids)}", name, args) for name, args in plan.calls]
            message["tool_calls"] = [
                {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}
                for cid, name, args in calls
            ]
            finish, completion = "tool_calls", sum(len(fragments(a)) for _, _, a in calls)
        else:
            parts, finish = self._text(plan)
            message["content"], completion = "".join(parts), len(parts)
        await asyncio.sleep(self.ttft + self.token * completion)
        body = {
            "id": f"chatcmpl-{next(_ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
        }
        return _json(orjson.dumps(body))

    async def _stream(self, plan: Plan, model: str, prompt: int, usage: bool) -> AsyncIterator[bytes | None]:
        """``chat.completion.chunk`` events, paced by --ttft-ms / --token-ms."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        head = {
            "id": f"chatcmpl-{next(_ids)}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }
        # Byte templates instead of one dict per chunk: the stub is also the benchmark upstream.
        prefix = b"data: " + orjson.dumps({**head, "choices": [{"index": 0}]})[:-3] + b',"delta":'
        usage_null = b',"usage":null' if usage else b""
        open_end = b',"logprobs":null,"finish_reason":null}]' + usage_null + b"}\n\n"

        def event(delta: dict[str, Any], finish: str | None = None) -> bytes:
            if finish is None:
                return prefix + orjson.dumps(delta) + open_end
            end = open_end.replace(b"null}]", orjson.dumps(finish) + b"}]", 1)
            return prefix + orjson.dumps(delta) + end

        async def pace(deadline: float) -> None:
            # Absolute deadlines, so timer granularity does not add up over the chunks.
            if (delay := start + deadline - loop.time()) > 0:
                await asyncio.sleep(delay)

        await pace(self.ttft)
        deltas: list[dict[str, Any]] = []
        if plan.calls:
            for index, (name, args) in enumerate(plan.calls):
                first = {
                    "index": index,
                    "id": f"call_{next(_ids)}",
                    "type": "function",
                    "function": {"name": name, "arguments": ""},
                }
                deltas.append({"tool_calls": [first]})
                for piece in fragments(args):
                    deltas.append({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
            deltas[0] = {"role": "assistant", "content": None, **deltas[0]}
            finish, completion = "tool_calls", len(deltas) - len(plan.calls)
        else:
            parts, finish = self._text(plan)
            if plan.fail_midstream:
                parts = [*parts, "partial", " reply"][:2]
            deltas = [{"role": "assistant", "content": ""}] + [{"content": p} for p in parts]
            completion = len(parts)
        # The role chunk goes out with the first content piece; --token-ms separates the rest.
        yield event(deltas[0]) + (event(deltas[1]) if len(deltas) > 1 else b"")
        for i, delta in enumerate(deltas[2:], 1):
            await pace(self.ttft + self.token * i)
            yield event(delta)
        if plan.fail_midstream:
            yield None  # abort
            return
        tail = event({}, finish)
        if usage:
            counts = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
            tail += b"data: " + orjson.dumps({**head, "choices": [], "usage": counts}) + b"\n\n"
        yield tail + b"data: [DONE]\n\n"


class _QuietAbort(logging.Filter):
    """Hide uvicorn's error line for connections the stub drops on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != _ABORT_MESSAGE


async def serve(host: str, port: int, stub: StubLLM) -> None:
    """Bind, announce ``STUB_LISTENING <base_url>`` once uvicorn is up, and serve until signalled."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    config = uvicorn.Config(
        stub.app,
        http="httptools",
        access_log=False,
        log_level="warning",
        lifespan="off",
        server_header=False,
        date_header=False,
        backlog=4096,
        timeout_keep_alive=120,
        timeout_graceful_shutdown=2,
    )
    logging.getLogger("uvicorn.error").addFilter(_QuietAbort())
    shown = f"[{host}]" if ":" in host else host
    await _AnnouncingServer(config, f"STUB_LISTENING http://{shown}:{sock.getsockname()[1]}/v1").serve([sock])


class _AnnouncingServer(uvicorn.Server):
    """uvicorn server that prints the readiness line right after it starts listening."""

    def __init__(self, config: uvicorn.Config, line: str) -> None:
        super().__init__(config)
        self.line = line

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and not self.should_exit:
            print(self.line, flush=True)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(
        description=__doc__, epilog=DIRECTIVES, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--ttft-ms", type=float, default=0.0, help="delay before the first chunk")
    parser.add_argument("--token-ms", type=float, default=0.0, help="delay between chunks")
    parser.add_argument("--tokens", type=int, default=None, help="reply with N words instead of the echo")
    args = parser.parse_args(argv)
    stub = StubLLM(args.ttft_ms, args.token_ms, args.tokens)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is installed with uvicorn[standard]
        asyncio.run(serve(args.host, args.port, stub))
    else:
        uvloop.run(serve(args.host, args.port, stub))


if __name__ == "__main__":
    sys.exit(main())
