"""`${VAR}`, `${VAR:-default}` and `${VAR:+alt}` substitution inside YAML string values.

Substitution happens after parsing, on scalar strings only, so an environment value can never
inject YAML structure. A value that is exactly one `${...}` becomes the substituted string and is
then coerced by the pydantic model ("10" -> int, "true" -> bool).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:-|:\+)([^}]*))?\}")


class SubstitutionError(ValueError):
    """A `${VAR}` without default names a variable that is not set."""

    def __init__(self, path: str, var: str) -> None:
        super().__init__(f"environment variable {var} is not set (use ${{{var}:-default}})")
        self.path = path
        self.var = var


def substitute(value: Any, env: Mapping[str, str], path: str = "") -> Any:
    """Return a copy of `value` with every `${...}` in string scalars replaced from `env`."""
    if isinstance(value, str):
        return _substitute_str(value, env, path)
    if isinstance(value, list):
        return [substitute(v, env, f"{path}.{i}" if path else str(i)) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: substitute(v, env, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    return value


def _substitute_str(text: str, env: Mapping[str, str], path: str) -> str:
    def repl(match: re.Match[str]) -> str:
        var, op, arg = match.group(1), match.group(2), match.group(3) or ""
        current = env.get(var)
        if op == ":-":
            return current if current else arg
        if op == ":+":
            return arg if current else ""
        if current is None:
            raise SubstitutionError(path, var)
        return current

    return _PATTERN.sub(repl, text)


def uses_env(value: Any) -> bool:
    """True when a raw (unsubstituted) scalar takes its value from the environment."""
    return isinstance(value, str) and bool(_PATTERN.search(value))
