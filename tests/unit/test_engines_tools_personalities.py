"""Registry (api_version, entry points), built-in tools and policy, personality validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import orjson
import pytest

from cozy_actors.config import load_settings
from cozy_actors.engines.llm.base import LLMEngine
from cozy_actors.engines.llm.router import LLMConfigError, LLMRouter
from cozy_actors.engines.registry import EngineRegistry, RegistryError, default_registry
from cozy_actors.engines.tools.base import Tool, ToolCatalog, ToolError
from cozy_actors.engines.tools.builtin import BUILTIN_TOOLS, evaluate
from cozy_actors.personalities import PersonalityError, PersonalityStore, load_personalities

ROOT = Path(__file__).resolve().parents[2]


class GoodPlugin(LLMEngine):
    provider: ClassVar[str] = "plugin"


class OldPlugin(LLMEngine):
    provider: ClassVar[str] = "old"
    api_version: ClassVar[int] = 0


class FakeEntryPoint:
    def __init__(self, name: str, obj: Any) -> None:
        self.name, self.value, self._obj = name, f"tests:{name}", obj

    def load(self) -> Any:
        if isinstance(self._obj, Exception):
            raise self._obj
        return self._obj


def test_registry_builtins_and_entry_points() -> None:
    reg = default_registry(load_plugins=False)
    assert reg.providers("llm") == ["local", "openai"]
    reg.load_entry_points([FakeEntryPoint("llm.plugin", GoodPlugin)])
    assert reg.get("llm", "plugin") is GoodPlugin


def test_registry_refuses_wrong_api_version_and_broken_plugins() -> None:
    reg = EngineRegistry()
    with pytest.raises(RegistryError, match="api_version 0, this server needs 1"):
        reg.load_entry_points([FakeEntryPoint("llm.old", OldPlugin)])
    with pytest.raises(RegistryError, match="cannot load"):
        reg.load_entry_points([FakeEntryPoint("llm.bad", ImportError("nope"))])
    with pytest.raises(RegistryError, match="not an Engine subclass"):
        reg.load_entry_points([FakeEntryPoint("llm.obj", object)])
    with pytest.raises(RegistryError, match="unknown llm provider 'x'"):
        reg.get("llm", "x")


def test_router_model_choice() -> None:
    env = {"COZY_LLM_BASE_URL": "http://127.0.0.1:9/v1", "COZY_LLM_MODEL": "up"}
    settings = load_settings(ROOT / "config", env=env)
    router = LLMRouter(settings.engines.llm, default_registry(load_plugins=False))
    assert router.choose("smollm2-135m") == "smollm2-135m"
    assert router.choose("gpt-unknown") == "up"
    assert router.choose("gpt-unknown", preferred="smollm2-135m") == "smollm2-135m"
    assert router.choose(None, provider="local") == "smollm2-135m"
    assert [m["id"] for m in router.models()] == ["up", "smollm2-135m"]


def test_router_reports_bad_provider_options() -> None:
    settings = load_settings(ROOT / "config", env={})
    settings.engines.llm.models[1].options["n_threads"] = 0
    with pytest.raises(LLMConfigError) as exc:
        LLMRouter(settings.engines.llm, default_registry(load_plugins=False))
    assert exc.value.problems[0].startswith("llm.models.1.options.n_threads:")


def test_calculator_is_safe() -> None:
    assert evaluate("(2 + 3) * sqrt(16)") == 20
    assert evaluate("2^10") == 1024
    for bad in ("__import__('os').system('true')", "().__class__", "2**100000", "1/0", "x", "a" * 300):
        with pytest.raises(ToolError):
            evaluate(bad)


async def test_tool_execution_validates_and_times_out() -> None:
    import asyncio

    async def slow(args: dict[str, Any]) -> str:
        await asyncio.sleep(1)
        return "late"

    slow_tool = Tool("slow", "sleeps", {"type": "object"}, "read-only", slow)
    cat = ToolCatalog([*BUILTIN_TOOLS.values(), slow_tool], allowed_side_effects=["read-only"])
    ok = await cat.execute(BUILTIN_TOOLS["calculator"], '{"expression": "6*7"}', timeout=1)
    assert ok.ok and orjson.loads(ok.content)["result"] == 42
    for args, needle in (("{bad", "not valid JSON"), ('{"nope": 1}', "invalid arguments"), ("[1]", "JSON object")):
        res = await cat.execute(BUILTIN_TOOLS["calculator"], args, timeout=1)
        assert not res.ok and needle in orjson.loads(res.content)["error"]
    res = await cat.execute(slow_tool, "{}", timeout=0.05)
    assert not res.ok and "timed out" in res.content
    tz = await cat.execute(BUILTIN_TOOLS["get_current_time"], '{"timezone": "Europe/Paris"}', timeout=1)
    assert tz.ok and orjson.loads(tz.content)["timezone"] == "Europe/Paris"
    bad_tz = await cat.execute(BUILTIN_TOOLS["get_current_time"], '{"timezone": "Mars/Base"}', timeout=1)
    assert not bad_tz.ok and "unknown timezone" in bad_tz.content


def test_policy_allowlist_request_narrowing_and_side_effects() -> None:
    async def noop(args: dict[str, Any]) -> str:
        return ""

    danger = Tool("rm_rf", "dangerous", {"type": "object"}, "dangerous", noop)
    cat = ToolCatalog([*BUILTIN_TOOLS.values(), danger], allowed_side_effects=["read-only", "write"])
    names = lambda tools: [t.name for t in tools]  # noqa: E731
    assert names(cat.offered(["calculator", "get_current_time", "rm_rf"])) == ["calculator", "get_current_time"]
    assert names(cat.offered(["calculator", "get_current_time"], ["get_current_time", "other"])) == ["get_current_time"]
    assert names(cat.offered(["calculator"], [])) == []


def test_shipped_personalities_are_valid() -> None:
    items = load_personalities(ROOT / "personalities")
    assert set(items) >= {"assistant", "voice-concierge"}
    assert items["assistant"].tools == ["get_current_time", "calculator"]


def test_invalid_personality_names_file_and_field_and_reload_keeps_old(tmp_path: Path) -> None:
    for name in ("assistant", "voice-concierge"):
        (tmp_path / f"{name}.yaml").write_text((ROOT / "personalities" / f"{name}.yaml").read_text())
    store = PersonalityStore(tmp_path, "assistant")
    store.reload()
    (tmp_path / "broken.yaml").write_text("id: broken\nname: B\nsystem_prompt: x\nllm: {temperature: 9}\n")
    (tmp_path / "mismatch.yaml").write_text("id: other\nname: M\nsystem_prompt: x\n")
    with pytest.raises(PersonalityError) as exc:
        store.reload()
    text = "\n".join(exc.value.problems)
    assert f"{tmp_path / 'broken.yaml'}: llm.temperature: Input should be less than or equal to 2" in text
    assert f"{tmp_path / 'mismatch.yaml'}: id: 'other' must match the file name 'mismatch'" in text
    assert store.get("assistant") is not None and store.get("broken") is None
