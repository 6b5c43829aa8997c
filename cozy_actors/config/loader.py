"""Load `config/*.yaml`, substitute the environment, validate, and report `file: key: reason`.

Why one error type with every problem listed: a bad deployment should be fixed in one pass, and
the CLI turns it into a non-zero exit with readable lines instead of a traceback.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from .models import (
    REQUIRED_SECTIONS,
    SECTIONS,
    ApiConfig,
    AppConfig,
    ContextConfig,
    EnginesConfig,
    ObservabilityConfig,
    SecurityConfig,
    StorageConfig,
)
from .redact import redact
from .substitute import SubstitutionError, substitute, uses_env
from .tools import ToolsConfig

SECRET_KEY = re.compile(r"(secret|password|passwd|api_key|apikey|private_key|(^|_)token$|(^|_)key$)", re.I)


class ConfigError(Exception):
    """Invalid configuration; `problems` holds one `file: key: reason` line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def default_config_dir() -> Path:
    """`COZY_CONFIG_DIR`, else the `config/` folder shipped beside the packages."""
    env_dir = os.environ.get("COZY_CONFIG_DIR")
    if env_dir:
        return Path(env_dir)
    return Path(__file__).resolve().parents[2] / "config"


@dataclass(frozen=True)
class Settings:
    """The validated configuration of one server process."""

    config_dir: Path
    app: AppConfig
    api: ApiConfig
    engines: EnginesConfig
    context: ContextConfig
    tools: ToolsConfig
    storage: StorageConfig
    observability: ObservabilityConfig
    security: SecurityConfig
    files: dict[str, str | None] = field(default_factory=dict)

    @property
    def personalities_dir(self) -> Path:
        path = Path(self.app.personalities_dir)
        return path if path.is_absolute() else (self.config_dir.parent / path).resolve()

    def section(self, name: str) -> BaseModel:
        return getattr(self, name)


def load_settings(config_dir: Path | str | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Read every known section from `config_dir`; missing optional files take their defaults."""
    cdir = Path(config_dir) if config_dir is not None else default_config_dir()
    env = os.environ if env is None else env
    problems: list[str] = []
    if not cdir.is_dir():
        raise ConfigError([f"{cdir}: -: configuration directory not found"])
    known = set(SECTIONS)
    for extra in sorted(p.name for p in cdir.glob("*.y*ml") if p.stem not in known):
        problems.append(f"{cdir / extra}: -: unknown configuration file (expected one of {', '.join(SECTIONS)})")
    values: dict[str, Any] = {}
    files: dict[str, str | None] = {}
    for name, model in SECTIONS.items():
        path = _find(cdir, name)
        files[name] = str(path) if path else None
        if path is None:
            if name in REQUIRED_SECTIONS:
                problems.append(f"{cdir / (name + '.yaml')}: -: required file is missing")
                continue
            values[name] = model()
            continue
        section = _load_file(path, model, env, problems)
        if section is not None:
            values[name] = section
    if problems:
        raise ConfigError(problems)
    return Settings(config_dir=cdir.resolve(), files=files, **values)


def _find(cdir: Path, name: str) -> Path | None:
    for suffix in (".yaml", ".yml"):
        path = cdir / f"{name}{suffix}"
        if path.is_file():
            return path
    return None


def _load_file(path: Path, model: type[BaseModel], env: Mapping[str, str], problems: list[str]) -> Any:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "-"
        problems.append(f"{path}: {where}: invalid YAML: {getattr(exc, 'problem', exc)}")
        return None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        problems.append(f"{path}: -: expected a mapping at the top level, got {type(raw).__name__}")
        return None
    before = len(problems)
    _check_literal_secrets(raw, "", path, problems)
    try:
        data = substitute(raw, env)
    except SubstitutionError as exc:
        problems.append(f"{path}: {exc.path}: {exc}")
        return None
    if len(problems) > before:
        return None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "-"
            problems.append(f"{path}: {key}: {err['msg']}")
        return None


def _check_literal_secrets(value: Any, path: str, file: Path, problems: list[str]) -> None:
    """Secrets only ever come from the environment: a literal one in a file is refused."""
    if isinstance(value, dict):
        for k, v in value.items():
            sub = f"{path}.{k}" if path else str(k)
            if isinstance(v, str) and v.strip() and SECRET_KEY.search(str(k)) and not uses_env(v):
                problems.append(f"{file}: {sub}: secrets must come from the environment (use ${{VAR}})")
            else:
                _check_literal_secrets(v, sub, file, problems)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_literal_secrets(v, f"{path}.{i}" if path else str(i), file, problems)


def redacted(settings: Settings) -> dict[str, Any]:
    """The effective configuration as plain data with every secret replaced by `***` (by key and
    by value: see redact.py); the one function behind /v1/admin/config and `cozy config check`."""
    return {name: redact(settings.section(name).model_dump(mode="python")) for name in SECTIONS}


def render(settings: Settings) -> str:
    """YAML text of the redacted effective configuration, with the files it came from."""
    doc = {"files": settings.files, **redacted(settings)}
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)
