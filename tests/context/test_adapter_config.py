"""The HTTP adapters are chosen by `config/context.yaml` through the engine registry: `provider:
mem0|memobase|cognee` builds them with their own options, the key comes from the environment (a
literal one is refused, the effective config shows it redacted), bad options and a provider built
for another `api_version` are refused at start-up."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from cozy_actors.config.loader import ConfigError, load_settings, redacted
from cozy_actors.config.models import ContextConfig
from cozy_actors.context.adapters import ADAPTERS, CogneeKnowledge, Mem0Memory, MemobaseProfile
from cozy_actors.context.build import ContextConfigError, build_context
from cozy_actors.engines.registry import EngineRegistry, RegistryError, default_registry

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    target = tmp_path / "config"
    shutil.copytree(ROOT / "config", target)
    shutil.copytree(ROOT / "personalities", tmp_path / "personalities")
    return target


def write_context(cfg: Path, **engines: dict[str, object]) -> None:
    path = cfg / "context.yaml"
    data = yaml.safe_load(path.read_text())
    data.update(engines)
    path.write_text(yaml.safe_dump(data))


def test_adapters_are_registered_builtins() -> None:
    reg = default_registry(load_plugins=False)
    assert reg.get("memory", "mem0") is Mem0Memory
    assert reg.get("profile", "memobase") is MemobaseProfile
    assert reg.get("knowledge", "cognee") is CogneeKnowledge
    assert {c.provider for c in ADAPTERS} == {"mem0", "memobase", "cognee"}


def test_provider_mem0_from_context_yaml_with_key_from_env(cfg: Path) -> None:
    write_context(
        cfg,
        memory={"enabled": True, "provider": "mem0", "options": {"api_key": "${MEM0_API_KEY}", "timeout_s": 2}},
        profile={
            "enabled": True,
            "provider": "memobase",
            "options": {"base_url": "http://memobase:8019", "api_key": "${MEMOBASE_TOKEN}"},
        },
        knowledge={"enabled": True, "provider": "cognee", "options": {"base_url": "http://cognee:8000"}},
    )
    settings = load_settings(cfg, env={"MEM0_API_KEY": "m0-from-env", "MEMOBASE_TOKEN": "mb-from-env"})
    assert redacted(settings)["context"]["memory"]["options"]["api_key"] == "***"
    svc = build_context(settings.context, default_registry(load_plugins=False), db=None, queue=None)
    memory, profile, knowledge = (svc.engines[k] for k in ("memory", "profile", "knowledge"))
    assert isinstance(memory, Mem0Memory) and isinstance(profile, MemobaseProfile)
    assert isinstance(knowledge, CogneeKnowledge)
    assert memory.options.base_url == "https://api.mem0.ai" and memory.options.timeout_s == 2
    assert memory.auth_headers() == {"authorization": "Token m0-from-env"}
    assert profile.auth_headers() == {"authorization": "Bearer mb-from-env"}
    assert knowledge.auth_headers() == {}
    assert Mem0Memory(Mem0Memory.Options(api_key=" ")).auth_headers() == {}  # `${MEM0_API_KEY:-}` left unset


def test_literal_api_key_is_refused(cfg: Path) -> None:
    write_context(cfg, memory={"enabled": True, "provider": "mem0", "options": {"api_key": "m0-literal"}})
    with pytest.raises(ConfigError) as exc:
        load_settings(cfg, env={})
    assert any("memory.options.api_key: secrets must come from the environment" in p for p in exc.value.problems)


def test_bad_adapter_options_are_listed() -> None:
    config = ContextConfig.model_validate(
        {
            "memory": {"provider": "mem0", "options": {"base_url": "ftp://mem0", "org_id": "o"}},
            "knowledge": {"provider": "cognee", "options": {"search_type": "chunks; drop"}},
            "profile": {"provider": "memobase", "options": {}},
        }
    )
    with pytest.raises(ContextConfigError) as exc:
        build_context(config, default_registry(load_plugins=False), db=None, queue=None)
    text = "\n".join(exc.value.problems)
    assert "memory.options.base_url: String should match pattern" in text
    assert "knowledge.options.base_url: Field required" in text
    assert "knowledge.options.search_type: String should match pattern" in text
    assert "profile" not in text  # memobase has a default base_url (its cloud)
    off = {"enabled": False}
    config = ContextConfig.model_validate(
        {"memory": {"provider": "mem0", "options": {"org_id": "o"}}, "knowledge": off, "profile": off}
    )
    with pytest.raises(ContextConfigError) as exc:
        build_context(config, default_registry(load_plugins=False), db=None, queue=None)
    assert exc.value.problems == [
        "memory.options: Value error, org_id and project_id go together (set both or neither)"
    ]


class Mem0V2(Mem0Memory):
    api_version = 2


def test_wrong_api_version_is_refused() -> None:
    reg = EngineRegistry()
    with pytest.raises(RegistryError, match=r"memory\.mem0 speaks api_version 2, this server needs 1"):
        reg.register(Mem0V2)
    ep = SimpleNamespace(name="memory.mem0", value="acme_mem0:Mem0V2", load=lambda: Mem0V2)
    with pytest.raises(RegistryError, match=r"entry point 'memory\.mem0' \(acme_mem0:Mem0V2\).*api_version 2"):
        reg.load_entry_points([ep])
    with pytest.raises(RegistryError, match="unknown memory provider 'mem0'"):
        reg.get("memory", "mem0")
