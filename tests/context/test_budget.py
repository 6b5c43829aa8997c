"""The token budget keeps personality > recent messages > context > summary of older history."""

from __future__ import annotations

from cozy_actors.context.base import ContextItem
from cozy_actors.context.budget import assemble, estimate_tokens


def msg(role: str, words: int, tag: str) -> dict[str, str]:
    return {"role": role, "content": f"{tag} " + "word " * words}


def test_everything_fits() -> None:
    history = [msg("user", 5, "u1"), msg("assistant", 5, "a1")]
    new = [msg("user", 5, "u2")]
    out = assemble("SYS", history, new, [ContextItem("memory", "likes tea")], 1000)
    assert out.messages[1:] == [*history, *new]
    assert "likes tea" in out.messages[0]["content"] and out.dropped_messages == 0 and out.summary is None


def test_recent_messages_before_context_and_oldest_dropped_first() -> None:
    history = [msg("user", 100, f"old{i}") if i % 2 == 0 else msg("assistant", 100, f"old{i}") for i in range(10)]
    new = [msg("user", 10, "now")]
    items = [ContextItem("knowledge", "K " * 200, 1.0), ContextItem("profile", "Name: Ada", 1.0)]
    out = assemble("SYS", history, new, items, 600)
    kept = [m["content"].split()[0] for m in out.messages[1:]]
    assert kept[-1] == "now" and kept[0].startswith("old")
    assert kept == [f"old{i}" for i in range(10 - len(kept) + 1, 10)] + ["now"]  # the newest, in order
    assert out.messages[1]["role"] == "user"
    system = out.messages[0]["content"]
    assert "Name: Ada" in system  # small profile item fits
    assert "K K K" not in system  # the big knowledge chunk does not
    assert [i.source for i in out.dropped_items] == ["knowledge"]
    assert out.tokens <= 600


def test_profile_before_memory_before_knowledge_then_summary() -> None:
    items = [
        ContextItem("knowledge", "k" * 200, 1.0),
        ContextItem("memory", "m" * 200, 1.0),
        ContextItem("profile", "p" * 200, 1.0),
    ]
    older = [msg("user", 20, "early"), msg("assistant", 2000, "long")]
    new = [msg("user", 5, "now")]
    budget = 4 + estimate_tokens("S") + 4 + 7 + 2 * (50 + 2) + 8 + 10
    out = assemble("S", older, new, items, budget)
    system = out.messages[0]["content"]
    assert "p" * 200 in system and "m" * 200 in system and "k" * 200 not in system
    assert out.summary is None  # no room left for it: the summary comes last
    roomy = assemble("S", older, new, items[:1], 400)
    assert roomy.dropped_messages == 2 and roomy.summary is not None and "early" in roomy.summary


def test_system_and_new_messages_always_stay() -> None:
    new = [msg("user", 3000, "huge")]
    out = assemble("SYS", [msg("user", 5, "old")], new, [ContextItem("memory", "x")], 128)
    assert out.messages == [{"role": "system", "content": "SYS"}, *new]
