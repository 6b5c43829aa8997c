"""Personalization end to end through `cozy serve` and the openai SDK: knowledge added by the admin
API reaches the model; memory learnt in turn N (async, real Redis) is used in turn N+1; a failing
engine and a late one only degrade the reply (`cozy.degraded` and the reasons); a non-admin cannot
add knowledge."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from tests.e2e.conftest import ADMIN_KEY, REPO_ROOT, STUB_MODEL, CozyServer, start_cozy_server, user
from tests.support.procs import StubLLMServer


def config_dir(root: Path, **engines: dict[str, Any]) -> Path:
    shutil.copytree(REPO_ROOT / "config", root / "config")
    shutil.copytree(REPO_ROOT / "personalities", root / "personalities")
    ctx = yaml.safe_load((root / "config" / "context.yaml").read_text())
    for kind, section in engines.items():
        ctx[kind] = {**ctx.get(kind, {}), **section}
    (root / "config" / "context.yaml").write_text(yaml.safe_dump(ctx))
    return root / "config"


@pytest.fixture(scope="module")
def server(stub_llm: StubLLMServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CozyServer]:
    cozy = start_cozy_server(stub_llm, config_dir=config_dir(tmp_path_factory.mktemp("ctx")))
    try:
        yield cozy
    finally:
        cozy.stop()


@pytest.fixture(scope="module")
def degraded_server(stub_llm: StubLLMServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CozyServer]:
    root = tmp_path_factory.mktemp("ctx-degraded")
    cfg = config_dir(
        root,
        knowledge={"options": {"inject_error": True}},
        memory={"options": {"inject_delay_s": 2.0}},
    )
    cozy = start_cozy_server(stub_llm, config_dir=cfg)
    try:
        yield cozy
    finally:
        cozy.stop()


def sdk(server: CozyServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=ADMIN_KEY, max_retries=0, timeout=30)


def cozy_of(obj: Any) -> dict[str, Any]:
    assert obj.model_extra is not None and "cozy" in obj.model_extra, obj
    return obj.model_extra["cozy"]


def test_knowledge_api_and_knowledge_in_the_prompt(server: CozyServer) -> None:
    headers = {"authorization": f"Bearer {ADMIN_KEY}"}
    with httpx.Client(base_url=server.root_url, headers=headers, timeout=30) as admin:
        r = admin.post(
            "/v1/knowledge/default",
            json={
                "documents": [
                    {"title": "Kettle", "text": "The CozyKettle boils water in 90 seconds and has a blue light."}
                ]
            },
        )
        assert r.status_code == 200, r.text
        assert r.json()["chunks"] == 1
        r = admin.get("/v1/knowledge/default/search", params={"q": "how fast does the kettle boil"})
        assert r.status_code == 200 and "90 seconds" in r.json()["data"][0]["text"]
        assert admin.post("/v1/knowledge/bad name!", json={"documents": [{"text": "x"}]}).status_code in (400, 404)
        assert "/v1/knowledge/{dataset}" in admin.get("/openapi.json").json()["paths"]
    with sdk(server) as client:
        reply = client.chat.completions.create(model=STUB_MODEL, messages=user("SYSTEM? tell me about the kettle"))
        assert "90 seconds" in (reply.choices[0].message.content or "")
        assert cozy_of(reply)["degraded"] is False
        off = client.chat.completions.create(
            model=STUB_MODEL,
            messages=user("SYSTEM? tell me about the kettle"),
            extra_body={"cozy": {"use_personalization": False}},
        )
        assert "90 seconds" not in (off.choices[0].message.content or "")


def test_memory_of_turn_n_used_in_turn_n_plus_1(server: CozyServer) -> None:
    with sdk(server) as client:
        client.chat.completions.create(model=STUB_MODEL, messages=user("Hello! My name is Grace and I like sailing."))
        deadline = time.monotonic() + 10
        while True:
            reply = client.chat.completions.create(model=STUB_MODEL, messages=user("SYSTEM? what is my name?"))
            text = reply.choices[0].message.content or ""
            if "Name: Grace" in text or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    assert "The user's name is Grace" in text and "Name: Grace" in text, text
    assert server.metric("cozy_context_updates_total", engine="memory", outcome="ok") >= 1


def test_failing_and_late_engines_only_degrade(degraded_server: CozyServer) -> None:
    with sdk(degraded_server) as client:
        started = time.perf_counter()
        reply = client.chat.completions.create(model=STUB_MODEL, messages=user("hello there"))
        elapsed = time.perf_counter() - started
        assert reply.choices[0].message.content == "Echo: hello there"
        meta = cozy_of(reply)
        assert meta["degraded"] is True
        assert "memory: timeout after 0.40 s" in meta["degrade_reasons"]
        assert any(r.startswith("knowledge: RuntimeError") for r in meta["degrade_reasons"])
        assert elapsed < 1.5, elapsed  # bounded by the memory budget (0.4 s), not its 2 s delay
        stream = client.chat.completions.create(model=STUB_MODEL, messages=user("again"), stream=True)
        chunks = list(stream)
        assert any(c.model_extra and c.model_extra.get("cozy", {}).get("degraded") for c in chunks)
    assert degraded_server.metric("cozy_context_degraded_total", engine="memory", reason="timeout") >= 1


def test_knowledge_add_is_admin_only(server: CozyServer) -> None:
    headers = {"authorization": f"Bearer {ADMIN_KEY}"}
    with httpx.Client(base_url=server.root_url, headers=headers, timeout=30) as admin:
        r = admin.post("/v1/admin/users", json={"name": f"kuser{int(time.time() * 1000)}"})
        assert r.status_code in (200, 201), r.text
        key = r.json().get("api_key") or r.json().get("key")
    if not key:
        pytest.fail(f"user creation returned no key: {r.json()}")
    with httpx.Client(base_url=server.root_url, headers={"authorization": f"Bearer {key}"}, timeout=30) as plain:
        r = plain.post("/v1/knowledge/default", json={"documents": [{"text": "x"}]})
        assert r.status_code == 403, r.text
