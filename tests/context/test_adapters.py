"""Mem0, Memobase and Cognee adapters against a real local HTTP server that records what they send
and answers with the bodies of the services' public docs (tests/context/recorded_shapes.py): exact
method, path, headers and JSON/multipart bodies; parsed answers become ContextItems; HTTP errors,
timeouts and refused connections become EngineError, and through the ContextService a degraded turn."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from cozy_actors.config.models import ContextConfig
from cozy_actors.context import ContextItem, ContextQuery, ContextService, TurnRecord
from cozy_actors.context.adapters import CogneeKnowledge, Mem0Memory, MemobaseProfile
from cozy_actors.context.adapters.memobase import memobase_user_id
from cozy_core.engines import EngineError, EngineTimeout
from tests.support.procs import free_port
from tests.support.recording_http import Recorded, RecordingServer

from . import recorded_shapes as doc

TURN = TurnRecord(
    "u1",
    "assistant",
    [
        {"role": "system", "content": "You are kind."},
        {"role": "user", "content": [{"type": "input_text", "text": "I'm a vegetarian and allergic to nuts."}]},
        {"role": "assistant", "content": "Got it! I'll remember your dietary preferences."},
        {"role": "tool", "content": "{}"},
    ],
)
SENT = [
    {"role": "user", "content": "I'm a vegetarian and allergic to nuts."},
    {"role": "assistant", "content": "Got it! I'll remember your dietary preferences."},
]


@pytest.fixture
async def srv() -> AsyncIterator[RecordingServer]:
    server = await RecordingServer().start()
    try:
        yield server
    finally:
        await server.stop()


async def started(engine: Any) -> Any:
    await engine.initialize()
    return engine


def one(srv: RecordingServer) -> Recorded:
    [req] = srv.take()
    return req


# --- Mem0 -----------------------------------------------------------------------------------------


async def test_mem0_platform_add_and_v2_search(srv: RecordingServer) -> None:
    srv.route("POST", "/v1/memories/", doc.MEM0_ADD)
    srv.route("POST", "/v2/memories/search/", doc.MEM0_SEARCH_V2)
    mem = await started(Mem0Memory(Mem0Memory.Options(base_url=srv.url, api_key="m0-test")))
    try:
        await mem.update([TURN, TurnRecord("u1", "assistant", [{"role": "assistant", "content": "hi"}])])
        add = one(srv)  # the turn without user words is not sent
        assert (add.method, add.path) == ("POST", "/v1/memories/")
        assert add.headers["authorization"] == "Token m0-test"
        assert add.headers["content-type"] == "application/json"
        assert add.json == {
            "messages": SENT,
            "user_id": "u1",
            "metadata": {"personality_id": "assistant"},
            "version": "v2",
            "output_format": "v1.1",
        }
        items = await mem.search(ContextQuery("u1", "What are my dietary restrictions?", limit=5))
        req = one(srv)
        assert (req.method, req.path, req.headers["authorization"]) == ("POST", "/v2/memories/search/", "Token m0-test")
        assert req.json == {
            "query": "What are my dietary restrictions?",
            "top_k": 5,
            "filters": {"AND": [{"user_id": "u1"}]},
        }
        assert items == [ContextItem("memory", "Allergic to nuts", 1.0), ContextItem("memory", "Is a vegetarian", 0.5)]
        assert await mem.search(ContextQuery(None, "anything")) == [] and srv.take() == []  # no user, no call
    finally:
        await mem.close()


async def test_mem0_platform_v1_search_scope_and_older_v2_shape(srv: RecordingServer) -> None:
    srv.route("POST", "/v1/memories/search/", doc.MEM0_SEARCH_V1)
    opts = dict(base_url=srv.url, api_key="k", org_id="org_1", project_id="proj_1", threshold=0.3)
    mem = await started(Mem0Memory(Mem0Memory.Options(search_version="v1", **opts)))
    try:
        items = await mem.search(ContextQuery("alice", "hobbies?", limit=3))
        assert one(srv).json == {
            "query": "hobbies?",
            "top_k": 3,
            "org_id": "org_1",
            "project_id": "proj_1",
            "user_id": "alice",
            "threshold": 0.3,
        }
        assert [i.text for i in items] == ["Likes to play cricket and plays cricket on weekends."]
    finally:
        await mem.close()
    srv.route("POST", "/v2/memories/search/", doc.MEM0_SEARCH_V2_MEMORIES)
    mem = await started(Mem0Memory(Mem0Memory.Options(base_url=srv.url)))
    try:
        items = await mem.search(ContextQuery("alice", "hobbies?"))
        assert "authorization" not in one(srv).headers
        assert [i.text for i in items] == ["Likes to play cricket and plays cricket on weekends."]
    finally:
        await mem.close()


async def test_mem0_self_hosted_paths(srv: RecordingServer) -> None:
    srv.route("POST", "/memories", {"results": [{"id": "1", "memory": "Likes singing", "event": "ADD"}]})
    srv.route("POST", "/search", doc.MEM0_OSS_SEARCH)
    mem = await started(Mem0Memory(Mem0Memory.Options(base_url=srv.url + "/", api="oss", infer=False)))
    try:
        await mem.update([TURN])
        add = one(srv)
        assert (add.method, add.path) == ("POST", "/memories") and "authorization" not in add.headers
        assert add.json == {
            "messages": SENT,
            "user_id": "u1",
            "metadata": {"personality_id": "assistant"},
            "infer": False,
        }
        items = await mem.search(ContextQuery("u1", "what do I like?"))
        assert one(srv).json == {"query": "what do I like?", "user_id": "u1"}
        assert items == [ContextItem("memory", "Likes singing", 1.0)]
    finally:
        await mem.close()


async def test_http_errors_timeouts_and_refusals_are_engine_errors(srv: RecordingServer) -> None:
    srv.route("POST", "/v2/memories/search/", {"detail": "Invalid API key"}, status=401)
    srv.route("POST", "/v1/memories/", doc.MEM0_ADD, delay_s=1.0)
    q = ContextQuery("u1", "tea?")
    mem = Mem0Memory(Mem0Memory.Options(base_url=srv.url, api_key="bad", timeout_s=0.2))
    with pytest.raises(EngineError, match="not initialized"):
        await mem.search(q)
    await mem.initialize()
    try:
        with pytest.raises(EngineError, match="mem0 search: upstream answered 401") as err:
            await mem.search(q)
        assert err.value.code == "ENGINE_UPSTREAM_ERROR" and "Invalid API key" in err.value.message
        with pytest.raises(EngineTimeout, match="mem0 add: upstream timed out"):
            await mem.update([TURN])
    finally:
        await mem.close()
    refused = await started(Mem0Memory(Mem0Memory.Options(base_url=f"http://127.0.0.1:{free_port()}")))
    try:
        with pytest.raises(EngineError, match="mem0 search: upstream unreachable") as err:
            await refused.search(q)
        assert err.value.code == "ENGINE_UNAVAILABLE"
    finally:
        await refused.close()


# --- Memobase -------------------------------------------------------------------------------------


async def test_memobase_creates_user_inserts_chat_blob_and_flushes(srv: RecordingServer) -> None:
    uid = str(uuid.uuid5(uuid.uuid5(uuid.NAMESPACE_URL, "cozyengine:memobase-user"), "u1"))
    assert memobase_user_id("u1") == uid
    known = "0f8fad5b-d9cb-469f-a165-70867728950e"
    assert memobase_user_id(known.upper()) == known  # a UUID is kept (normalized)
    srv.route("GET", f"/api/v1/users/{uid}", doc.MEMOBASE_USER_MISSING)
    srv.route("POST", "/api/v1/users", doc.memobase_id(uid))
    srv.route("POST", f"/api/v1/blobs/insert/{uid}", doc.MEMOBASE_INSERT)
    srv.route("POST", f"/api/v1/users/buffer/{uid}/chat", doc.MEMOBASE_FLUSH)
    prof = await started(MemobaseProfile(MemobaseProfile.Options(base_url=srv.url, api_key="mb-token")))
    try:
        await prof.update([TURN, TURN])
        reqs = srv.take()
        assert [(r.method, r.path) for r in reqs] == [
            ("GET", f"/api/v1/users/{uid}"),
            ("POST", "/api/v1/users"),
            ("POST", f"/api/v1/blobs/insert/{uid}"),
            ("POST", f"/api/v1/blobs/insert/{uid}"),
            ("POST", f"/api/v1/users/buffer/{uid}/chat"),  # once per user and batch
        ]
        assert all(r.headers["authorization"] == "Bearer mb-token" for r in reqs)
        assert reqs[1].json == {"id": uid, "data": {"cozy_user_id": "u1"}}
        assert reqs[2].json == {"blob_type": "chat", "blob_data": {"messages": SENT}}
        await prof.update([TURN])  # the user is known now: no second lookup
        assert [r.path for r in srv.take()] == [f"/api/v1/blobs/insert/{uid}", f"/api/v1/users/buffer/{uid}/chat"]
    finally:
        await prof.close()


async def test_memobase_profile_search_and_errno_errors(srv: RecordingServer) -> None:
    uid = memobase_user_id("u1")
    srv.route("GET", f"/api/v1/users/profile/{uid}", doc.MEMOBASE_PROFILE)
    opts = MemobaseProfile.Options(base_url=srv.url, api_key="t", max_token_size=300, prefer_topics=["basic_info"])
    prof = await started(MemobaseProfile(opts))
    try:
        items = await prof.search(ContextQuery("u1", "hello", limit=5))
        req = one(srv)
        assert (req.method, req.path) == ("GET", f"/api/v1/users/profile/{uid}")
        assert req.query == [("max_token_size", "300"), ("prefer_topics", "basic_info")]
        assert [i.text for i in items] == ["basic_info::name: Gus", "health::allergies: allergic to nuts"]
        srv.route("GET", f"/api/v1/users/profile/{uid}", doc.MEMOBASE_USER_MISSING)
        assert await prof.search(ContextQuery("u1", "hello")) == []  # never seen by Memobase: no profile yet
        srv.route("GET", f"/api/v1/users/profile/{uid}", {"data": None, "errno": 500, "errmsg": "db down"})
        with pytest.raises(EngineError, match="memobase profile: errno 500 db down"):
            await prof.search(ContextQuery("u1", "hello"))
    finally:
        await prof.close()


# --- Cognee ---------------------------------------------------------------------------------------


async def test_cognee_add_uploads_text_files_then_cognifies(srv: RecordingServer) -> None:
    srv.route("POST", "/api/v1/add", doc.COGNEE_ADD)
    srv.route("POST", "/api/v1/cognify", doc.COGNEE_COGNIFY)
    kb = await started(CogneeKnowledge(CogneeKnowledge.Options(base_url=srv.url, api_key="jwt-1")))
    try:
        n = await kb.add_documents(
            "tea.notes", [{"title": "Green tea", "text": "Green tea is steamed."}, {"text": "Oolong is rolled."}]
        )
        assert n == 2
        add, cognify = srv.take()
        assert (add.method, add.path) == ("POST", "/api/v1/add")
        assert add.headers["authorization"] == "Bearer jwt-1"
        assert add.headers["content-type"].startswith("multipart/form-data")
        assert add.form == {"datasetName": "tea_notes"}  # Cognee refuses dots in dataset names
        assert add.files == [
            ("data", "Green_tea-0.txt", "text/plain", b"Green tea\n\nGreen tea is steamed."),
            ("data", "document-1.txt", "text/plain", b"Oolong is rolled."),
        ]
        assert (cognify.path, cognify.json) == (
            "/api/v1/cognify",
            {"datasets": ["tea_notes"], "run_in_background": True},
        )
    finally:
        await kb.close()


async def test_cognee_search_shapes_auth_and_errors(srv: RecordingServer) -> None:
    srv.route("POST", "/api/v1/search", doc.COGNEE_SEARCH_CHUNKS)
    opts = CogneeKnowledge.Options(base_url=srv.url, api_key="ck", auth="api_key", tenant_id="acme")
    kb = await started(CogneeKnowledge(opts))
    try:
        items = await kb.search(ContextQuery(None, "how is green tea made?", datasets=("tea.notes", "default")))
        req = one(srv)
        assert (req.headers["x-api-key"], req.headers["x-tenant-id"]) == ("ck", "acme")
        assert "authorization" not in req.headers
        assert req.json == {
            "search_type": "CHUNKS",
            "query": "how is green tea made?",
            "datasets": ["tea_notes", "default"],
            "top_k": 5,
        }
        assert [i.text for i in items] == ["Green tea is steamed or pan-fired.", "Sencha is the most common green tea."]
        srv.route("POST", "/api/v1/search", doc.COGNEE_SEARCH_COMPLETION)
        assert [i.text for i in await kb.search(ContextQuery(None, "what is cognee?"))] == [
            "Cognee turns documents into a knowledge graph."
        ]
        srv.routes.pop(("POST", "/api/v1/search"))  # 404: no such dataset in Cognee yet
        assert await kb.search(ContextQuery(None, "anything")) == []
        srv.route("POST", "/api/v1/search", {"error": "Search failed"}, status=409)
        with pytest.raises(EngineError, match="cognee search: upstream answered 409"):
            await kb.search(ContextQuery(None, "anything"))
    finally:
        await kb.close()


async def test_health_checks_probe_the_services(srv: RecordingServer) -> None:
    srv.route("GET", "/api/v1/healthcheck", doc.MEMOBASE_OK)
    srv.route("GET", "/health", {"status": "unhealthy"}, status=503)
    srv.route("GET", "/v1/ping/", {"status": "ok", "org_id": None, "project_id": None, "user_email": "a@b.c"})
    engines = [
        MemobaseProfile(MemobaseProfile.Options(base_url=srv.url)),
        CogneeKnowledge(CogneeKnowledge.Options(base_url=srv.url)),
        Mem0Memory(Mem0Memory.Options(base_url=srv.url, api_key="k")),
    ]
    assert not (await engines[0].health_check()).ok  # not initialized
    for e in engines:
        await e.initialize()
    try:
        memobase, cognee, mem0 = [await e.health_check() for e in engines]
        assert memobase.ok and mem0.ok
        assert not cognee.ok and "503" in cognee.detail
        assert [r.path for r in srv.take()] == ["/api/v1/healthcheck", "/health", "/v1/ping/"]
    finally:
        for e in engines:
            await e.close()
            await e.close()  # closing twice is safe


# --- through the ContextService ------------------------------------------------------------------


async def test_context_service_uses_all_three_and_degrades_on_failures(srv: RecordingServer) -> None:
    uid = memobase_user_id("u1")
    srv.route("POST", "/v2/memories/search/", doc.MEM0_SEARCH_V2)
    srv.route("GET", f"/api/v1/users/profile/{uid}", doc.MEMOBASE_PROFILE)
    srv.route("POST", "/api/v1/search", doc.COGNEE_SEARCH_CHUNKS)
    cfg = ContextConfig(knowledge_timeout_s=0.5, profile_timeout_s=0.3, memory_timeout_s=0.4)
    svc = ContextService(
        cfg,
        memory=Mem0Memory(Mem0Memory.Options(base_url=srv.url, api_key="k")),
        profile=MemobaseProfile(MemobaseProfile.Options(base_url=srv.url, api_key="t")),
        knowledge=CogneeKnowledge(CogneeKnowledge.Options(base_url=srv.url)),
    )
    await svc.start()
    try:
        new = [{"role": "user", "content": "what should I cook with green tea?"}]
        got = await svc.prepare(system="S", history=[], new=new, user_id="u1")
        assert got.reasons == []
        system = got.messages[0]["content"]
        for text in ("Allergic to nuts", "basic_info::name: Gus", "Green tea is steamed or pan-fired."):
            assert text in system
        srv.route("POST", "/v2/memories/search/", {"detail": "boom"}, status=500)
        srv.route("GET", f"/api/v1/users/profile/{uid}", doc.MEMOBASE_PROFILE, delay_s=1.0)
        got = await svc.prepare(system="S", history=[], new=new, user_id="u1")
        assert sorted(got.reasons) == [
            'memory: EngineError: mem0 search: upstream answered 500 {"detail": "boom"}',
            "profile: timeout after 0.30 s",
        ]
        assert "Green tea is steamed or pan-fired." in got.messages[0]["content"]
    finally:
        await svc.close()
