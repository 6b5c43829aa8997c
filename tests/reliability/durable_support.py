"""Helpers of the durability and fault tests (items 5, 6 and 9 of issue 10): a slow stub reply to
cut off, realtime calls with the openai SDK, and the stored messages read back through the
sessions API."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import openai

from tests.e2e.realtime_support import Events
from tests.reliability.conftest import ADMIN_KEY, CozyServer

TEXT_SESSION = {"type": "realtime", "output_modalities": ["text"]}
TOKEN_MS = 100  # the stub's pace: one word each 100 ms, so a long reply streams for seconds
LONG = " ".join(f"word{i}" for i in range(120))  # echoed back: ~12 s of reply at TOKEN_MS


def user_text(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def rt_client(server: CozyServer, key: str = ADMIN_KEY) -> openai.AsyncOpenAI:
    ws = server.base_url.replace("http://", "ws://")
    return openai.AsyncOpenAI(api_key=key, base_url=server.base_url, websocket_base_url=ws, max_retries=0)


async def start_reply(conn: Any, ev: Events, text: str = LONG, *, deltas: int = 5) -> None:
    """A text session that asks for `text` echoed back; returns once `deltas` pieces have arrived."""
    await conn.session.update(session=TEXT_SESSION)
    await ev.wait("session.updated")
    await conn.conversation.item.create(item=user_text(text))
    await conn.response.create()
    await ev.wait("response.output_text.delta", deltas, timeout=30)


def said(ev: Events) -> str:
    """Everything the client was sent of the reply (what a text-mode listener has 'heard')."""
    return "".join(e.delta for e in ev.of("response.output_text.delta"))


def admin_http(server: CozyServer) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=server.base_url, headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=30)


def messages(server: CozyServer, sid: str, key: str = ADMIN_KEY) -> list[dict[str, Any]]:
    r = httpx.get(
        f"{server.base_url}/chat/sessions/{sid}/messages",
        params={"limit": 200},
        headers={"authorization": f"Bearer {key}"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return r.json()["data"]


def wait_messages(
    server: CozyServer, sid: str, count: int, key: str = ADMIN_KEY, timeout: float = 20.0
) -> list[dict[str, Any]]:
    """Poll the sessions API until the session holds `count` messages (writes are asynchronous)."""
    deadline = time.monotonic() + timeout
    got: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        got = messages(server, sid, key)
        if len(got) >= count:
            return got
        time.sleep(0.2)
    raise AssertionError(f"session {sid}: {len(got)} messages after {timeout:g} s, wanted {count}: {got}")


async def await_closed(ev: Events, timeout: float = 15.0) -> None:
    """Wait until the server has closed the connection (the event reader ended)."""
    done, _ = await asyncio.wait([ev._task], timeout=timeout)
    assert done, f"the server did not close the connection within {timeout:g} s"
    if not ev._task.cancelled():
        ev._task.exception()  # a closed connection ends the reader with an error: retrieved here


def assert_cut_off(stored: list[dict[str, Any]], heard: str, asked: str = LONG) -> None:
    """The user's words, then the reply exactly as heard, marked incomplete (as text chat does)."""
    assert [m["role"] for m in stored] == ["user", "assistant"], stored
    assert stored[0]["content"] == asked and stored[0]["incomplete"] is False
    reply = stored[1]
    assert reply["incomplete"] is True, reply
    assert reply["content"] == heard, (reply["content"], heard)
    assert heard and len(heard) < len("Echo: " + asked), heard
