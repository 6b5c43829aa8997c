"""Configuration: substitution, validation with file: key: reason, redaction, the CLI check."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cozy_actors.config import ConfigError, load_settings, redacted, render
from cozy_actors.config.substitute import SubstitutionError, substitute

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def cfg(tmp_path: Path) -> Path:
    target = tmp_path / "config"
    shutil.copytree(ROOT / "config", target)
    shutil.copytree(ROOT / "personalities", tmp_path / "personalities")
    return target


def test_substitution_forms() -> None:
    env = {"A": "1", "EMPTY": ""}
    assert substitute("${A}", env) == "1"
    assert substitute("x-${A}-y", env) == "x-1-y"
    assert substitute("${MISSING:-dflt}", env) == "dflt"
    assert substitute("${EMPTY:-dflt}", env) == "dflt"
    assert substitute("${A:+yes}", env) == "yes"
    assert substitute("${EMPTY:+yes}", env) == ""
    assert substitute({"k": ["${A}", 2]}, env) == {"k": ["1", 2]}
    with pytest.raises(SubstitutionError) as exc:
        substitute({"k": "${MISSING}"}, env)
    assert exc.value.path == "k"


def test_defaults_load_with_local_model(cfg: Path) -> None:
    s = load_settings(cfg, env={})
    assert s.engines.llm.default.id == "smollm2-135m"
    assert s.app.turn.max_tool_iterations == 10
    assert s.personalities_dir == (cfg.parent / "personalities").resolve()


def test_upstream_env_switches_default_model(cfg: Path) -> None:
    env = {"COZY_LLM_BASE_URL": "http://127.0.0.1:9/v1", "COZY_LLM_MODEL": "m1", "COZY_LLM_API_KEY": "sk-secret"}
    s = load_settings(cfg, env=env)
    assert s.engines.llm.default.id == "m1"
    assert [m.id for m in s.engines.llm.enabled_models] == ["m1", "smollm2-135m"]
    text = render(s)
    assert "sk-secret" not in text and "***" in text


def test_bad_value_names_file_key_and_reason(cfg: Path) -> None:
    (cfg / "api.yaml").write_text("port: not-a-number\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(cfg, env={})
    (line,) = exc.value.problems
    assert line.startswith(f"{cfg / 'api.yaml'}: port: ")
    assert "integer" in line


def test_unknown_key_and_yaml_error_and_missing_env(cfg: Path) -> None:
    (cfg / "app.yaml").write_text("nmae: typo\n")
    (cfg / "context.yaml").write_text("enabled: [unclosed\n")
    (cfg / "tools.yaml").write_text("call_timeout_s: ${NOT_SET_ANYWHERE}\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(cfg, env={})
    text = "\n".join(exc.value.problems)
    assert f"{cfg / 'app.yaml'}: nmae: Extra inputs are not permitted" in text
    assert f"{cfg / 'context.yaml'}: line " in text and "invalid YAML" in text
    assert f"{cfg / 'tools.yaml'}: call_timeout_s: environment variable NOT_SET_ANYWHERE is not set" in text


def test_literal_secret_is_refused(cfg: Path) -> None:
    (cfg / "security.yaml").write_text("jwt_secret_key: hunter2\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(cfg, env={})
    assert "jwt_secret_key: secrets must come from the environment" in exc.value.problems[0]


def test_secrets_redacted(cfg: Path) -> None:
    s = load_settings(cfg, env={"JWT_SECRET_KEY": "topsecret", "DATABASE_URL": "postgresql://u:pw@h/db"})
    data = redacted(s)
    assert data["security"]["jwt_secret_key"] == "***"
    assert data["storage"]["database_url"] == "***"
    assert "topsecret" not in render(s) and "pw@h" not in render(s)


def test_no_enabled_model_is_an_error(cfg: Path) -> None:
    (cfg / "engines.yaml").write_text("llm:\n  models:\n    - {id: a, provider: openai, enabled: '', options: {}}\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(cfg, env={})
    assert "llm: Value error, no enabled model" in exc.value.problems[0]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cozy_http.cli", *args], capture_output=True, text=True, timeout=60, cwd=ROOT
    )


def test_cli_config_check_prints_redacted(cfg: Path) -> None:
    out = _cli("config", "check", "--config", str(cfg))
    assert out.returncode == 0, out.stderr
    assert "default_personality: assistant" in out.stdout


def test_cli_config_check_bad_file_exits_nonzero(cfg: Path) -> None:
    (cfg / "app.yaml").write_text("sessions:\n  max_duration_s: -1\n")
    out = _cli("config", "check", "--config", str(cfg))
    assert out.returncode == 2
    assert f"{cfg / 'app.yaml'}: sessions.max_duration_s: Input should be greater than 0" in out.stderr


def test_cli_bad_provider_options_named(cfg: Path) -> None:
    text = (cfg / "engines.yaml").read_text().replace("n_ctx: 2048", "n_ctx: lots")
    (cfg / "engines.yaml").write_text(text)
    out = _cli("config", "check", "--config", str(cfg))
    assert out.returncode == 2
    assert f"{cfg / 'engines.yaml'}: llm.models.1.options.n_ctx:" in out.stderr


def test_cli_serve_refuses_bad_config(cfg: Path) -> None:
    (cfg / "observability.yaml").write_text("log_level: chatty\n")
    out = _cli("serve", "--config", str(cfg), "--port", "0")
    assert out.returncode == 2
    assert f"{cfg / 'observability.yaml'}: log_level:" in out.stderr
