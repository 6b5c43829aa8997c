"""CozyChat sessions API and chat persistence, end to end: openai SDK / HTTP -> CozyEngine ->
PostgreSQL (a throwaway database on the machine's server). Users A and B are made per test."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.e2e.accounts import api, db_fetch, make_user, sdk, wait_for
from tests.e2e.conftest import STUB_MODEL, CozyServer, assert_error_body, new_session_id, user
from tests.support.procs import StubLLMServer


def messages(http: httpx.Client, sid: str, **params: object) -> list[dict]:
    r = http.get(f"/v1/chat/sessions/{sid}/messages", params={"limit": 200, **params})
    assert r.status_code == 200, r.text
    return r.json()["data"]


def settled(http: httpx.Client, sid: str) -> list[dict]:
    """The stored messages once the last turn's answer has been written (it lands just after the reply)."""
    return wait_for(lambda: messages(http, sid), lambda ms: bool(ms) and ms[-1]["role"] != "user", timeout=5)


def test_crud_pages_and_soft_delete(cozy_server: CozyServer) -> None:
    _, key = make_user(cozy_server)
    with api(cozy_server, key) as http:
        made = http.post("/v1/chat/sessions", json={"title": "first", "metadata": {"k": 1}})
        assert made.status_code == 201, made.text
        s = made.json()
        assert s["id"].startswith("sess_") and s["object"] == "chat.session" and s["personality_id"] == "assistant"
        assert (s["title"], s["metadata"], s["message_count"]) == ("first", {"k": 1}, 0)
        mine = [
            http.post("/v1/chat/sessions", json={"id": f"mine-{i}", "personality_id": "voice-concierge"})
            for i in range(3)
        ]
        assert all(r.status_code == 201 for r in mine)
        assert_error_body(http.post("/v1/chat/sessions", json={"id": "mine-0"}), 409, "RESOURCE_ALREADY_EXISTS")
        assert_error_body(http.post("/v1/chat/sessions", json={"personality_id": "nope"}), 404, "RESOURCE_NOT_FOUND")
        assert http.post("/v1/chat/sessions").status_code == 201  # empty body: all defaults
        assert http.get(f"/v1/chat/sessions/{s['id']}").json()["title"] == "first"
        ids, cursor = [], None
        while True:
            page = http.get("/v1/chat/sessions", params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
            ids += [x["id"] for x in page["data"]]
            if not page["has_more"]:
                break
            cursor = page["next_cursor"]
        assert len(ids) == 5 and len(set(ids)) == 5 and s["id"] in ids
        assert_error_body(http.get("/v1/chat/sessions", params={"limit": 0}), 400, "VALIDATION_ERROR")
        assert_error_body(http.get("/v1/chat/sessions", params={"cursor": "junk"}), 400, "VALIDATION_ERROR")

        gone = http.delete("/v1/chat/sessions/mine-1")
        assert gone.json() == {"id": "mine-1", "object": "chat.session.deleted", "deleted": True}
        assert_error_body(http.get("/v1/chat/sessions/mine-1"), 404, "RESOURCE_NOT_FOUND")
        assert_error_body(http.get("/v1/chat/sessions/mine-1/messages"), 404, "RESOURCE_NOT_FOUND")
        assert_error_body(http.delete("/v1/chat/sessions/mine-1"), 404, "RESOURCE_NOT_FOUND")
        assert "mine-1" not in [x["id"] for x in http.get("/v1/chat/sessions", params={"limit": 50}).json()["data"]]
    with sdk(cozy_server, key) as client, pytest.raises(openai.NotFoundError):
        client.chat.completions.create(
            model=STUB_MODEL, messages=user("hello?"), extra_body={"cozy": {"session_id": "mine-1"}}
        )
    (row,) = db_fetch(cozy_server, "SELECT deleted_at FROM sessions WHERE id = 'mine-1'")
    assert row["deleted_at"] is not None  # soft: kept in the table


def test_user_cannot_read_list_delete_or_continue_another_users_session(
    cozy_server: CozyServer, upstream: StubLLMServer
) -> None:
    _, key_a = make_user(cozy_server)
    _, key_b = make_user(cozy_server)
    sid = new_session_id()
    cozy = {"cozy": {"session_id": sid}}
    with sdk(cozy_server, key_a) as a:
        a.chat.completions.create(model=STUB_MODEL, messages=user("A's secret"), extra_body=cozy)
    with api(cozy_server, key_a) as http_a:
        before = settled(http_a, sid)
    with api(cozy_server, key_b) as http_b:
        for response in (
            http_b.get(f"/v1/chat/sessions/{sid}"),
            http_b.get(f"/v1/chat/sessions/{sid}/messages"),
            http_b.delete(f"/v1/chat/sessions/{sid}"),
        ):
            assert_error_body(response, 404, "RESOURCE_NOT_FOUND")  # 404, not 403: ids cannot be probed
        assert http_b.get("/v1/chat/sessions").json()["data"] == []
    upstream.clear()
    with sdk(cozy_server, key_b) as b, pytest.raises(openai.NotFoundError) as info:
        b.chat.completions.create(model=STUB_MODEL, messages=user("B butts in"), extra_body=cozy)
    assert info.value.code == "RESOURCE_NOT_FOUND" and info.value.param == "cozy.session_id"
    assert upstream.requests() == []  # the model never saw A's history on B's behalf
    with api(cozy_server, key_a) as http_a:
        assert messages(http_a, sid) == before  # nothing of B's was stored
        assert [s["id"] for s in http_a.get("/v1/chat/sessions").json()["data"]] == [sid]


def test_turns_are_persisted_with_metadata_and_history_comes_from_the_database(
    cozy_server: CozyServer, upstream: StubLLMServer
) -> None:
    _, key = make_user(cozy_server)
    sid = new_session_id()
    cozy = {"cozy": {"session_id": sid}}
    with sdk(cozy_server, key) as client:
        client.chat.completions.create(model=STUB_MODEL, messages=user("one"), extra_body=cozy)
        list(
            client.chat.completions.create(
                model=STUB_MODEL,
                messages=user("two"),
                extra_body=cozy,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        client.chat.completions.create(
            model=STUB_MODEL, messages=user('CALL calculator {"expression":"6*7"}'), extra_body=cozy
        )
    calc_round = upstream.requests()[-2]  # the third turn's first model call (the last one has the tool result)
    assert [m["role"] for m in calc_round["messages"]] == ["system", "user", "assistant", "user", "assistant", "user"]
    with api(cozy_server, key) as http:
        stored = settled(http, sid)
        assert [m["role"] for m in stored] == [
            "user",
            "assistant",
            "user",
            "assistant",
            "user",
            "assistant",
            "tool",
            "assistant",
        ]
        assert [m["content"] for m in stored[:4]] == ["one", "Echo: one", "two", "Echo: two"]
        for m in (stored[1], stored[3], stored[7]):
            assert m["model"] == STUB_MODEL and not m["incomplete"]
            assert m["usage"]["prompt_tokens"] > 0 and m["usage"]["completion_tokens"] > 0
            assert isinstance(m["latency_ms"], int) and m["latency_ms"] >= 0
        call = stored[5]["tool_calls"][0]
        assert call["function"]["name"] == "calculator" and stored[6]["tool_call_id"] == call["id"]
        assert '"result":42' in stored[6]["content"].replace(" ", "")
        assert all(m["model"] is None and m["usage"] is None for m in stored if m["role"] in ("user", "tool"))
        newest = http.get(f"/v1/chat/sessions/{sid}/messages", params={"limit": 3, "order": "desc"}).json()
        assert [m["role"] for m in newest["data"]] == ["assistant", "tool", "assistant"] and newest["has_more"]
        rest = http.get(
            f"/v1/chat/sessions/{sid}/messages", params={"limit": 50, "order": "desc", "cursor": newest["next_cursor"]}
        ).json()
        assert len(rest["data"]) == 5 and not rest["has_more"]
        assert http.get(f"/v1/chat/sessions/{sid}").json()["message_count"] == 8


def test_turn_that_fails_mid_stream_keeps_user_message_and_partial_answer(cozy_server: CozyServer) -> None:
    _, key = make_user(cozy_server)
    sid = new_session_id()
    with sdk(cozy_server, key) as client, pytest.raises(openai.APIError):
        list(
            client.chat.completions.create(
                model=STUB_MODEL,
                messages=user("FAIL_MIDSTREAM tell me a story"),
                extra_body={"cozy": {"session_id": sid}},
                stream=True,
            )
        )
    with api(cozy_server, key) as http:
        stored = settled(http, sid)
    assert [m["role"] for m in stored] == ["user", "assistant"]
    assert stored[0]["content"] == "FAIL_MIDSTREAM tell me a story" and not stored[0]["incomplete"]
    assert stored[1]["incomplete"] is True and stored[1]["content"]  # the part that was streamed
    assert stored[1]["model"] == STUB_MODEL and stored[1]["usage"] is None
