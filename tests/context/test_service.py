"""ContextService: parallel fetch under per-engine timeouts, degradation, skipping, updates."""

from __future__ import annotations

import asyncio
import time

import pytest

from cozy_actors.config.models import ContextConfig
from cozy_actors.context import ContextService, TurnRecord
from cozy_actors.observability.metrics import CONTEXT_DEGRADED
from cozy_actors.personalities import MemoryPolicy, Personality

from .fakes import FakeKnowledge, FakeMemory, FakeProfile

NEW = [{"role": "user", "content": "what do you know about tea?"}]


def service(**kw: object) -> ContextService:
    cfg = ContextConfig(knowledge_timeout_s=0.5, profile_timeout_s=0.3, memory_timeout_s=0.4)
    return ContextService(cfg, **kw)  # type: ignore[arg-type]


async def test_engines_run_in_parallel_max_not_sum() -> None:
    svc = service(
        knowledge=FakeKnowledge(["Tea is a drink."], delay=0.2),
        profile=FakeProfile(["Name: Ada"], delay=0.2),
        memory=FakeMemory(["The user likes green tea"], delay=0.2),
    )
    started = time.perf_counter()
    got = await svc.prepare(system="You are kind.", history=[], new=NEW, user_id="u1")
    elapsed = time.perf_counter() - started
    assert 0.19 < elapsed < 0.3, elapsed  # ≈ max (0.2 s), the sum would be 0.6 s
    assert got.reasons == []
    system = got.messages[0]["content"]
    assert system.startswith("You are kind.")
    for text in ("Tea is a drink.", "Name: Ada", "The user likes green tea"):
        assert text in system
    assert got.messages[1:] == NEW


async def test_late_and_failing_engines_degrade_with_reasons() -> None:
    before = CONTEXT_DEGRADED.labels("memory", "timeout")._value.get()
    svc = service(
        knowledge=FakeKnowledge(["Tea is a drink."]),
        profile=FakeProfile(["x"], error=True),
        memory=FakeMemory(["y"], delay=2.0),
    )
    started = time.perf_counter()
    got = await svc.prepare(system="S", history=[], new=NEW, user_id="u1")
    assert time.perf_counter() - started < 0.5  # the memory budget (0.4 s), not its 2 s
    assert sorted(got.reasons) == ["memory: timeout after 0.40 s", "profile: RuntimeError: boom"]
    assert "Tea is a drink." in got.messages[0]["content"]
    assert CONTEXT_DEGRADED.labels("memory", "timeout")._value.get() == before + 1


async def test_no_user_only_knowledge_is_asked() -> None:
    profile, memory = FakeProfile(["p"]), FakeMemory(["m"])
    svc = service(knowledge=FakeKnowledge(["k"]), profile=profile, memory=memory)
    got = await svc.prepare(system="S", history=[], new=NEW, user_id=None)
    assert profile.queries == [] and memory.queries == []
    assert "k" in got.messages[0]["content"]


def test_applies_respects_config_request_and_personality() -> None:
    p = Personality(id="a", name="A", system_prompt="S")
    off = Personality(id="b", name="B", system_prompt="S", memory=MemoryPolicy(use_personalization=False))
    svc = service()
    assert svc.applies(p) and not svc.applies(p, use_personalization=False) and not svc.applies(off)
    assert not ContextService(ContextConfig(enabled=False)).applies(p)


async def test_sync_mode_updates_after_turn() -> None:
    memory = FakeMemory()
    svc = ContextService(ContextConfig(update_mode="sync"), memory=memory)
    await svc.after_turn(TurnRecord("u1", "a", [{"role": "user", "content": "my name is Ada"}]))
    await svc.close()
    assert [r.user_id for r in memory.updates] == ["u1"]


async def test_prefetch_is_taken_by_the_turn_with_the_same_words() -> None:
    """Voice: the fetch starts at the user's pause; the turn at end of speech waits only for the rest."""
    knowledge = FakeKnowledge(["Tea is a drink."], delay=0.2)
    svc = service(knowledge=knowledge)
    svc.prefetch(text="what do you know about tea?", user_id=None)
    await asyncio.sleep(0.15)  # the silence window
    started = time.perf_counter()
    got = await svc.prepare(system="S", history=[], new=NEW, user_id=None)
    assert time.perf_counter() - started < 0.12  # the 0.05 s left of the prefetch, not 0.2 s anew
    assert "Tea is a drink." in got.messages[0]["content"]
    assert len(knowledge.queries) == 1
    await svc.prepare(system="S", history=[], new=NEW, user_id=None)  # taken once: a later turn fetches
    assert len(knowledge.queries) == 2


async def test_prefetch_of_other_words_or_too_old_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    import cozy_actors.context.service as service_mod

    knowledge = FakeKnowledge(["Tea is a drink."])
    svc = service(knowledge=knowledge)
    svc.prefetch(text="what do you know about", user_id=None)  # the user went on talking
    await svc.prepare(system="S", history=[], new=NEW, user_id=None)
    assert sorted(q.text for q in knowledge.queries) == ["what do you know about", NEW[0]["content"]]
    monkeypatch.setattr(service_mod, "PREFETCH_TTL_S", 0.0)
    svc.prefetch(text=NEW[0]["content"], user_id=None)
    await asyncio.sleep(0.01)
    await svc.prepare(system="S", history=[], new=NEW, user_id=None)
    assert len(knowledge.queries) == 4  # expired: fetched again
